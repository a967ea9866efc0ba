"""Positive-aware hard-negative mining (NV-Retriever, arXiv 2407.15831: TopK-PercPos).

A candidate ranked high by the teacher but not labelled positive is often an unlabelled positive.
TopK-PercPos keeps a candidate as a negative only when its teacher score is below `perc` (95 %) of
the positive's teacher score, which roughly halves such false negatives, then keeps the top `k`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lens_rag.errors import ConfigurationError

__all__ = ["MinedExample", "mine_hard_negatives"]


@dataclass(frozen=True)
class MinedExample:
    """One training query: its positive and the hard negatives kept, with teacher scores.

    :param query: the query text.
    :param positive: id of the positive passage.
    :param positive_score: the teacher's score of the positive.
    :param negatives: ids of the kept negatives, best teacher score first.
    :param negative_scores: their teacher scores.
    :param dropped: candidates dropped as likely false negatives (score ≥ perc × positive).
    """

    query: str
    positive: str
    positive_score: float
    negatives: tuple[str, ...]
    negative_scores: tuple[float, ...]
    dropped: tuple[str, ...] = ()


def mine_hard_negatives(
    query: str,
    positive: str,
    candidates: Sequence[tuple[str, float]],
    *,
    positive_score: float | None = None,
    k: int = 8,
    perc: float = 0.95,
) -> MinedExample | None:
    """TopK-PercPos: the `k` best candidates whose teacher score is below `perc × positive_score`.

    :param query: the query text (kept on the result).
    :param positive: id of the positive passage.
    :param candidates: `(id, teacher score)` pairs, in any order; the positive may be among them.
    :param positive_score: the positive's teacher score; `None` takes it from `candidates`.
    :param k: how many negatives to keep at most.
    :param perc: the threshold as a fraction of the positive's score, in `(0, 1]`. Scores must be
        non-negative for the fraction to mean "below the positive" (min–max fused scores are).
    :returns: the example, or `None` when the positive's score is unknown or not positive (the
        teacher does not find the positive, so its negatives would be noise) or no negative is left.
    :raises ConfigurationError: on `k < 1` or `perc` outside `(0, 1]`.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigurationError(f"k must be a positive integer, got {k!r}")
    if not 0 < perc <= 1:
        raise ConfigurationError(f"perc must be in (0, 1], got {perc!r}; NV-Retriever uses 0.95")
    if positive_score is None:
        positive_score = next((s for i, s in candidates if i == positive), None)
    if positive_score is None or not positive_score > 0:
        return None
    limit = perc * positive_score
    ranked = sorted(((s, i) for i, s in candidates if i != positive), key=lambda x: (-x[0], x[1]))
    kept = [(i, s) for s, i in ranked if s < limit][:k]
    dropped = tuple(i for s, i in ranked if s >= limit)
    if not kept:
        return None
    return MinedExample(
        query=query,
        positive=positive,
        positive_score=float(positive_score),
        negatives=tuple(i for i, _ in kept),
        negative_scores=tuple(float(s) for _, s in kept),
        dropped=dropped,
    )
