"""`LensRagHybridRetriever`: query text in → embed → BM25 + sparse + dense → fuse → documents out."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from haystack import Document, Pipeline, component, default_from_dict, default_to_dict, super_component
from haystack.core.serialization import component_to_dict
from haystack_integrations.common.lens_rag.convert import to_filter_node
from haystack_integrations.components.embedders.lens_rag import LensRagDenseTextEmbedder, LensRagSparseTextEmbedder
from haystack_integrations.components.joiners.lens_rag import LensRagDocumentJoiner
from haystack_integrations.components.joiners.lens_rag.joiner import restore
from haystack_integrations.components.retrievers.lens_rag.retrievers import (
    LensRagBM25Retriever,
    LensRagDenseRetriever,
    LensRagSparseRetriever,
)
from haystack_integrations.document_stores.lens_rag import LensRagDocumentStore

from lens_rag.errors import ConfigurationError
from lens_rag.fusion import RRF_K, FusionMethod
from lens_rag.validation import check_top_k

__all__ = ["LensRagHybridRetriever"]

_SOURCES = ("bm25", "sparse", "dense")


@component
class _CoreHybrid:
    """The core `HybridRetriever` over a `LensRagDocumentStore`, as one pipeline node.

    Same results as the embedders → retrievers → joiner pipeline (tested), but the core can encode the query
    for both models side by side and, on Elasticsearch, send the three searches as one `_msearch`.
    """

    def __init__(self, owner: LensRagHybridRetriever) -> None:
        self.owner = owner
        self._core: Any = None

    def warm_up(self) -> None:
        self.owner.sparse_embedder.warm_up()
        self.owner.dense_embedder.warm_up()

    def _hybrid(self) -> Any:
        if self._core is None:
            from lens_rag.retrieval import BM25Retriever, DenseRetriever, HybridRetriever, Retriever, SparseRetriever

            o, store = self.owner, self.owner.document_store.store
            make: dict[str, Callable[[], Retriever]] = {
                "bm25": lambda: BM25Retriever(store),
                "sparse": lambda: SparseRetriever(
                    store, o.sparse_embedder.encoder, query_top_k=getattr(o.sparse_embedder, "query_top_k", None)
                ),
                "dense": lambda: DenseRetriever(store, o.dense_embedder.encoder),
            }
            self._core = HybridRetriever(
                [make[s]() for s in o.sources], fusion=o.fusion, weights=o.weights, candidate_k=o.candidate_k,
                rrf_k=o.rrf_k,
            )  # fmt: skip
        return self._core

    def _args(self, filters: dict[str, Any] | None, top_k: int | None) -> tuple[int, Any]:
        merged = filters if filters is not None else self.owner.filters
        return check_top_k(self.owner.top_k if top_k is None else top_k), to_filter_node(merged)

    @staticmethod
    def _out(hits: list[Any]) -> dict[str, list[Document]]:
        originals = {h.id: Document(id=h.id, content=h.document.content, meta=dict(h.document.meta)) for h in hits}
        return {"documents": restore(hits, originals)}

    @component.output_types(documents=list[Document])
    def run(self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None) -> dict[str, Any]:
        top_k, node = self._args(filters, top_k)
        return self._out(self._hybrid().retrieve(query, top_k=top_k, filters=node))

    @component.output_types(documents=list[Document])
    async def run_async(
        self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None
    ) -> dict[str, Any]:
        top_k, node = self._args(filters, top_k)
        return self._out(await self._hybrid().retrieve_async(query, top_k=top_k, filters=node))


def _retrievers(store: Any, sources: list[str], top_k: int, filters: Any) -> dict[str, Any]:
    """One retriever per source for `store`: ours, or elasticsearch-haystack's (BM25 without fuzziness, kNN)."""
    if isinstance(store, LensRagDocumentStore):
        kinds = {"bm25": LensRagBM25Retriever, "sparse": LensRagSparseRetriever, "dense": LensRagDenseRetriever}
        return {s: kinds[s](document_store=store, top_k=top_k, filters=filters) for s in sources}
    from haystack_integrations.components.retrievers.elasticsearch import (
        ElasticsearchBM25Retriever,
        ElasticsearchEmbeddingRetriever,
    )
    from haystack_integrations.components.retrievers.lens_rag.elasticsearch import LensRagElasticsearchSparseRetriever

    make = {
        "bm25": lambda: ElasticsearchBM25Retriever(document_store=store, top_k=top_k, filters=filters, fuzziness="0"),
        "sparse": lambda: LensRagElasticsearchSparseRetriever(document_store=store, top_k=top_k, filters=filters),
        "dense": lambda: ElasticsearchEmbeddingRetriever(document_store=store, top_k=top_k, filters=filters),
    }
    return {s: make[s]() for s in sources}


@super_component
class LensRagHybridRetriever:
    """Hybrid retrieval in one component: BM25, sparse (LENS / SPLADE) and dense, fused with per-source scores.

    Works on a `LensRagDocumentStore` and on elasticsearch-haystack's `ElasticsearchDocumentStore` (BM25 with
    ``fuzziness="0"``, its kNN retriever, and lens-rag's sparse retriever, which also runs on 8.11–8.14).
    Documents come out best first; ``doc.meta["lens_rag_sources"]`` holds each retriever's score and rank.

    :param document_store: the store the documents were indexed into (with the same embedders' models).
    :param sparse_embedder: query encoder for the sparse retriever (default SPLADE-tiny, offline).
    :param dense_embedder: query encoder for the dense retriever (default all-MiniLM-L6-v2, offline).
    :param sources: which retrievers to fuse: any of ``bm25``, ``sparse``, ``dense``.
    :param fusion: ``"minmax"`` (default), ``"rrf"`` or ``"dbsf"``.
    :param weights: per-source weights by name.
    :param candidate_k: results each retriever contributes (candidate depth), apart from `top_k`.
    :param top_k: fused documents returned.
    :param filters: Haystack filters applied by every retriever.
    :param rrf_k: the RRF constant.

    Usage::

        hybrid = LensRagHybridRetriever(document_store=LensRagDocumentStore("my-index"))
        hybrid.run(query="what causes scurvy?")["documents"]
    """

    def __init__(
        self,
        document_store: Any,
        *,
        sparse_embedder: Any = None,
        dense_embedder: Any = None,
        sources: list[str] | None = None,
        fusion: FusionMethod = "minmax",
        weights: dict[str, float] | None = None,
        candidate_k: int = 100,
        top_k: int = 10,
        filters: dict[str, Any] | None = None,
        rrf_k: int = RRF_K,
    ) -> None:
        names = list(sources) if sources is not None else list(_SOURCES)
        if not names or any(s not in _SOURCES for s in names) or len(set(names)) != len(names):
            raise ConfigurationError(f"sources must be distinct names among {list(_SOURCES)}, got {names}")
        self.document_store = document_store
        self.sparse_embedder = sparse_embedder if sparse_embedder is not None else LensRagSparseTextEmbedder()
        self.dense_embedder = dense_embedder if dense_embedder is not None else LensRagDenseTextEmbedder()
        self.sources = names
        self.fusion = fusion
        self.weights = weights
        self.candidate_k = candidate_k
        self.top_k = top_k
        self.filters = filters
        self.rrf_k = rrf_k

        pipeline = Pipeline()
        if isinstance(document_store, LensRagDocumentStore):
            # Our store: the core hybrid as one node (identical results; one round trip on Elasticsearch).
            pipeline.add_component("hybrid", _CoreHybrid(self))
            self.pipeline = pipeline
            self.input_mapping = {"query": ["hybrid.query"], "filters": ["hybrid.filters"], "top_k": ["hybrid.top_k"]}
            self.output_mapping = {"hybrid.documents": "documents"}
            return
        # elasticsearch-haystack's store: its BM25 and kNN retrievers, our sparse retriever, our joiner.
        retrievers = _retrievers(document_store, names, candidate_k, filters)
        joiner = LensRagDocumentJoiner(sources=names, fusion=fusion, weights=weights, rrf_k=rrf_k, top_k=top_k)
        pipeline.add_component("joiner", joiner)
        query_inputs = []
        for name, retriever in retrievers.items():
            pipeline.add_component(f"{name}_retriever", retriever)
            pipeline.connect(f"{name}_retriever.documents", f"joiner.{name}")
        if "bm25" in retrievers:
            query_inputs.append("bm25_retriever.query")
        if "sparse" in retrievers:
            pipeline.add_component("sparse_embedder", self.sparse_embedder)
            pipeline.connect("sparse_embedder.sparse_embedding", "sparse_retriever.query_sparse_embedding")
            query_inputs.append("sparse_embedder.text")
        if "dense" in retrievers:
            pipeline.add_component("dense_embedder", self.dense_embedder)
            pipeline.connect("dense_embedder.embedding", "dense_retriever.query_embedding")
            query_inputs.append("dense_embedder.text")
        self.pipeline = pipeline
        self.input_mapping = {
            "query": query_inputs,
            "filters": [f"{name}_retriever.filters" for name in retrievers],
            "top_k": ["joiner.top_k"],
        }
        self.output_mapping = {"joiner.documents": "documents"}

    if TYPE_CHECKING:

        def warm_up(self) -> None: ...

        def run(
            self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None
        ) -> dict[str, list[Document]]: ...

        async def run_async(
            self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None
        ) -> dict[str, list[Document]]: ...

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            document_store=self.document_store.to_dict(),
            sparse_embedder=component_to_dict(self.sparse_embedder, "sparse_embedder"),
            dense_embedder=component_to_dict(self.dense_embedder, "dense_embedder"),
            sources=self.sources,
            fusion=self.fusion,
            weights=self.weights,
            candidate_k=self.candidate_k,
            top_k=self.top_k,
            filters=self.filters,
            rrf_k=self.rrf_k,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LensRagHybridRetriever:
        # The store and embedders are nested {"type", "init_parameters"} dicts that default_from_dict rebuilds.
        return default_from_dict(cls, data)
