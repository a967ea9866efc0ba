"""The `Store` protocol: what the embedded store and the Elasticsearch store both implement.

Retrievers, fusion, LameR and the framework adapters only talk to this protocol, so every feature
works on both backends. Queries arrive already encoded: stores never load models.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

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

    def count_documents(self, filters: Filters | None = None) -> int: ...

    def filter_documents(
        self, filters: Filters | None = None, *, limit: int | None = None, include_embeddings: bool = False
    ) -> list[Document]: ...

    def iter_documents(
        self, filters: Filters | None = None, *, batch_size: int = 1000, include_embeddings: bool = False
    ) -> Iterator[Document]: ...

    def delete_by_filter(self, filters: Filters) -> int: ...

    def delete_all_documents(self) -> int: ...

    def update_by_filter(self, filters: Filters | None, meta: dict[str, Any]) -> int: ...

    @property
    def info(self) -> dict[str, Any]: ...

    def set_info(self, info: Mapping[str, Any]) -> None: ...

    def to_config(self) -> dict[str, Any]: ...

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

    async def get_documents_async(self, ids: Sequence[str]) -> list[Document]: ...

    async def count_documents_async(self, filters: Filters | None = None) -> int: ...

    async def filter_documents_async(
        self, filters: Filters | None = None, *, limit: int | None = None, include_embeddings: bool = False
    ) -> list[Document]: ...

    def iter_documents_async(
        self, filters: Filters | None = None, *, batch_size: int = 1000, include_embeddings: bool = False
    ) -> AsyncIterator[Document]: ...

    async def delete_by_filter_async(self, filters: Filters) -> int: ...

    async def delete_all_documents_async(self) -> int: ...

    async def update_by_filter_async(self, filters: Filters | None, meta: dict[str, Any]) -> int: ...

    async def info_async(self) -> dict[str, Any]: ...

    async def set_info_async(self, info: Mapping[str, Any]) -> None: ...

    async def search_bm25_async(
        self, query: str, top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]: ...

    async def search_sparse_async(
        self, query: SparseVector, top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]: ...

    async def search_dense_async(
        self, query: Sequence[float], top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]: ...
