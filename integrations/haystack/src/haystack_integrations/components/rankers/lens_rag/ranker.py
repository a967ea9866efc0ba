"""A ranker over lens-rag's cross-encoder reranker (keeps the fused and per-source scores in meta)."""

from __future__ import annotations

from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack_integrations.common.lens_rag.convert import to_scored
from haystack_integrations.components.joiners.lens_rag.joiner import restore

from lens_rag.rerank import CrossEncoderReranker

__all__ = ["LensRagRanker"]


@component
class LensRagRanker:
    """Reorders documents with a sentence-transformers cross-encoder (a Hub name or a local folder).

    Each result keeps the scores it came with in ``meta["lens_rag_sources"]``, plus ``"fused"`` (the score and
    rank it had on the way in) and ``"rerank"`` (the cross-encoder's); `score` becomes the cross-encoder score.

    :param model: a cross-encoder name (e.g. ``"cross-encoder/ms-marco-MiniLM-L6-v2"``) or a local folder.
    :param top_k: keep at most this many (`None`: all).
    :param score_threshold: drop documents scoring below this (on the model's own scale).
    :param batch_size: pairs per forward pass.
    :param max_length: tokens per pair (`None`: the model's).
    :param device: torch device (`None`: automatic).
    :param progress_bar: show a progress bar while scoring.

    Usage::

        ranker = LensRagRanker("cross-encoder/ms-marco-MiniLM-L6-v2", top_k=10)
        ranker.run(query="what causes scurvy?", documents=docs)["documents"]
    """

    def __init__(
        self,
        model: str,
        top_k: int | None = 10,
        score_threshold: float | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        device: str | None = None,
        progress_bar: bool = False,
    ) -> None:
        self.model = model
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self.progress_bar = progress_bar
        self.reranker = CrossEncoderReranker(
            model,
            batch_size=batch_size,
            top_k=top_k,
            score_threshold=score_threshold,
            max_length=max_length,
            progress=progress_bar,
            device=device,
        )

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            model=self.model,
            top_k=self.top_k,
            score_threshold=self.score_threshold,
            batch_size=self.batch_size,
            max_length=self.max_length,
            device=self.device,
            progress_bar=self.progress_bar,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LensRagRanker:
        return default_from_dict(cls, data)

    def warm_up(self) -> None:
        """Load the model once; safe to call before every run."""
        self.reranker.warm_up()

    @component.output_types(documents=list[Document])
    def run(
        self, query: str, documents: list[Document], top_k: int | None = None, score_threshold: float | None = None
    ) -> dict[str, list[Document]]:
        """Score each document against the query and return them best first.

        :param query: the query.
        :param documents: the candidates, best first (their order is the "fused" rank).
        :param top_k: overrides the instance's `top_k`.
        :param score_threshold: overrides the instance's `score_threshold`.
        """
        hits = self.reranker.rerank(query, to_scored(documents), top_k=top_k, score_threshold=score_threshold)
        return {"documents": restore(hits, {d.id: d for d in documents})}

    @component.output_types(documents=list[Document])
    async def run_async(
        self, query: str, documents: list[Document], top_k: int | None = None, score_threshold: float | None = None
    ) -> dict[str, list[Document]]:
        """The async twin of :meth:`run` (scoring runs off the event loop)."""
        hits = await self.reranker.rerank_async(
            query, to_scored(documents), top_k=top_k, score_threshold=score_threshold
        )
        return {"documents": restore(hits, {d.id: d for d in documents})}
