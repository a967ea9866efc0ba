"""Elasticsearch backend: `ElasticsearchStore` plus the pure request builders it uses."""

from lens_rag.stores.elasticsearch.client import ConnectionSettings
from lens_rag.stores.elasticsearch.store import ElasticsearchStore, RefreshPolicy

__all__ = ["ConnectionSettings", "ElasticsearchStore", "RefreshPolicy"]
