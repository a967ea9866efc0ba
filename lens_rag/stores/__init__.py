"""Document stores: the embedded default and Elasticsearch."""

from lens_rag.stores.base import AsyncStore, Store, WriteResult

__all__ = ["AsyncStore", "Store", "WriteResult"]
