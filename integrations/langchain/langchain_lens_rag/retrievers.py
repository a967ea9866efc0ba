"""LangChain retrievers over lens-rag's core retrievers, on the embedded store or Elasticsearch.

Every retriever here has a `k` field, honours ``invoke(query, k=…)`` and ``filters=…`` per call, has a
native async path (`ainvoke` calls the core's `retrieve_async`), and returns documents whose `id` is
the store id and whose metadata carries the score, rank and each source's own score and rank.

Usage::

    from lens_rag import EmbeddedStore
    from langchain_lens_rag import BM25Retriever, DenseRetriever, HybridRetriever, SparseRetriever

    store = EmbeddedStore("my-index")
    hybrid = HybridRetriever(retrievers=[BM25Retriever(store=store), SparseRetriever(store=store),
                                         DenseRetriever(store=store)], k=5)
    docs = hybrid.invoke("what causes scurvy?", k=3)
    docs[0].metadata["sources"]   # {"bm25": {"score": …, "rank": 1}, "sparse": …, "dense": …}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.language_models import BaseLanguageModel
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, PrivateAttr

from langchain_lens_rag._convert import merge_filters, scored_from_lc, to_lc_document
from lens_rag import retrieval as core
from lens_rag.documents import ScoredDocument
from lens_rag.errors import ConfigurationError
from lens_rag.filters import Filters
from lens_rag.fusion import RRF_K, FusionMethod

__all__ = [
    "BM25Retriever",
    "DenseRetriever",
    "HybridRetriever",
    "LameRRetriever",
    "LensRagRetriever",
    "RerankingRetriever",
    "SparseRetriever",
]


class LensRagRetriever(BaseRetriever):
    """Base of every retriever here: builds a core retriever once and converts its results.

    :param k: how many documents to return (``invoke(q, k=…)`` overrides it per call; 0 returns none).
    :param filters: metadata filters always applied (lens-rag's filter language); a call's
        ``filters=…`` is ANDed with them.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    k: int = 4
    filters: dict[str, Any] | None = None
    _core: Any = PrivateAttr(default=None)

    def _build(self) -> Any:
        raise NotImplementedError

    def as_core(self) -> Any:
        """The core lens-rag retriever this wraps (built on first use)."""
        if self._core is None:
            self._core = self._build()
        return self._core

    def _top_k(self, k: int | None) -> int:
        top_k = self.k if k is None else k
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise ConfigurationError(f"k must be an integer >= 0, got {top_k!r}")
        return top_k

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        filters: Filters | None = None,
    ) -> list[LCDocument]:
        hits = self.as_core().retrieve(query, top_k=self._top_k(k), filters=merge_filters(self.filters, filters))
        return [to_lc_document(h) for h in hits]

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        filters: Filters | None = None,
    ) -> list[LCDocument]:
        hits = await self.as_core().retrieve_async(
            query, top_k=self._top_k(k), filters=merge_filters(self.filters, filters)
        )
        return [to_lc_document(h) for h in hits]


class BM25Retriever(LensRagRetriever):
    """BM25 over a lens-rag store's text.

    :param store: an `EmbeddedStore` or `ElasticsearchStore`.
    :param name: this source's name in fused results.
    """

    store: Any
    name: str | None = "bm25"

    def _build(self) -> Any:
        return core.BM25Retriever(self.store, name=self.name or "bm25")


class SparseRetriever(LensRagRetriever):
    """LENS / SPLADE sparse retrieval (the query is encoded client-side, dot product in the store).

    :param store: the store, indexed with the same sparse encoder.
    :param encoder: a lens-rag sparse encoder; `None` uses the offline default (SPLADE-tiny).
    :param query_top_k: keep only the query's largest weights (`None`: all).
    """

    store: Any
    encoder: Any = None
    query_top_k: int | None = None
    name: str | None = "sparse"

    def _build(self) -> Any:
        encoder = self.encoder
        if encoder is None:
            from lens_rag.encoders.mlm import MLMSparseEncoder

            encoder = MLMSparseEncoder()
        return core.SparseRetriever(self.store, encoder, query_top_k=self.query_top_k, name=self.name or "sparse")


class DenseRetriever(LensRagRetriever):
    """Dense retrieval (cosine) with a lens-rag dense encoder.

    :param store: the store, indexed with the same dense encoder.
    :param encoder: a lens-rag dense encoder; `None` uses the offline default (all-MiniLM-L6-v2).
    """

    store: Any
    encoder: Any = None
    name: str | None = "dense"

    def _build(self) -> Any:
        encoder = self.encoder
        if encoder is None:
            from lens_rag.encoders.dense import SentenceTransformerDenseEncoder

            encoder = SentenceTransformerDenseEncoder()
        return core.DenseRetriever(self.store, encoder, name=self.name or "dense")


class _ForeignRetriever:
    """Any LangChain retriever seen as a core retriever, so it can be fused and reranked with ours."""

    def __init__(self, retriever: BaseRetriever, name: str) -> None:
        self.retriever = retriever
        self.name = name

    def _check(self, filters: Filters | None) -> None:
        if filters:
            raise ConfigurationError(
                f"retriever {self.name!r} is not a lens-rag retriever, so lens-rag filters cannot be passed to it; "
                "configure its own filters (e.g. search_kwargs) instead"
            )

    def _hits(self, docs: Sequence[LCDocument], top_k: int) -> list[ScoredDocument]:
        return [scored_from_lc(d, rank=i + 1, source=self.name) for i, d in enumerate(docs[:top_k])]

    def retrieve(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        self._check(filters)
        return self._hits(self.retriever.invoke(query), top_k)

    async def retrieve_async(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        self._check(filters)
        return self._hits(await self.retriever.ainvoke(query), top_k)


def _core_of(retriever: Any, position: int) -> Any:
    if isinstance(retriever, LensRagRetriever):
        return retriever.as_core()
    if isinstance(retriever, BaseRetriever):
        return _ForeignRetriever(retriever, name=retriever.get_name() or f"retriever{position}")
    if isinstance(retriever, core.Retriever):
        return retriever  # a core lens-rag retriever is welcome as it is
    raise ConfigurationError(
        f"retrievers[{position}] is a {type(retriever).__name__}; pass LangChain retrievers or lens-rag retrievers"
    )


class HybridRetriever(LensRagRetriever):
    """Fuses several retrievers client-side, keeping each source's score and rank; duplicates merge by id.

    :param retrievers: lens-rag LangChain retrievers, core lens-rag retrievers, or any other LangChain
        retriever (its documents are identified by `Document.id`, else `metadata["id"]`, else their text).
    :param fusion: `"minmax"` (default, measured best on SciFact), `"rrf"` or `"dbsf"`.
    :param weights: per-source weight by name (e.g. ``{"bm25": 0.5}``).
    :param candidate_k: how many results each source contributes before fusion.
    :param rrf_k: the RRF constant (60).
    """

    retrievers: list[Any] = Field(min_length=1)
    fusion: FusionMethod = "minmax"
    weights: dict[str, float] | None = None
    candidate_k: int = 100
    rrf_k: int = RRF_K
    name: str | None = "hybrid"

    def _build(self) -> Any:
        members = [_core_of(r, i) for i, r in enumerate(self.retrievers)]
        return core.HybridRetriever(
            members,
            fusion=self.fusion,
            weights=self.weights,
            candidate_k=self.candidate_k,
            rrf_k=self.rrf_k,
            name=self.name or "hybrid",
        )


class RerankingRetriever(LensRagRetriever):
    """Retrieves `candidate_k` documents with any retriever and reorders them with a cross-encoder.

    :param retriever: the first stage (a LangChain retriever, ours or any other).
    :param reranker: a lens-rag reranker, e.g. ``CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L6-v2")``.
    :param candidate_k: how many first-stage documents the reranker sees.
    """

    retriever: Any
    reranker: Any
    candidate_k: int = 50

    def _build(self) -> Any:
        return core.RerankingRetriever(_core_of(self.retriever, 0), self.reranker, candidate_k=self.candidate_k)


class LameRRetriever(LensRagRetriever):
    """LameR: retrieve, let an LLM write answers from the candidates, retrieve again with ``q a1 q a2 …``.

    :param retriever: first stage (and second stage unless `second_stage` is given).
    :param llm: any LangChain chat model (e.g. `ChatOpenAI`) or a lens-rag LLM client.
    :param second_stage: retriever for the augmented query.
    :param n_candidates: M, candidates shown to the LLM (10).
    :param n_answers: N, answers sampled (5).
    :param temperature: sampling temperature (1.0 as in the paper).
    :param max_tokens: most tokens per answer.
    :param domain: prompt domain: ``default``, ``scientific``, ``counter-argument``, ``finance``.
    :param cache: LLM answer cache: `None` (in memory), `False`, a directory, or a shared `LLMCache`.
    """

    retriever: Any
    llm: Any
    second_stage: Any = None
    n_candidates: int = 10
    n_answers: int = 5
    temperature: float = 1.0
    max_tokens: int = 128
    domain: str = "default"
    cache: Any = None

    def _build(self) -> Any:
        from langchain_lens_rag.llm import ChatModelClient
        from lens_rag.lamer import LameRRetriever as CoreLameR

        llm: Any = ChatModelClient(chat_model=self.llm) if isinstance(self.llm, BaseLanguageModel) else self.llm
        second = _core_of(self.second_stage, 1) if self.second_stage is not None else None
        return CoreLameR(
            _core_of(self.retriever, 0),
            llm,
            second_stage=second,
            n_candidates=self.n_candidates,
            n_answers=self.n_answers,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            domain=self.domain,
            cache=self.cache,
        )
