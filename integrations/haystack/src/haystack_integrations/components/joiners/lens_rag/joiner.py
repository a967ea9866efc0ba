"""A fusion joiner that keeps every source's score and rank (Haystack's `DocumentJoiner` drops them)."""

from __future__ import annotations

import dataclasses
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack_integrations.common.lens_rag.convert import SOURCES_META_KEY, to_scored

from lens_rag.documents import ScoredDocument
from lens_rag.errors import ConfigurationError
from lens_rag.fusion import RRF_K, FusionMethod, fuse
from lens_rag.validation import check_top_k

__all__ = ["LensRagDocumentJoiner"]

DEFAULT_SOURCES = ("bm25", "sparse", "dense")


def restore(hits: list[ScoredDocument], originals: dict[str, Document]) -> list[Document]:
    """The original Haystack documents in `hits` order, with the new score and per-source scores in meta."""
    out = []
    for hit in hits:
        doc = originals[hit.id]
        meta = {k: v for k, v in doc.meta.items() if k != SOURCES_META_KEY}
        meta[SOURCES_META_KEY] = {n: {"score": float(s.score), "rank": int(s.rank)} for n, s in hit.sources.items()}
        out.append(dataclasses.replace(doc, score=float(hit.score), meta=meta))
    return out


@component
class LensRagDocumentJoiner:
    """Fuses ranked lists (RRF, min–max or DBSF, with weights) and records each source's score and rank.

    Every input list gets its own named socket (`sources`), so the fused documents can say where they came
    from: ``doc.meta["lens_rag_sources"] == {"bm25": {"score": 12.1, "rank": 1}, "dense": {...}}``.
    Sources already recorded upstream (a joiner feeding a joiner) are kept. Unconnected sockets are ignored.

    :param sources: input socket names, one per retriever (default ``bm25``, ``sparse``, ``dense``).
    :param fusion: ``"minmax"`` (default, measured best on SciFact), ``"rrf"`` or ``"dbsf"``.
    :param weights: per-source weight by name (default 1 each).
    :param rrf_k: the RRF constant (60); ranks count from 1.
    :param top_k: how many fused documents to return (`None`: all).

    Usage::

        pipeline.add_component("joiner", LensRagDocumentJoiner(sources=["bm25", "dense"], fusion="rrf"))
        pipeline.connect("bm25_retriever.documents", "joiner.bm25")
        pipeline.connect("dense_retriever.documents", "joiner.dense")
    """

    def __init__(
        self,
        sources: list[str] | None = None,
        fusion: FusionMethod = "minmax",
        weights: dict[str, float] | None = None,
        rrf_k: int = RRF_K,
        top_k: int | None = None,
    ) -> None:
        names = list(sources) if sources is not None else list(DEFAULT_SOURCES)
        if not names or len(set(names)) != len(names) or "top_k" in names:
            raise ConfigurationError(f"sources must be distinct socket names other than 'top_k', got {names}")
        if fusion not in ("rrf", "minmax", "dbsf"):
            raise ConfigurationError(f"fusion must be 'rrf', 'minmax' or 'dbsf', got {fusion!r}")
        unknown = sorted(set(weights or {}) - set(names))
        if unknown:
            raise ConfigurationError(f"weights name unknown sources {unknown}; sources: {names}")
        self.sources = names
        self.fusion = fusion
        self.weights = weights
        self.rrf_k = rrf_k
        self.top_k = None if top_k is None else check_top_k(top_k)
        for name in names:
            component.set_input_type(self, name, list[Document] | None, default=None)

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self, sources=self.sources, fusion=self.fusion, weights=self.weights, rrf_k=self.rrf_k, top_k=self.top_k
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LensRagDocumentJoiner:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(self, top_k: int | None = None, **lists: list[Document] | None) -> dict[str, list[Document]]:
        """Fuse the lists that arrived.

        :param top_k: overrides the instance's `top_k`.
        :param lists: one ranked list per source socket (best first).
        :returns: ``{"documents": [...]}`` best first, `score` the fused score.
        """
        top_k = self.top_k if top_k is None else check_top_k(top_k)
        given = {name: docs for name, docs in lists.items() if docs is not None}
        originals: dict[str, Document] = {}
        for docs in given.values():
            for doc in docs:
                originals.setdefault(doc.id, doc)
        weights = {k: v for k, v in (self.weights or {}).items() if k in given} if self.weights is not None else None
        fused = fuse(
            {name: to_scored(docs) for name, docs in given.items()},
            self.fusion,
            weights=weights,
            rrf_k=self.rrf_k,
            top_k=top_k,
        )
        return {"documents": restore(fused, originals)}
