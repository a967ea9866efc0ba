"""Shared pieces of the lens-rag Haystack integration (type conversion)."""

from haystack_integrations.common.lens_rag.convert import (
    SOURCES_META_KEY,
    to_haystack_document,
    to_haystack_documents,
    to_haystack_sparse,
    to_lens_document,
    to_lens_sparse,
    to_scored,
)

__all__ = [
    "SOURCES_META_KEY",
    "to_haystack_document",
    "to_haystack_documents",
    "to_haystack_sparse",
    "to_lens_document",
    "to_lens_sparse",
    "to_scored",
]
