"""The `Store` protocol: what the embedded store and the Elasticsearch store both implement.

Retrievers, fusion, LameR and the framework adapters only talk to this protocol, so every feature
works on both backends. Queries arrive already encoded: stores never load models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from lens_rag.documents import Document, ScoredDocument
from lens_rag.filters import Filters
from lens_rag.sparse import SparseVector

__all__ = ["AsyncStore", "Store", "WriteResult"]


@dataclass
class WriteResult:
    """How a write went: ids written (new or replaced). Failures raise `BulkWriteError` instead."""

    written: int = 0
    ids: list[str] = field(default_factory=list)


@runtime_checkable
class Store(Protocol):
    """A document store with BM25, sparse (dot product) and dense (cosine) search.

    Writing a document whose id exists replaces it (idempotent re-indexing). Searches return
    :class:`ScoredDocument` lists sorted by score, ranks from 1, without embeddings unless asked.
    """

    def write_documents(self, documents: Sequence[Document]) -> WriteResult: ...

    def delete_documents(self, ids: Sequence[str]) -> int: ...

    def get_documents(self, ids: Sequence[str]) -> list[Document]: ...

    def count_documents(self) -> int: ...

    def search_bm25(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]: ...

    def search_sparse(
        self, query: SparseVector, top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]: ...

    def search_dense(
        self, query: Sequence[float], top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]: ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncStore(Protocol):
    """The async twin of :class:`Store`: same names with an `_async` suffix, same arguments and results."""

    async def write_documents_async(self, documents: Sequence[Document]) -> WriteResult: ...

    async def delete_documents_async(self, ids: Sequence[str]) -> int: ...

    async def search_bm25_async(
        self, query: str, top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]: ...

    async def search_sparse_async(
        self, query: SparseVector, top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]: ...

    async def search_dense_async(
        self, query: Sequence[float], top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]: ...
