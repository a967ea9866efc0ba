"""LangChain components over lens-rag: retrievers (BM25, LENS/SPLADE sparse, dense, hybrid, reranking,
LameR), embeddings, a vector store and a cross-encoder compressor. Install with ``pip install 'lens-rag[langchain]'``.
"""

from __future__ import annotations

from langchain_lens_rag.compressors import CrossEncoderCompressor
from langchain_lens_rag.embeddings import LensRagEmbeddings
from langchain_lens_rag.llm import ChatModelClient
from langchain_lens_rag.retrievers import (
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    LameRRetriever,
    LensRagRetriever,
    RerankingRetriever,
    SparseRetriever,
)
from langchain_lens_rag.vectorstores import LensRagVectorStore

__all__ = [
    "BM25Retriever",
    "ChatModelClient",
    "CrossEncoderCompressor",
    "DenseRetriever",
    "HybridRetriever",
    "LameRRetriever",
    "LensRagEmbeddings",
    "LensRagRetriever",
    "LensRagVectorStore",
    "RerankingRetriever",
    "SparseRetriever",
]
