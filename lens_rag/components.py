"""Build stores, encoders and retrievers from short specifications (what the CLI and examples use).

Method names understood by :func:`build_retriever`:

- ``bm25``, ``sparse``, ``dense`` — one retriever;
- ``hybrid`` — fusion of bm25 + sparse + dense; ``hybrid:bm25+dense`` — fusion of the named ones. The
  fusion is min–max score fusion by default (it measured better than RRF on SciFact, see
  :class:`~lens_rag.retrieval.HybridRetriever`); ``fusion="rrf"`` or ``"dbsf"`` picks another;
- ``lamer`` — LameR over bm25; ``lamer:hybrid`` (or any method above) — LameR whose first and
  second stage are that method (the second stage can be set apart, see :func:`build_retriever`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lens_rag.encoders.base import DenseEncoder, SparseEncoder
from lens_rag.errors import ConfigurationError
from lens_rag.fusion import FusionMethod
from lens_rag.models import DEFAULT_DENSE_MODEL, DEFAULT_SPARSE_MODEL
from lens_rag.retrieval import BM25Retriever, DenseRetriever, HybridRetriever, Retriever, SparseRetriever
from lens_rag.stores.base import Store

__all__ = [
    "BASE_METHODS",
    "Encoders",
    "build_retriever",
    "dense_encoder_from_config",
    "method_needs",
    "open_store",
    "sparse_encoder_from_config",
]

BASE_METHODS = ("bm25", "sparse", "dense")


def sparse_encoder_from_config(config: Mapping[str, Any]) -> SparseEncoder:
    """Rebuild a sparse encoder from its `to_config()` (dispatch on ``type``: ``mlm`` or ``lens``)."""
    kind = config.get("type", "mlm")
    if kind == "mlm":
        from lens_rag.encoders.mlm import MLMSparseEncoder

        return MLMSparseEncoder.from_config(dict(config))
    if kind == "lens":
        from lens_rag.encoders.lens import LENSEncoder

        return LENSEncoder.from_config(dict(config))
    raise ConfigurationError(f"unknown sparse encoder type {kind!r} in the configuration; expected 'mlm' or 'lens'")


def dense_encoder_from_config(config: Mapping[str, Any]) -> DenseEncoder:
    from lens_rag.encoders.dense import SentenceTransformerDenseEncoder

    return SentenceTransformerDenseEncoder.from_config({k: v for k, v in config.items() if k != "type"})


def _sparse_for(model: str, progress: bool) -> SparseEncoder:
    # A LENS directory holds a clustered head (ours, or the released `lm_head.pth`); anything else
    # is treated as a masked LM with its MLM head.
    lens_files = ("lens_config.json", "lens_head.safetensors", "lm_head.pth")
    if any((Path(model) / name).is_file() for name in lens_files):
        from lens_rag.encoders.lens import LENSEncoder

        return LENSEncoder(model=model, progress=progress)
    from lens_rag.encoders.mlm import MLMSparseEncoder

    return MLMSparseEncoder(model=model, progress=progress)


def _dense_for(model: str, progress: bool) -> DenseEncoder:
    from lens_rag.encoders.dense import SentenceTransformerDenseEncoder

    return SentenceTransformerDenseEncoder(model=model, progress=progress)


class Encoders:
    """The sparse and dense encoders of a run, created on first use and shared by every retriever.

    :param sparse_model: sparse model alias, path or name (a LENS directory picks the LENS encoder).
    :param dense_model: dense model alias, path or name.
    :param sparse_config: a saved `to_config()` that wins over `sparse_model` (from a store's info).
    :param dense_config: likewise for the dense encoder.
    :param sparse_query_model: a query-side model for the sparse encoder (``lens-rag adapt`` output);
        documents are still encoded by the sparse model, so a store's vectors stay valid.
    :param dense_query_model: likewise for the dense encoder.
    """

    def __init__(
        self,
        sparse_model: str = DEFAULT_SPARSE_MODEL,
        dense_model: str = DEFAULT_DENSE_MODEL,
        *,
        sparse_config: Mapping[str, Any] | None = None,
        dense_config: Mapping[str, Any] | None = None,
        progress: bool = True,
        sparse_query_model: str | None = None,
        dense_query_model: str | None = None,
    ) -> None:
        self.sparse_model = sparse_model
        self.dense_model = dense_model
        self.sparse_config = sparse_config
        self.dense_config = dense_config
        self.progress = progress
        self.sparse_query_model = sparse_query_model
        self.dense_query_model = dense_query_model
        self._sparse: SparseEncoder | None = None
        self._dense: DenseEncoder | None = None

    @property
    def sparse(self) -> SparseEncoder:
        if self._sparse is None:
            config = self.sparse_config
            if config is None:
                config = _sparse_for(self.sparse_model, self.progress).to_config()
            extra = {} if self.sparse_query_model is None else {"query_model": self.sparse_query_model}
            if extra and config.get("type", "mlm") != "mlm":
                raise ConfigurationError(
                    f"a sparse query model works with masked-LM (SPLADE-style) encoders; the sparse encoder here is "
                    f"{config.get('type')!r} ({config.get('model')!r}): drop the sparse query model"
                )
            self._sparse = sparse_encoder_from_config({**config, "progress": self.progress, **extra})
        return self._sparse

    @property
    def dense(self) -> DenseEncoder:
        if self._dense is None:
            config = self.dense_config
            if config is None:
                config = _dense_for(self.dense_model, self.progress).to_config()
            extra = {} if self.dense_query_model is None else {"query_model": self.dense_query_model}
            self._dense = dense_encoder_from_config({**config, "progress": self.progress, **extra})
        return self._dense


def open_store(
    spec: str,
    *,
    es_url: str | None = None,
    index: str | None = None,
    progress: bool = True,
    dense_dims: int | None = None,
) -> Store:
    """Open a store from a CLI-style spec: ``memory``, ``elasticsearch`` or a directory path."""
    if spec == "memory":
        from lens_rag.stores.embedded import EmbeddedStore

        return EmbeddedStore(None, progress=progress)
    if spec in ("elasticsearch", "es"):
        from lens_rag.stores.elasticsearch import ElasticsearchStore

        return ElasticsearchStore(
            url=es_url, index=index if index is not None else "lens-rag", dense_dims=dense_dims, progress=progress
        )
    from lens_rag.stores.embedded import EmbeddedStore

    return EmbeddedStore(spec, progress=progress)


def method_needs(method: str) -> set[str]:
    """Which of ``bm25``/``sparse``/``dense`` a method uses (to know what to index)."""
    base = method.split(":", 1)
    if base[0] in BASE_METHODS:
        return {base[0]}
    if base[0] == "hybrid":
        return set(_hybrid_parts(method))
    if base[0] == "lamer":
        return method_needs(base[1]) if len(base) > 1 else {"bm25"}
    raise ConfigurationError(_unknown(method))


def _unknown(method: str) -> str:
    return (
        f"unknown method {method!r}; use bm25, sparse, dense, hybrid, hybrid:PARTS (e.g. hybrid:bm25+dense), "
        "lamer or lamer:METHOD"
    )


def _hybrid_parts(method: str) -> list[str]:
    if method == "hybrid":
        return list(BASE_METHODS)
    parts = method.split(":", 1)[1].split("+")
    bad = [p for p in parts if p not in BASE_METHODS]
    if bad or not parts:
        raise ConfigurationError(_unknown(method))
    return parts


def build_retriever(
    method: str,
    store: Store,
    encoders: Encoders,
    *,
    fusion: FusionMethod = "minmax",
    weights: Mapping[str, float] | None = None,
    candidate_k: int = 100,
    sparse_query_top_k: int | None = None,
    llm_factory: Callable[[], Any] | None = None,
    lamer_second_stage: str | None = None,
    lamer_options: Mapping[str, Any] | None = None,
) -> Retriever:
    """Build the retriever a method name describes (see the module docstring).

    :param llm_factory: returns the LLM client for ``lamer`` methods (called only for those).
    :param lamer_second_stage: method for LameR's second retrieval (default: same as the first).
    :param lamer_options: extra keyword arguments for :class:`~lens_rag.lamer.LameRRetriever`.
    """
    head, _, rest = method.partition(":")
    if head == "bm25" and not rest:
        return BM25Retriever(store)
    if head == "sparse" and not rest:
        return SparseRetriever(store, encoders.sparse, query_top_k=sparse_query_top_k)
    if head == "dense" and not rest:
        return DenseRetriever(store, encoders.dense)
    if head == "hybrid":
        parts = [
            build_retriever(p, store, encoders, sparse_query_top_k=sparse_query_top_k) for p in _hybrid_parts(method)
        ]
        return HybridRetriever(parts, fusion=fusion, weights=weights, candidate_k=candidate_k, name=method)
    if head == "lamer":
        if llm_factory is None:
            raise ConfigurationError(f"method {method!r} needs an LLM; pass llm_factory (the CLI: --llm-url)")
        from lens_rag.lamer import LameRRetriever

        def sub(m: str) -> Retriever:
            return build_retriever(
                m, store, encoders, fusion=fusion, weights=weights, candidate_k=candidate_k,
                sparse_query_top_k=sparse_query_top_k,
            )  # fmt: skip

        first_method = rest or "bm25"
        first = sub(first_method)
        second = sub(lamer_second_stage) if lamer_second_stage is not None else None
        return LameRRetriever(first, llm_factory(), second_stage=second, name=method, **dict(lamer_options or {}))
    raise ConfigurationError(_unknown(method))
