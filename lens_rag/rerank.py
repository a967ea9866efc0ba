"""Cross-encoder reranking of retrieved (usually fused) candidates.

A cross-encoder reads the query and a passage together and scores the pair, which ranks better than
the first stage but costs one model call per candidate — so it reranks the fused top candidates
only (keep the candidate depth apart from the final ``top_k``).

Each reranked result gets the cross-encoder's score and its new 1-based rank, and keeps what it
came with: the input's ``sources`` (e.g. ``"bm25"``, ``"dense"``) are copied, the score and rank
the candidate had on the way in are added as ``sources["fused"]`` (the fused score after the hybrid
joiner; the retriever's own score when a single retriever fed the reranker), and the new score and
rank as ``sources["rerank"]``. Inputs are never modified.

Usage::

    reranker = CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L6-v2", top_k=10)
    results = reranker.rerank("what causes scurvy?", fused_candidates)
    results[0].sources["fused"].rank   # where the joiner had placed the new top result
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from lens_rag.documents import ScoredDocument, SourceHit
from lens_rag.errors import ConfigurationError, ModelLoadError
from lens_rag.models import resolve_model

__all__ = ["FUSED_SOURCE", "RERANK_SOURCE", "CrossEncoderReranker", "Reranker"]

logger = logging.getLogger(__name__)

#: `sources` key holding a candidate's score and rank from before reranking.
FUSED_SOURCE = "fused"
#: `sources` key holding the cross-encoder's score and rank.
RERANK_SOURCE = "rerank"

_CONFIG_KEYS = ("model", "batch_size", "top_k", "score_threshold", "max_length", "progress", "device")


@runtime_checkable
class Reranker(Protocol):
    """Anything that reorders retrieved candidates (what :class:`~lens_rag.retrieval.RerankingRetriever` takes).

    `rerank` and `rerank_async` take the same arguments and return the same thing: new
    `ScoredDocument` objects, best first, at most `top_k` of them (`None`: the reranker's own default).
    `to_config` makes it serialisable with the retriever that holds it (see :mod:`lens_rag.config`).
    """

    def rerank(
        self, query: str, documents: Sequence[ScoredDocument], top_k: int | None = None
    ) -> list[ScoredDocument]: ...

    async def rerank_async(
        self, query: str, documents: Sequence[ScoredDocument], top_k: int | None = None
    ) -> list[ScoredDocument]: ...

    def to_config(self) -> dict[str, Any]: ...


def _check_top_k(top_k: int | None) -> None:
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise ConfigurationError(f"top_k must be None (keep all) or an integer >= 0, got {top_k!r}")


class CrossEncoderReranker:
    """Rerank candidates with any sentence-transformers `CrossEncoder` (a Hub name or a local path).

    The model loads on first use or on :meth:`warm_up`; construction does no I/O.

    :param model: a Hugging Face model name (e.g. ``"cross-encoder/ms-marco-MiniLM-L6-v2"``) or a
        local directory saved by ``CrossEncoder.save``. It must have one output (``num_labels=1``).
    :param batch_size: query–passage pairs scored per forward pass.
    :param top_k: keep at most this many results; ``None`` keeps all, ``0`` returns none.
    :param score_threshold: drop results scoring below this. Scores are on the model's own scale
        (a sigmoid in [0, 1] for most sentence-transformers cross-encoders; raw logits for models
        configured with an identity activation), so pick the threshold per model.
    :param max_length: the most tokens per pair (longer pairs are truncated); ``None`` uses the model's.
    :param progress: show a progress bar while scoring.
    :param device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, …; ``None`` lets sentence-transformers pick.
    :raises ConfigurationError: if a parameter cannot work.
    """

    name = RERANK_SOURCE

    def __init__(
        self,
        model: str,
        batch_size: int = 32,
        top_k: int | None = None,
        score_threshold: float | None = None,
        max_length: int | None = None,
        progress: bool = False,
        device: str | None = None,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ConfigurationError(
                f"model must be a cross-encoder name or path, got {model!r}; "
                "e.g. 'cross-encoder/ms-marco-MiniLM-L6-v2' or a folder saved by CrossEncoder.save"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigurationError(f"batch_size must be an integer >= 1, got {batch_size!r}; e.g. 32")
        _check_top_k(top_k)
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise ConfigurationError(f"max_length must be None or an integer >= 1, got {max_length!r}; e.g. 512")
        self.model = model
        self.batch_size = batch_size
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.max_length = max_length
        self.progress = progress
        self.device = device
        self._model: Any = None

    def __repr__(self) -> str:
        return f"CrossEncoderReranker(model={self.model!r}, top_k={self.top_k!r}, batch_size={self.batch_size})"

    def _load_model(self) -> Any:
        from sentence_transformers import CrossEncoder

        path = resolve_model(self.model)
        try:
            return CrossEncoder(path, max_length=self.max_length, device=self.device)
        except (OSError, ValueError) as e:
            raise ModelLoadError(
                f"could not load cross-encoder model={self.model!r}: {e}. Pass a Hugging Face cross-encoder name "
                "(the Hub must be reachable) or a local folder saved by CrossEncoder.save"
            ) from e

    def warm_up(self) -> None:
        """Load the model if it is not loaded yet; safe to call before every run.

        :raises ModelLoadError: if the model cannot be loaded.
        """
        if self._model is None:
            logger.info("Loading cross-encoder %s", self.model)
            self._model = self._load_model()

    def close(self) -> None:
        """Release the model; a later call loads it again."""
        self._model = None

    def rerank(
        self,
        query: str,
        documents: Sequence[ScoredDocument],
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> list[ScoredDocument]:
        """Score each candidate against the query and return them best first.

        Ties keep their input order. The threshold applies before `top_k`.

        :param query: the user's query.
        :param documents: the candidates, e.g. the hybrid joiner's output.
        :param top_k: overrides the instance's `top_k` for this call (``0`` returns nothing).
        :param score_threshold: overrides the instance's `score_threshold` for this call.
        :returns: new `ScoredDocument`s with the cross-encoder score, the new rank and the sources
            described in the module docstring.
        :raises ConfigurationError: if `top_k` is negative or the model has more than one output.
        :raises ModelLoadError: if the model cannot be loaded.
        """
        _check_top_k(top_k)
        top_k = self.top_k if top_k is None else top_k
        threshold = self.score_threshold if score_threshold is None else score_threshold
        if not documents or top_k == 0:
            return []
        self.warm_up()
        pairs = [(query, candidate.document.content) for candidate in documents]
        raw = self._model.predict(
            pairs, batch_size=self.batch_size, show_progress_bar=self.progress, convert_to_numpy=True
        )
        if getattr(raw, "ndim", 1) != 1 or len(raw) != len(documents):
            raise ConfigurationError(
                f"model={self.model!r} gives {getattr(raw, 'shape', '?')} scores for {len(documents)} pairs; "
                "the reranker needs a cross-encoder with a single output (num_labels=1)"
            )
        scores = [float(s) for s in raw]
        order = sorted(range(len(documents)), key=lambda i: -scores[i])  # stable: ties keep input order
        if threshold is not None:
            order = [i for i in order if scores[i] >= threshold]
        if top_k is not None:
            order = order[:top_k]
        results: list[ScoredDocument] = []
        for rank, i in enumerate(order, start=1):
            candidate = documents[i]
            sources = dict(candidate.sources)
            sources[FUSED_SOURCE] = SourceHit(score=float(candidate.score), rank=candidate.rank)
            sources[RERANK_SOURCE] = SourceHit(score=scores[i], rank=rank)
            results.append(ScoredDocument(document=candidate.document, score=scores[i], rank=rank, sources=sources))
        return results

    async def rerank_async(
        self,
        query: str,
        documents: Sequence[ScoredDocument],
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> list[ScoredDocument]:
        """Async :meth:`rerank`, with the same arguments and results.

        `CrossEncoder` has no async API and scoring is CPU/GPU-bound, so this runs :meth:`rerank` in
        a worker thread (``asyncio.to_thread``) to keep the event loop free — a deliberate exception
        to the house rule of native async paths, which exist only for network I/O.
        """
        return await asyncio.to_thread(self.rerank, query, documents, top_k, score_threshold)

    def to_config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-serialisable, with ``"type": "cross_encoder_reranker"``.

        :meth:`from_config` (or :func:`lens_rag.config.from_config`) rebuilds the reranker.
        """
        return {"type": "cross_encoder_reranker", **{key: getattr(self, key) for key in _CONFIG_KEYS}}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CrossEncoderReranker:
        """Build a reranker from :meth:`to_config` output (only ``model`` is required).

        :param config: constructor arguments by name.
        :returns: the reranker (not loaded).
        :raises ConfigurationError: if a key is unknown or ``model`` is missing.
        """
        config = {k: v for k, v in config.items() if k != "type"}
        unknown = sorted(set(config) - set(_CONFIG_KEYS))
        if unknown:
            raise ConfigurationError(
                f"unknown CrossEncoderReranker config keys {unknown}; allowed keys: {', '.join(_CONFIG_KEYS)}"
            )
        if "model" not in config:
            raise ConfigurationError("CrossEncoderReranker config needs 'model' (a cross-encoder name or path)")
        return cls(**config)
