"""Client-side fusion of ranked lists: reciprocal rank fusion and normalised score fusion.

Conventions, pinned by worked-example tests:

- **RRF** (Cormack et al. 2009): ``score(d) = Σ_i w_i / (rrf_k + rank_i(d))`` with ``rrf_k = 60``
  and ranks counted **from 1**; a list that does not contain `d` contributes nothing. (Some peers
  use 0-based ranks with k = 61, which gives the same order but different numbers.)
- **min–max**: each list's scores are mapped to [0, 1] by its own min and max, then
  ``Σ_i w_i · norm_i(d)``; a list whose scores are all equal maps them to 1.
- **dbsf** (distribution-based score fusion): each list's scores are clipped to
  ``mean ± 3σ`` and mapped to [0, 1] over that range, then summed with weights.

Every fused result keeps, in `sources`, each retriever's raw score and rank for that document;
ties are broken by the document's best source rank, then by id, so fusion is deterministic.
Server-side RRF needs a paid Elasticsearch licence on 8.x; this module is why we do not need it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from lens_rag.documents import ScoredDocument, SourceHit
from lens_rag.errors import ConfigurationError

__all__ = ["RRF_K", "FusionMethod", "fuse", "reciprocal_rank_fusion", "score_fusion"]

FusionMethod = Literal["rrf", "minmax", "dbsf"]
RRF_K = 60


def _weights(results: Mapping[str, Sequence[ScoredDocument]], weights: Mapping[str, float] | None) -> dict[str, float]:
    if weights is None:
        return {name: 1.0 for name in results}
    unknown = set(weights) - set(results)
    if unknown:
        raise ConfigurationError(
            f"weights name retrievers that gave no results list: {sorted(unknown)}; known: {sorted(results)}"
        )
    bad = {k: v for k, v in weights.items() if v < 0}
    if bad:
        raise ConfigurationError(f"fusion weights must be >= 0, got {bad}")
    return {name: float(weights.get(name, 1.0)) for name in results}


def _collect(
    results: Mapping[str, Sequence[ScoredDocument]], per_list: Mapping[str, Sequence[float]], w: Mapping[str, float]
) -> list[ScoredDocument]:
    fused: dict[str, ScoredDocument] = {}
    for name, docs in results.items():
        for position, (hit, contribution) in enumerate(zip(docs, per_list[name])):
            entry = fused.get(hit.id)
            if entry is None:
                entry = fused[hit.id] = ScoredDocument(document=hit.document, score=0.0)
            entry.score += w[name] * contribution
            # Keep the source's own scores; a hit that was itself fused contributes its sub-sources too.
            for sub, sub_hit in hit.sources.items():
                if sub != name and sub not in entry.sources:
                    entry.sources[sub] = sub_hit
            entry.sources[name] = SourceHit(score=hit.score, rank=position + 1)

    def key(d: ScoredDocument) -> tuple[float, int, str]:
        best_rank = min((h.rank for n, h in d.sources.items() if n in results), default=1 << 30)
        return (-d.score, best_rank, d.id)

    ordered = sorted(fused.values(), key=key)
    for i, d in enumerate(ordered):
        d.rank = i + 1
    return ordered


def reciprocal_rank_fusion(
    results: Mapping[str, Sequence[ScoredDocument]],
    *,
    rrf_k: int = RRF_K,
    weights: Mapping[str, float] | None = None,
    top_k: int | None = None,
) -> list[ScoredDocument]:
    """Fuse ranked lists by reciprocal rank.

    :param results: retriever name -> its ranked results (best first).
    :param rrf_k: the RRF constant (60 in the paper).
    :param weights: per-retriever weight (default 1 each).
    :param top_k: how many fused results to keep (`None`: all).
    :returns: fused results, with per-source score and rank in `sources`.

    Usage::

        fused = reciprocal_rank_fusion({"bm25": bm25_hits, "dense": dense_hits}, top_k=10)
        fused[0].sources["bm25"].rank
    """
    if rrf_k < 0:
        raise ConfigurationError(f"rrf_k must be >= 0, got {rrf_k}")
    w = _weights(results, weights)
    contributions = {name: [1.0 / (rrf_k + i + 1) for i in range(len(docs))] for name, docs in results.items()}
    return _cut(_collect(results, contributions, w), top_k)


def _normalise(scores: Sequence[float], method: Literal["minmax", "dbsf"]) -> list[float]:
    if not scores:
        return []
    arr = np.asarray(scores, dtype=np.float64)
    if method == "minmax":
        lo, hi = float(arr.min()), float(arr.max())
    else:
        mean, std = float(arr.mean()), float(arr.std())
        lo, hi = mean - 3 * std, mean + 3 * std
    if hi <= lo:
        return [1.0] * len(scores)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0).tolist()


def score_fusion(
    results: Mapping[str, Sequence[ScoredDocument]],
    *,
    normalization: Literal["minmax", "dbsf"] = "minmax",
    weights: Mapping[str, float] | None = None,
    top_k: int | None = None,
) -> list[ScoredDocument]:
    """Fuse by weighted sum of per-list normalised scores (min–max or distribution-based).

    :param normalization: `"minmax"` or `"dbsf"` (mean ± 3σ clipping).
    :returns: fused results, with per-source raw score and rank in `sources`.
    """
    if normalization not in ("minmax", "dbsf"):
        raise ConfigurationError(f"normalization must be 'minmax' or 'dbsf', got {normalization!r}")
    w = _weights(results, weights)
    contributions = {name: _normalise([d.score for d in docs], normalization) for name, docs in results.items()}
    return _cut(_collect(results, contributions, w), top_k)


def fuse(
    results: Mapping[str, Sequence[ScoredDocument]],
    method: FusionMethod = "rrf",
    *,
    weights: Mapping[str, float] | None = None,
    rrf_k: int = RRF_K,
    top_k: int | None = None,
) -> list[ScoredDocument]:
    """Dispatch to :func:`reciprocal_rank_fusion` (`"rrf"`) or :func:`score_fusion` (`"minmax"`, `"dbsf"`)."""
    if method == "rrf":
        return reciprocal_rank_fusion(results, rrf_k=rrf_k, weights=weights, top_k=top_k)
    if method in ("minmax", "dbsf"):
        return score_fusion(results, normalization=method, weights=weights, top_k=top_k)
    raise ConfigurationError(f"fusion method must be one of 'rrf', 'minmax', 'dbsf', got {method!r}")


def _cut(docs: list[ScoredDocument], top_k: int | None) -> list[ScoredDocument]:
    if top_k is None:
        return docs
    if top_k < 0:
        raise ConfigurationError(f"top_k must be >= 0 or None, got {top_k}")
    return docs[:top_k]
