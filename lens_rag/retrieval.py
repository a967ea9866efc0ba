"""Retrievers: one query string in, ranked `ScoredDocument`s out.

Every retriever — BM25, sparse, dense, hybrid, LameR — implements :class:`Retriever`, so they
compose: LameR takes any first and second stage, the hybrid fuses any set of them.

Every retriever also has ``to_config()``/``from_config()`` (see :mod:`lens_rag.config`): the store,
encoders and inner retrievers are saved as their own nested configs.

**Async never blocks the event loop.** ``retrieve_async`` encodes queries in a worker thread, and
searches a store through its native ``search_*_async`` methods when it has them (Elasticsearch) or
in a worker thread otherwise, so other tasks keep running during a search.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from lens_rag.documents import ScoredDocument
from lens_rag.encoders.base import DenseEncoder, SparseEncoder
from lens_rag.errors import ConfigurationError
from lens_rag.filters import Filters
from lens_rag.fusion import RRF_K, FusionMethod, fuse
from lens_rag.sparse import SparseVector
from lens_rag.stores.base import Store
from lens_rag.validation import check_top_k

if TYPE_CHECKING:
    from lens_rag.rerank import Reranker

__all__ = [
    "BM25Retriever",
    "DenseRetriever",
    "HybridRetriever",
    "RerankingRetriever",
    "Retriever",
    "SparseRetriever",
]

SearchKind = Literal["bm25", "sparse", "dense"]


@runtime_checkable
class Retriever(Protocol):
    """Anything that answers a text query with ranked documents.

    `name` labels the results' per-source scores after fusion (e.g. ``"bm25"``). The built-in retrievers
    also have ``to_config()``/``from_config()`` (:mod:`lens_rag.config`); a custom retriever needs them only
    to be saved inside a configuration (register it with :func:`lens_rag.config.register`).
    """

    name: str

    def retrieve(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]: ...

    async def retrieve_async(
        self, query: str, top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]: ...


def _check_top_k(top_k: int) -> int:
    return check_top_k(top_k)


async def search_store_async(
    store: Store, kind: SearchKind, query: Any, top_k: int, filters: Filters | None
) -> list[ScoredDocument]:
    """Search `store` without blocking the event loop.

    Uses the store's ``search_<kind>_async`` when it has one (Elasticsearch: native async HTTP; the
    embedded store: a worker thread), else runs the sync ``search_<kind>`` with ``asyncio.to_thread``.

    :param kind: ``"bm25"``, ``"sparse"`` or ``"dense"``.
    """
    method = getattr(store, f"search_{kind}_async", None)
    if method is not None:
        hits: list[ScoredDocument] = await method(query, top_k=top_k, filters=filters)
        return hits
    return await asyncio.to_thread(getattr(store, f"search_{kind}"), query, top_k=top_k, filters=filters)


def _nested(obj: Any) -> dict[str, Any]:
    from lens_rag.config import to_config

    return to_config(obj)


class BM25Retriever:
    """BM25 over a store's `content` field.

    :param store: any :class:`~lens_rag.stores.base.Store`.
    :param name: label for per-source scores after fusion.
    """

    def __init__(self, store: Store, *, name: str = "bm25") -> None:
        self.store = store
        self.name = name

    def retrieve(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        top_k = _check_top_k(top_k)
        return _rename(self.store.search_bm25(query, top_k=top_k, filters=filters), self.name, "bm25")

    async def retrieve_async(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        top_k = _check_top_k(top_k)
        hits = await search_store_async(self.store, "bm25", query, top_k, filters)
        return _rename(hits, self.name, "bm25")

    def to_config(self) -> dict[str, Any]:
        """JSON-only configuration, the store nested as its own config (see :mod:`lens_rag.config`)."""
        return {"type": "bm25_retriever", "store": _nested(self.store), "name": self.name}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BM25Retriever:
        """Rebuild from :meth:`to_config` output (only ``store`` is required).

        :raises ConfigurationError: on unknown or missing keys.
        """
        from lens_rag.config import config_params, from_config, shared_instances

        params = config_params(config, cls.__name__, ("store", "name"), ("store",))
        with shared_instances():
            return cls(from_config(params.pop("store")), **params)


class _EncoderChecked:
    """Checks once, before the first search, that the store's vectors were made by this encoder."""

    store: Store
    _kind: Literal["sparse", "dense"]
    _encoder_checked: bool = False

    def _encoder(self) -> Any:
        raise NotImplementedError

    def _check_encoder(self) -> None:
        if self._encoder_checked:
            return
        from lens_rag.identity import ensure_encoder

        ensure_encoder(self.store, self._kind, self._encoder(), record=False)
        self._encoder_checked = True

    async def _check_encoder_async(self) -> None:
        if not self._encoder_checked:  # reading the store's info may be I/O (Elasticsearch mapping, SQLite)
            await asyncio.to_thread(self._check_encoder)


class SparseRetriever(_EncoderChecked):
    """Lexicon-vector (LENS / SPLADE) retrieval: encode the query, dot product in the store.

    Before its first search it checks that the store's sparse vectors were made by `encoder`
    (:func:`lens_rag.identity.ensure_encoder`); another encoder is refused with an
    :class:`~lens_rag.errors.EncoderMismatchError` naming both.

    :param store: the store holding documents indexed by the same encoder.
    :param encoder: a :class:`~lens_rag.encoders.base.SparseEncoder`.
    :param query_top_k: keep only the query's largest weights (`None`: all). Fewer terms are faster,
        especially on Elasticsearch; measure the nDCG cost before lowering it.
    """

    _kind = "sparse"

    def __init__(
        self, store: Store, encoder: SparseEncoder, *, query_top_k: int | None = None, name: str = "sparse"
    ) -> None:
        if query_top_k is not None and (
            isinstance(query_top_k, bool) or not isinstance(query_top_k, int) or query_top_k < 1
        ):
            raise ConfigurationError(f"query_top_k must be an integer >= 1 or None, got {query_top_k!r}")
        self.store = store
        self.encoder = encoder
        self.query_top_k = query_top_k
        self.name = name

    def _encoder(self) -> Any:
        return self.encoder

    def _encode(self, query: str) -> SparseVector:
        return self.encoder.encode_queries([query])[0].top_k(self.query_top_k)

    def retrieve(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        top_k = _check_top_k(top_k)
        self._check_encoder()
        return _rename(self.store.search_sparse(self._encode(query), top_k=top_k, filters=filters), self.name, "sparse")

    async def retrieve_async(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        top_k = _check_top_k(top_k)
        await self._check_encoder_async()
        vector = await asyncio.to_thread(self._encode, query)  # model forward passes are CPU-bound
        hits = await search_store_async(self.store, "sparse", vector, top_k, filters)
        return _rename(hits, self.name, "sparse")

    def to_config(self) -> dict[str, Any]:
        """JSON-only configuration, the store and encoder nested as their own configs."""
        return {
            "type": "sparse_retriever",
            "store": _nested(self.store),
            "encoder": _nested(self.encoder),
            "query_top_k": self.query_top_k,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SparseRetriever:
        """Rebuild from :meth:`to_config` output (``store`` and ``encoder`` are required).

        :raises ConfigurationError: on unknown or missing keys.
        """
        from lens_rag.config import config_params, from_config, shared_instances

        params = config_params(config, cls.__name__, ("store", "encoder", "query_top_k", "name"), ("store", "encoder"))
        with shared_instances():
            return cls(from_config(params.pop("store")), from_config(params.pop("encoder")), **params)


class DenseRetriever(_EncoderChecked):
    """Dense-vector retrieval: encode the query, cosine similarity in the store.

    Before its first search it checks that the store's dense vectors were made by `encoder`
    (:func:`lens_rag.identity.ensure_encoder`).

    :param store: the store holding documents indexed by the same encoder.
    :param encoder: a :class:`~lens_rag.encoders.base.DenseEncoder`.
    """

    _kind = "dense"

    def __init__(self, store: Store, encoder: DenseEncoder, *, name: str = "dense") -> None:
        self.store = store
        self.encoder = encoder
        self.name = name

    def _encoder(self) -> Any:
        return self.encoder

    def _encode(self, query: str) -> list[float]:
        return self.encoder.encode_queries([query])[0]

    def retrieve(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        top_k = _check_top_k(top_k)
        self._check_encoder()
        return _rename(self.store.search_dense(self._encode(query), top_k=top_k, filters=filters), self.name, "dense")

    async def retrieve_async(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        top_k = _check_top_k(top_k)
        await self._check_encoder_async()
        vector = await asyncio.to_thread(self._encode, query)
        hits = await search_store_async(self.store, "dense", vector, top_k, filters)
        return _rename(hits, self.name, "dense")

    def to_config(self) -> dict[str, Any]:
        """JSON-only configuration, the store and encoder nested as their own configs."""
        return {
            "type": "dense_retriever",
            "store": _nested(self.store),
            "encoder": _nested(self.encoder),
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DenseRetriever:
        """Rebuild from :meth:`to_config` output (``store`` and ``encoder`` are required).

        :raises ConfigurationError: on unknown or missing keys.
        """
        from lens_rag.config import config_params, from_config, shared_instances

        params = config_params(config, cls.__name__, ("store", "encoder", "name"), ("store", "encoder"))
        with shared_instances():
            return cls(from_config(params.pop("store")), from_config(params.pop("encoder")), **params)


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

    ``retrieve_async`` runs the retrievers concurrently (``asyncio.gather``).

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
        if isinstance(candidate_k, bool) or not isinstance(candidate_k, int) or candidate_k < 1:
            raise ConfigurationError(f"candidate_k must be an integer >= 1, got {candidate_k!r}")
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
        top_k = _check_top_k(top_k)
        depth = self._depth(top_k)
        lists = _one_round_trip(self.retrievers, query, depth, filters)  # es-ops: one _msearch when possible
        if lists is None:
            lists = {r.name: r.retrieve(query, top_k=depth, filters=filters) for r in self.retrievers}
        return fuse(lists, self.fusion, weights=self.weights, rrf_k=self.rrf_k, top_k=top_k)

    async def retrieve_async(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        top_k = _check_top_k(top_k)
        depth = self._depth(top_k)
        lists = await _one_round_trip_async(self.retrievers, query, depth, filters)  # es-ops: one _msearch
        if lists is None:
            results = await asyncio.gather(
                *(r.retrieve_async(query, top_k=depth, filters=filters) for r in self.retrievers)
            )
            lists = {r.name: hits for r, hits in zip(self.retrievers, results)}
        return fuse(lists, self.fusion, weights=self.weights, rrf_k=self.rrf_k, top_k=top_k)

    def to_config(self) -> dict[str, Any]:
        """JSON-only configuration, each retriever nested as its own config."""
        return {
            "type": "hybrid_retriever",
            "retrievers": [_nested(r) for r in self.retrievers],
            "fusion": self.fusion,
            "weights": self.weights,
            "candidate_k": self.candidate_k,
            "rrf_k": self.rrf_k,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> HybridRetriever:
        """Rebuild from :meth:`to_config` output (only ``retrievers`` is required).

        Retrievers whose nested store or encoder configs are equal share one instance of it.

        :raises ConfigurationError: on unknown or missing keys.
        """
        from lens_rag.config import config_params, from_config, shared_instances

        allowed = ("retrievers", "fusion", "weights", "candidate_k", "rrf_k", "name")
        params = config_params(config, cls.__name__, allowed, ("retrievers",))
        retrievers = params.pop("retrievers")
        if not isinstance(retrievers, list):
            raise ConfigurationError(
                f"HybridRetriever config 'retrievers' must be a list of configs, got {retrievers!r}"
            )
        with shared_instances():
            return cls([from_config(r) for r in retrievers], **params)


class RerankingRetriever:
    """Retrieves `candidate_k` results with any retriever and reorders them with a reranker.

    :param retriever: the first stage (often a :class:`HybridRetriever`).
    :param reranker: a :class:`~lens_rag.rerank.Reranker` (e.g. `CrossEncoderReranker`).
    :param candidate_k: how many first-stage results the reranker sees.
    """

    def __init__(
        self, retriever: Retriever, reranker: Reranker, *, candidate_k: int = 50, name: str | None = None
    ) -> None:
        if isinstance(candidate_k, bool) or not isinstance(candidate_k, int) or candidate_k < 1:
            raise ConfigurationError(f"candidate_k must be an integer >= 1, got {candidate_k!r}")
        self.retriever = retriever
        self.reranker = reranker
        self.candidate_k = candidate_k
        self._name = name
        self.name = name if name is not None else f"{retriever.name}+rerank"

    def retrieve(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        top_k = _check_top_k(top_k)
        hits = self.retriever.retrieve(query, top_k=max(self.candidate_k, top_k), filters=filters)
        return list(self.reranker.rerank(query, hits, top_k=top_k))

    async def retrieve_async(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        top_k = _check_top_k(top_k)
        hits = await self.retriever.retrieve_async(query, top_k=max(self.candidate_k, top_k), filters=filters)
        return list(await self.reranker.rerank_async(query, hits, top_k=top_k))

    def to_config(self) -> dict[str, Any]:
        """JSON-only configuration, the retriever and reranker nested as their own configs."""
        return {
            "type": "reranking_retriever",
            "retriever": _nested(self.retriever),
            "reranker": _nested(self.reranker),
            "candidate_k": self.candidate_k,
            "name": self._name,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RerankingRetriever:
        """Rebuild from :meth:`to_config` output (``retriever`` and ``reranker`` are required).

        :raises ConfigurationError: on unknown or missing keys.
        """
        from lens_rag.config import config_params, from_config, shared_instances

        allowed = ("retriever", "reranker", "candidate_k", "name")
        params = config_params(config, cls.__name__, allowed, ("retriever", "reranker"))
        with shared_instances():
            return cls(from_config(params.pop("retriever")), from_config(params.pop("reranker")), **params)


def _rename(hits: list[ScoredDocument], name: str, store_label: str) -> list[ScoredDocument]:
    # Stores label hits by query type; the retriever's own name is what fusion reports.
    if name != store_label:
        for h in hits:
            if store_label in h.sources:
                h.sources[name] = h.sources.pop(store_label)
    return hits


# --- es-ops: hybrid in one round trip ---------------------------------------------------------------------------------
# When every member of a HybridRetriever is a plain BM25/sparse/dense retriever over one store that
# has `search_many` (Elasticsearch: one `_msearch`), the queries are encoded side by side and all
# searches go to the server in one request. Results are the same as searching one after another.

#: Encode the sparse and dense query in two threads at once (torch releases the GIL during the
#: forward pass). Measured with benchmarks/es_hybrid_latency.py; set False to encode one after another.
PARALLEL_QUERY_ENCODING = True
_ONE_TRIP_KINDS: dict[type, SearchKind] = {BM25Retriever: "bm25", SparseRetriever: "sparse", DenseRetriever: "dense"}
_encode_pool: Any = None
_warm_encoders: weakref.WeakSet[Any] = weakref.WeakSet()


def _one_trip_store(retrievers: Sequence[Retriever], method: str) -> Any:
    """The store all members search, when each is a plain BM25/sparse/dense retriever and the store has `method`."""
    if len(retrievers) < 2 or any(type(r) not in _ONE_TRIP_KINDS for r in retrievers):
        return None
    store = getattr(retrievers[0], "store", None)
    if any(getattr(r, "store", None) is not store for r in retrievers):
        return None
    return store if callable(getattr(store, method, None)) else None


def _one_trip_requests(
    retrievers: Sequence[Retriever], queries: Sequence[Any], depth: int, filters: Filters | None
) -> list[Any]:
    from lens_rag.stores.elasticsearch.msearch import SearchRequest

    return [SearchRequest(_ONE_TRIP_KINDS[type(r)], q, depth, filters) for r, q in zip(retrievers, queries)]


def _all_warm(encoders: Sequence[Any]) -> bool:
    """Whether every encoder has encoded before in this process (its model is loaded)."""
    try:
        return all(e in _warm_encoders for e in encoders)
    except TypeError:  # not weak-referenceable: never run it beside another one
        return False


def _mark_warm(encoders: Sequence[Any]) -> None:
    for e in encoders:
        try:
            _warm_encoders.add(e)
        except TypeError:
            pass


def _encode_side_by_side(retrievers: Sequence[Any], query: str) -> list[Any]:
    """Each member's query: the text for BM25, else its encoder's vector (several encoders run in parallel threads).

    Until every encoder has encoded once they run one after another: loading two models at once in
    two threads races inside `transformers`' lazy imports.
    """
    global _encode_pool
    out: list[Any] = [query] * len(retrievers)
    encoding = [i for i, r in enumerate(retrievers) if type(r) is not BM25Retriever]
    encoders = [getattr(retrievers[i], "encoder", None) for i in encoding]
    if len(encoding) > 1 and PARALLEL_QUERY_ENCODING and _all_warm(encoders):
        if _encode_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _encode_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lens-rag-encode")
        futures = {i: _encode_pool.submit(retrievers[i]._encode, query) for i in encoding}
        for i, future in futures.items():
            out[i] = future.result()
    else:
        for i in encoding:
            out[i] = retrievers[i]._encode(query)
        _mark_warm(encoders)
    return out


def _one_round_trip(
    retrievers: Sequence[Retriever], query: str, depth: int, filters: Filters | None
) -> dict[str, list[ScoredDocument]] | None:
    """The members' result lists from one `search_many` call, or None when the members do not qualify."""
    store = _one_trip_store(retrievers, "search_many")
    if store is None:
        return None
    for r in retrievers:
        if isinstance(r, _EncoderChecked):
            r._check_encoder()
    queries = _encode_side_by_side(retrievers, query)
    results = store.search_many(_one_trip_requests(retrievers, queries, depth, filters))
    return {r.name: _rename(hits, r.name, _ONE_TRIP_KINDS[type(r)]) for r, hits in zip(retrievers, results)}


async def _one_round_trip_async(
    retrievers: Sequence[Retriever], query: str, depth: int, filters: Filters | None
) -> dict[str, list[ScoredDocument]] | None:
    """Async twin of :func:`_one_round_trip`: encodes in worker threads, one `search_many_async` call."""
    store = _one_trip_store(retrievers, "search_many_async")
    if store is None:
        return None
    for r in retrievers:
        if isinstance(r, _EncoderChecked):
            await r._check_encoder_async()
    queries = await asyncio.to_thread(_encode_side_by_side, retrievers, query)
    results = await store.search_many_async(_one_trip_requests(retrievers, queries, depth, filters))
    return {r.name: _rename(hits, r.name, _ONE_TRIP_KINDS[type(r)]) for r, hits in zip(retrievers, results)}


# --- es-ops: end of hybrid in one round trip --------------------------------------------------------------------------
