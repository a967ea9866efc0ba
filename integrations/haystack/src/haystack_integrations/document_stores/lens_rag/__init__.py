"""lens-rag's embedded store (or any lens-rag store) as a Haystack document store."""

from haystack_integrations.document_stores.lens_rag.document_store import LensRagDocumentStore

__all__ = ["LensRagDocumentStore"]
