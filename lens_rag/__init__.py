"""lens-rag: LENS sparse, dense and hybrid retrieval with LameR query augmentation.

Importing the package is cheap: model-backed classes are imported on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lens_rag.documents import Document, ScoredDocument, SourceHit
from lens_rag.errors import LensRagError
from lens_rag.sparse import SparseVector

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily so `import lens_rag` loads no torch)
_LAZY = {
    "EmbeddedStore": "lens_rag.stores.embedded",
    "ElasticsearchStore": "lens_rag.stores.elasticsearch",
    "BM25Retriever": "lens_rag.retrieval",
    "SparseRetriever": "lens_rag.retrieval",
    "DenseRetriever": "lens_rag.retrieval",
    "HybridRetriever": "lens_rag.retrieval",
    "RerankingRetriever": "lens_rag.retrieval",
    "Retriever": "lens_rag.retrieval",
    "reciprocal_rank_fusion": "lens_rag.fusion",
    "score_fusion": "lens_rag.fusion",
    "fuse": "lens_rag.fusion",
    "MLMSparseEncoder": "lens_rag.encoders.mlm",
    "LENSEncoder": "lens_rag.encoders.lens",
    "SentenceTransformerDenseEncoder": "lens_rag.encoders.dense",
    "build_lens_head": "lens_rag.encoders.head_builder",
    "CrossEncoderReranker": "lens_rag.rerank",
    "index_documents": "lens_rag.indexing",
    "EmbeddingCache": "lens_rag.indexing",
    "load_source": "lens_rag.ingest",
    "load_beir": "lens_rag.evaluation",
    "evaluate_run": "lens_rag.evaluation",
    "LameRRetriever": "lens_rag.lamer",
    "answer_question": "lens_rag.answer",
    "OpenAICompatibleClient": "lens_rag.llm.openai_client",
    "TransformersClient": "lens_rag.llm.transformers_client",
}

__all__ = [
    "BM25Retriever",
    "CrossEncoderReranker",
    "DenseRetriever",
    "Document",
    "ElasticsearchStore",
    "EmbeddedStore",
    "EmbeddingCache",
    "HybridRetriever",
    "LENSEncoder",
    "LameRRetriever",
    "LensRagError",
    "MLMSparseEncoder",
    "OpenAICompatibleClient",
    "RerankingRetriever",
    "Retriever",
    "ScoredDocument",
    "SentenceTransformerDenseEncoder",
    "SourceHit",
    "SparseRetriever",
    "SparseVector",
    "TransformersClient",
    "__version__",
    "answer_question",
    "build_lens_head",
    "evaluate_run",
    "fuse",
    "index_documents",
    "load_beir",
    "load_source",
    "reciprocal_rank_fusion",
    "score_fusion",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lens_rag' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover
    from lens_rag.answer import answer_question
    from lens_rag.encoders.dense import SentenceTransformerDenseEncoder
    from lens_rag.encoders.head_builder import build_lens_head
    from lens_rag.encoders.lens import LENSEncoder
    from lens_rag.encoders.mlm import MLMSparseEncoder
    from lens_rag.evaluation import evaluate_run, load_beir
    from lens_rag.fusion import fuse, reciprocal_rank_fusion, score_fusion
    from lens_rag.indexing import EmbeddingCache, index_documents
    from lens_rag.ingest import load_source
    from lens_rag.lamer import LameRRetriever
    from lens_rag.llm.openai_client import OpenAICompatibleClient
    from lens_rag.llm.transformers_client import TransformersClient
    from lens_rag.rerank import CrossEncoderReranker
    from lens_rag.retrieval import (
        BM25Retriever,
        DenseRetriever,
        HybridRetriever,
        RerankingRetriever,
        Retriever,
        SparseRetriever,
    )
    from lens_rag.stores.elasticsearch import ElasticsearchStore
    from lens_rag.stores.embedded import EmbeddedStore
