"""Fusion conventions pinned by worked examples (RRF k = 60 with ranks from 1)."""

from __future__ import annotations

import pytest

from lens_rag.documents import Document, ScoredDocument
from lens_rag.errors import ConfigurationError
from lens_rag.fusion import fuse, reciprocal_rank_fusion, score_fusion

pytestmark = pytest.mark.unit


def hits(*pairs: tuple[str, float]) -> list[ScoredDocument]:
    return [ScoredDocument(Document(id=i, content=i), score=s, rank=r + 1) for r, (i, s) in enumerate(pairs)]


def test_rrf_worked_example() -> None:
    bm25 = hits(("a", 12.0), ("b", 9.0), ("c", 3.0))
    dense = hits(("c", 0.9), ("a", 0.8))
    fused = reciprocal_rank_fusion({"bm25": bm25, "dense": dense})
    # a: 1/61 + 1/62, c: 1/63 + 1/61, b: 1/62
    expected = {"a": 1 / 61 + 1 / 62, "c": 1 / 63 + 1 / 61, "b": 1 / 62}
    assert [d.id for d in fused] == ["a", "c", "b"]
    for d in fused:
        assert d.score == pytest.approx(expected[d.id])
    assert [d.rank for d in fused] == [1, 2, 3]
    a = fused[0]
    assert a.sources["bm25"].rank == 1 and a.sources["bm25"].score == 12.0
    assert a.sources["dense"].rank == 2 and a.sources["dense"].score == 0.8
    assert "dense" not in fused[2].sources


def test_rrf_weights_and_top_k() -> None:
    bm25 = hits(("a", 1.0), ("b", 0.5))
    dense = hits(("b", 1.0), ("a", 0.5))
    fused = reciprocal_rank_fusion({"bm25": bm25, "dense": dense}, weights={"dense": 2.0}, top_k=1)
    assert [d.id for d in fused] == ["b"]
    assert fused[0].score == pytest.approx(1 / 62 + 2 / 61)
    assert reciprocal_rank_fusion({"bm25": bm25}, top_k=0) == []


def test_minmax_worked_example() -> None:
    bm25 = hits(("a", 10.0), ("b", 5.0), ("c", 0.0))
    dense = hits(("c", 0.9), ("b", 0.5), ("a", 0.1))
    fused = score_fusion({"bm25": bm25, "dense": dense}, normalization="minmax")
    scores = {d.id: d.score for d in fused}
    assert scores["a"] == pytest.approx(1.0 + 0.0)
    assert scores["b"] == pytest.approx(0.5 + 0.5)
    assert scores["c"] == pytest.approx(0.0 + 1.0)
    # Ties broken by best source rank, then id: a and c both have a rank-1 source.
    assert [d.id for d in fused] == ["a", "c", "b"]


def test_dbsf_clips_to_three_sigma() -> None:
    fused = score_fusion({"x": hits(("a", 2.0), ("b", 0.0))}, normalization="dbsf")
    # mean 1, std 1 -> range [-2, 4]: a -> 4/6, b -> 2/6
    assert {d.id: d.score for d in fused} == pytest.approx({"a": 4 / 6, "b": 2 / 6})


def test_equal_scores_normalise_to_one() -> None:
    fused = score_fusion({"x": hits(("a", 3.0), ("b", 3.0))})
    assert [d.score for d in fused] == [1.0, 1.0]


def test_nested_fusion_keeps_sub_sources() -> None:
    inner = reciprocal_rank_fusion({"bm25": hits(("a", 1.0)), "dense": hits(("a", 0.5))})
    outer = reciprocal_rank_fusion({"hybrid": inner, "sparse": hits(("a", 2.0))})
    assert set(outer[0].sources) == {"bm25", "dense", "hybrid", "sparse"}


def test_bad_arguments_name_the_parameter() -> None:
    with pytest.raises(ConfigurationError, match="fusion method"):
        fuse({"x": []}, "borda")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="weights name retrievers"):
        fuse({"x": []}, weights={"y": 1.0})
    with pytest.raises(ConfigurationError, match="weights must be >= 0"):
        fuse({"x": []}, weights={"x": -1.0})
    with pytest.raises(ConfigurationError, match="normalization"):
        score_fusion({"x": []}, normalization="zscore")  # type: ignore[arg-type]
