"""Retrievers: one query string in, ranked `ScoredDocument`s out.

Every retriever — BM25, sparse, dense, hybrid, LameR — implements :class:`Retriever`, so they
compose: LameR takes any first and second stage, the hybrid fuses any set of them.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from lens_rag.documents import ScoredDocument
from lens_rag.filters import Filters

__all__ = ["Retriever"]


@runtime_checkable
class Retriever(Protocol):
    """Anything that answers a text query with ranked documents.

    `name` labels the results' per-source scores after fusion (e.g. ``"bm25"``).
    """

    name: str

    def retrieve(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]: ...

    async def retrieve_async(
        self, query: str, top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]: ...
