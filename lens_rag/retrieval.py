"""Retrievers: one query string in, ranked `ScoredDocument`s out.

Every retriever — BM25, sparse, dense, hybrid, LameR — implements :class:`Retriever`, so they
compose: LameR takes any first and second stage, the hybrid fuses any set of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from lens_rag.documents import ScoredDocument
from lens_rag.encoders.base import DenseEncoder, SparseEncoder
from lens_rag.errors import ConfigurationError
from lens_rag.filters import Filters
from lens_rag.fusion import RRF_K, FusionMethod, fuse
from lens_rag.sparse import SparseVector
from lens_rag.stores.base import AsyncStore, Store

__all__ = [
    "BM25Retriever",
    "DenseRetriever",
    "HybridRetriever",
    "RerankingRetriever",
    "Retriever",
    "SparseRetriever",
]


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


def _check_top_k(top_k: int) -> None:
    if top_k < 0:
        raise ConfigurationError(f"top_k must be >= 0, got {top_k}")


class BM25Retriever:
    """BM25 over a store's `content` field.

    :param store: any :class:`~lens_rag.stores.base.Store`.
    :param name: label for per-source scores after fusion.
    """

    def __init__(self, store: Store, *, name: str = "bm25") -> None:
        self.store = store
        self.name = name

    def retrieve(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        _check_top_k(top_k)
        return _rename(self.store.search_bm25(query, top_k=top_k, filters=filters), self.name, "bm25")

    async def retrieve_async(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        _check_top_k(top_k)
        if isinstance(self.store, AsyncStore):
            hits = await self.store.search_bm25_async(query, top_k=top_k, filters=filters)
        else:
            hits = self.store.search_bm25(query, top_k=top_k, filters=filters)
        return _rename(hits, self.name, "bm25")


class SparseRetriever:
    """Lexicon-vector (LENS / SPLADE) retrieval: encode the query, dot product in the store.

    :param store: the store holding documents indexed by the same encoder.
    :param encoder: a :class:`~lens_rag.encoders.base.SparseEncoder`.
    :param query_top_k: keep only the query's largest weights (`None`: all). Fewer terms are faster,
        especially on Elasticsearch; measure the nDCG cost before lowering it.
    """

    def __init__(
        self, store: Store, encoder: SparseEncoder, *, query_top_k: int | None = None, name: str = "sparse"
    ) -> None:
        if query_top_k is not None and query_top_k < 1:
            raise ConfigurationError(f"query_top_k must be >= 1 or None, got {query_top_k}")
        self.store = store
        self.encoder = encoder
        self.query_top_k = query_top_k
        self.name = name

    def _encode(self, query: str) -> SparseVector:
        return self.encoder.encode_queries([query])[0].top_k(self.query_top_k)

    def retrieve(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        _check_top_k(top_k)
        return _rename(self.store.search_sparse(self._encode(query), top_k=top_k, filters=filters), self.name, "sparse")

    async def retrieve_async(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        _check_top_k(top_k)
        vector = await asyncio.to_thread(self._encode, query)  # model forward passes are CPU-bound
        if isinstance(self.store, AsyncStore):
            hits = await self.store.search_sparse_async(vector, top_k=top_k, filters=filters)
        else:
            hits = self.store.search_sparse(vector, top_k=top_k, filters=filters)
        return _rename(hits, self.name, "sparse")


class DenseRetriever:
    """Dense-vector retrieval: encode the query, cosine similarity in the store.

    :param store: the store holding documents indexed by the same encoder.
    :param encoder: a :class:`~lens_rag.encoders.base.DenseEncoder`.
    """

    def __init__(self, store: Store, encoder: DenseEncoder, *, name: str = "dense") -> None:
        self.store = store
        self.encoder = encoder
        self.name = name

    def retrieve(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        _check_top_k(top_k)
        vector = self.encoder.encode_queries([query])[0]
        return _rename(self.store.search_dense(vector, top_k=top_k, filters=filters), self.name, "dense")

    async def retrieve_async(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        _check_top_k(top_k)
        vector = (await asyncio.to_thread(self.encoder.encode_queries, [query]))[0]
        if isinstance(self.store, AsyncStore):
            hits = await self.store.search_dense_async(vector, top_k=top_k, filters=filters)
        else:
            hits = self.store.search_dense(vector, top_k=top_k, filters=filters)
        return _rename(hits, self.name, "dense")


class HybridRetriever:
    """Runs several retrievers and fuses their lists client-side.

    :param retrievers: the retrievers to fuse; their `name`s must differ (they label `sources`).
    :param fusion: `"minmax"` (default), `"rrf"` or `"dbsf"` — see :mod:`lens_rag.fusion`. Min–max
        score fusion is the default because it measured better than RRF here (SciFact, BM25 +
        SPLADE-tiny + MiniLM: 0.732 vs 0.713 nDCG@10, `benchmarks/fusion_variants.py`) and in
        Bruch et al., "An Analysis of Fusion Functions for Hybrid Retrieval" (TOIS 2023), where a
        convex combination of normalised scores beat RRF in and out of domain. RRF remains one
        argument away and needs no score calibration.
    :param weights: per-retriever weight by name (default 1 each).
    :param candidate_k: how many results each retriever contributes (candidate depth), apart
        from the final `top_k`.
    :param rrf_k: the RRF constant.

    Usage::

        hybrid = HybridRetriever([BM25Retriever(store), DenseRetriever(store, encoder)])
        hits = hybrid.retrieve("does aspirin lower fever?", top_k=10)
        hits[0].sources  # {"bm25": SourceHit(score=..., rank=...), "dense": ...}
    """

    def __init__(
        self,
        retrievers: Sequence[Retriever],
        *,
        fusion: FusionMethod = "minmax",
        weights: Mapping[str, float] | None = None,
        candidate_k: int = 100,
        rrf_k: int = RRF_K,
        name: str = "hybrid",
    ) -> None:
        if not retrievers:
            raise ConfigurationError("HybridRetriever needs at least one retriever in `retrievers`")
        names = [r.name for r in retrievers]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"retriever names must be unique to label fused results, got {names}")
        if candidate_k < 1:
            raise ConfigurationError(f"candidate_k must be >= 1, got {candidate_k}")
        if fusion not in ("rrf", "minmax", "dbsf"):
            raise ConfigurationError(f"fusion must be 'rrf', 'minmax' or 'dbsf', got {fusion!r}")
        self.retrievers = list(retrievers)
        self.fusion = fusion
        self.weights = dict(weights) if weights is not None else None
        self.candidate_k = candidate_k
        self.rrf_k = rrf_k
        self.name = name
        if self.weights is not None:
            unknown = set(self.weights) - set(names)
            if unknown:
                raise ConfigurationError(f"weights name unknown retrievers {sorted(unknown)}; retrievers: {names}")

    def _depth(self, top_k: int) -> int:
        return max(self.candidate_k, top_k)

    def retrieve(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        _check_top_k(top_k)
        depth = self._depth(top_k)
        lists = {r.name: r.retrieve(query, top_k=depth, filters=filters) for r in self.retrievers}
        return fuse(lists, self.fusion, weights=self.weights, rrf_k=self.rrf_k, top_k=top_k)

    async def retrieve_async(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        _check_top_k(top_k)
        depth = self._depth(top_k)
        results = await asyncio.gather(
            *(r.retrieve_async(query, top_k=depth, filters=filters) for r in self.retrievers)
        )
        lists = {r.name: hits for r, hits in zip(self.retrievers, results)}
        return fuse(lists, self.fusion, weights=self.weights, rrf_k=self.rrf_k, top_k=top_k)


class RerankingRetriever:
    """Retrieves `candidate_k` results with any retriever and reorders them with a reranker.

    :param retriever: the first stage (often a :class:`HybridRetriever`).
    :param reranker: anything with ``rerank(query, documents, top_k=...)`` (e.g. `CrossEncoderReranker`).
    :param candidate_k: how many first-stage results the reranker sees.
    """

    def __init__(self, retriever: Retriever, reranker: Any, *, candidate_k: int = 50, name: str | None = None) -> None:
        if candidate_k < 1:
            raise ConfigurationError(f"candidate_k must be >= 1, got {candidate_k}")
        self.retriever = retriever
        self.reranker = reranker
        self.candidate_k = candidate_k
        self.name = name if name is not None else f"{retriever.name}+rerank"

    def retrieve(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        _check_top_k(top_k)
        hits = self.retriever.retrieve(query, top_k=max(self.candidate_k, top_k), filters=filters)
        return list(self.reranker.rerank(query, hits, top_k=top_k))

    async def retrieve_async(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        _check_top_k(top_k)
        hits = await self.retriever.retrieve_async(query, top_k=max(self.candidate_k, top_k), filters=filters)
        return list(await self.reranker.rerank_async(query, hits, top_k=top_k))


def _rename(hits: list[ScoredDocument], name: str, store_label: str) -> list[ScoredDocument]:
    # Stores label hits by query type; the retriever's own name is what fusion reports.
    if name != store_label:
        for h in hits:
            if store_label in h.sources:
                h.sources[name] = h.sources.pop(store_label)
    return hits
