"""BM25, sparse and dense retrievers over a `LensRagDocumentStore` (the core store does the search)."""

from __future__ import annotations

import asyncio
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.dataclasses import SparseEmbedding
from haystack.document_stores.types import FilterPolicy
from haystack.document_stores.types.filter_policy import apply_filter_policy
from haystack_integrations.common.lens_rag.convert import to_filter_node, to_haystack_document, to_lens_sparse
from haystack_integrations.document_stores.lens_rag import LensRagDocumentStore

from lens_rag.documents import ScoredDocument
from lens_rag.validation import check_top_k

__all__ = ["LensRagBM25Retriever", "LensRagDenseRetriever", "LensRagSparseRetriever"]


class _Base:
    _kind = ""

    def __init__(
        self,
        *,
        document_store: LensRagDocumentStore,
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        filter_policy: str | FilterPolicy = FilterPolicy.REPLACE,
    ) -> None:
        if not isinstance(document_store, LensRagDocumentStore):
            raise ValueError(
                f"document_store must be a LensRagDocumentStore, got {type(document_store).__name__}; "
                "for an ElasticsearchDocumentStore use LensRagElasticsearchSparseRetriever"
            )
        self.document_store = document_store
        self.filters = filters
        self.top_k = check_top_k(top_k)
        self.filter_policy = FilterPolicy.from_str(filter_policy) if isinstance(filter_policy, str) else filter_policy

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            document_store=self.document_store.to_dict(),
            filters=self.filters,
            top_k=self.top_k,
            filter_policy=self.filter_policy.value,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        params = data["init_parameters"]
        params["document_store"] = LensRagDocumentStore.from_dict(params["document_store"])
        return default_from_dict(cls, data)

    def _args(self, filters: dict[str, Any] | None, top_k: int | None) -> tuple[int, Any]:
        top_k = check_top_k(self.top_k if top_k is None else top_k)
        return top_k, to_filter_node(apply_filter_policy(self.filter_policy, self.filters, filters))

    def _search(self, query: Any, top_k: int, node: Any) -> list[ScoredDocument]:
        return getattr(self.document_store.store, f"search_{self._kind}")(query, top_k=top_k, filters=node)  # type: ignore[no-any-return]

    async def _search_async(self, query: Any, top_k: int, node: Any) -> list[ScoredDocument]:
        native = getattr(self.document_store.store, f"search_{self._kind}_async", None)
        if native is not None:
            return await native(query, top_k=top_k, filters=node)  # type: ignore[no-any-return]
        return await asyncio.to_thread(self._search, query, top_k, node)


def _out(hits: list[ScoredDocument]) -> dict[str, list[Document]]:
    return {"documents": [to_haystack_document(h, with_sources=False) for h in hits]}


@component
class LensRagBM25Retriever(_Base):
    """BM25 over a `LensRagDocumentStore` (Lucene's scoring: k1 1.2, b 0.75, English stemming by default).

    :param document_store: the store to search.
    :param filters: Haystack filters applied to every query (see `filter_policy`).
    :param top_k: how many documents to return.
    :param filter_policy: how runtime filters combine with `filters` (``replace`` or ``merge``).

    Usage::

        retriever = LensRagBM25Retriever(document_store=LensRagDocumentStore("my-index"))
        retriever.run(query="what causes scurvy?")["documents"]
    """

    _kind = "bm25"

    @component.output_types(documents=list[Document])
    def run(self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None) -> dict[str, Any]:
        """Documents ranked by BM25 score (best first, `score` set).

        :param query: the query text.
        :param filters: runtime Haystack filters.
        :param top_k: overrides the instance's `top_k` (``0`` returns none).
        """
        top_k, node = self._args(filters, top_k)
        return _out(self._search(query, top_k, node))

    @component.output_types(documents=list[Document])
    async def run_async(
        self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None
    ) -> dict[str, Any]:
        """The async twin of :meth:`run`."""
        top_k, node = self._args(filters, top_k)
        return _out(await self._search_async(query, top_k, node))


@component
class LensRagSparseRetriever(_Base):
    """Sparse (LENS / SPLADE) retrieval by dot product; the query comes from `LensRagSparseTextEmbedder`.

    Takes the arguments of :class:`LensRagBM25Retriever`. The store's documents must have been embedded
    by the same model as the query.
    """

    _kind = "sparse"

    @component.output_types(documents=list[Document])
    def run(
        self,
        query_sparse_embedding: SparseEmbedding,
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
    ) -> dict[str, Any]:
        """Documents ranked by sparse dot product.

        :param query_sparse_embedding: the encoded query.
        :param filters: runtime Haystack filters.
        :param top_k: overrides the instance's `top_k`.
        """
        top_k, node = self._args(filters, top_k)
        return _out(self._search(to_lens_sparse(query_sparse_embedding), top_k, node))

    @component.output_types(documents=list[Document])
    async def run_async(
        self,
        query_sparse_embedding: SparseEmbedding,
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
    ) -> dict[str, Any]:
        """The async twin of :meth:`run`."""
        top_k, node = self._args(filters, top_k)
        return _out(await self._search_async(to_lens_sparse(query_sparse_embedding), top_k, node))


@component
class LensRagDenseRetriever(_Base):
    """Dense retrieval by cosine similarity; the query comes from `LensRagDenseTextEmbedder` (or any text embedder).

    Takes the arguments of :class:`LensRagBM25Retriever`.
    """

    _kind = "dense"

    @component.output_types(documents=list[Document])
    def run(
        self, query_embedding: list[float], filters: dict[str, Any] | None = None, top_k: int | None = None
    ) -> dict[str, Any]:
        """Documents ranked by cosine similarity.

        :param query_embedding: the encoded query.
        :param filters: runtime Haystack filters.
        :param top_k: overrides the instance's `top_k`.
        """
        top_k, node = self._args(filters, top_k)
        return _out(self._search(query_embedding, top_k, node))

    @component.output_types(documents=list[Document])
    async def run_async(
        self, query_embedding: list[float], filters: dict[str, Any] | None = None, top_k: int | None = None
    ) -> dict[str, Any]:
        """The async twin of :meth:`run`."""
        top_k, node = self._args(filters, top_k)
        return _out(await self._search_async(query_embedding, top_k, node))
