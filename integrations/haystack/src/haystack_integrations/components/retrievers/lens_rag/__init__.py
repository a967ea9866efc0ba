"""lens-rag retrievers for Haystack: BM25, sparse, dense, hybrid and LameR over `LensRagDocumentStore`, and a sparse
retriever for elasticsearch-haystack's `ElasticsearchDocumentStore` that works on Elasticsearch 8.11+.

The Elasticsearch retriever is imported lazily, so elasticsearch-haystack is needed only to use it.
"""

from typing import Any

from haystack_integrations.components.retrievers.lens_rag.hybrid import LensRagHybridRetriever
from haystack_integrations.components.retrievers.lens_rag.lamer import LensRagLameRRetriever
from haystack_integrations.components.retrievers.lens_rag.retrievers import (
    LensRagBM25Retriever,
    LensRagDenseRetriever,
    LensRagSparseRetriever,
)

__all__ = [
    "LensRagBM25Retriever",
    "LensRagDenseRetriever",
    "LensRagElasticsearchSparseRetriever",
    "LensRagHybridRetriever",
    "LensRagLameRRetriever",
    "LensRagSparseRetriever",
]


def __getattr__(name: str) -> Any:
    if name == "LensRagElasticsearchSparseRetriever":
        from haystack_integrations.components.retrievers.lens_rag.elasticsearch import (
            LensRagElasticsearchSparseRetriever,
        )

        return LensRagElasticsearchSparseRetriever
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
