"""Reranker logic against a fake cross-encoder (no model is loaded); real weights: tests/integration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from lens_rag import rerank as rerank_module
from lens_rag.documents import Document, ScoredDocument, SourceHit
from lens_rag.errors import ConfigurationError
from lens_rag.rerank import FUSED_SOURCE, RERANK_SOURCE, CrossEncoderReranker

pytestmark = pytest.mark.unit


class FakeCrossEncoder:
    """Scores a pair by how many query words the passage contains; records every call."""

    def __init__(self, outputs: int = 1) -> None:
        self.calls: list[dict[str, Any]] = []
        self.outputs = outputs

    def predict(self, pairs: Sequence[tuple[str, str]], **kwargs: Any) -> np.ndarray:
        self.calls.append({"pairs": list(pairs), **kwargs})
        scores = [float(len(set(q.split()) & set(p.split()))) for q, p in pairs]
        if self.outputs > 1:
            return np.array([[s] * self.outputs for s in scores], dtype=np.float32)
        return np.array(scores, dtype=np.float32)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeCrossEncoder:
    model = FakeCrossEncoder()
    monkeypatch.setattr(CrossEncoderReranker, "_load_model", lambda self: model)
    return model


def _candidates() -> list[ScoredDocument]:
    texts = ["nothing here", "red apple", "red apple pie", "apple"]
    return [
        ScoredDocument(
            Document(f"d{i}", text),
            score=1.0 - i / 10,
            rank=i + 1,
            sources={"bm25": SourceHit(score=10.0 - i, rank=i + 1)},
        )
        for i, text in enumerate(texts)
    ]


def test_public_api() -> None:
    assert set(rerank_module.__all__) == {"FUSED_SOURCE", "RERANK_SOURCE", "CrossEncoderReranker", "Reranker"}


def test_init_does_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: CrossEncoderReranker) -> None:
        raise AssertionError("loaded a model in __init__")

    monkeypatch.setattr(CrossEncoderReranker, "_load_model", boom)
    reranker = CrossEncoderReranker("no/such-model")
    assert reranker._model is None


def test_orders_by_model_score_and_keeps_sources(fake: FakeCrossEncoder) -> None:
    candidates = _candidates()
    results = CrossEncoderReranker("fake").rerank("red apple pie", candidates)
    assert [r.id for r in results] == ["d2", "d1", "d3", "d0"]
    assert [r.score for r in results] == [3.0, 2.0, 1.0, 0.0]
    assert [r.rank for r in results] == [1, 2, 3, 4]
    top = results[0]
    assert top.sources["bm25"] == SourceHit(score=8.0, rank=3)
    assert top.sources[FUSED_SOURCE] == SourceHit(score=pytest.approx(0.8), rank=3)
    assert top.sources[RERANK_SOURCE] == SourceHit(score=3.0, rank=1)
    assert top.document is candidates[2].document
    assert candidates[2].sources == {"bm25": SourceHit(score=8.0, rank=3)}  # inputs untouched
    assert candidates[2].score == pytest.approx(0.8) and candidates[2].rank == 3


def test_one_batched_predict_call(fake: FakeCrossEncoder) -> None:
    CrossEncoderReranker("fake", batch_size=2, progress=True).rerank("apple", _candidates())
    assert len(fake.calls) == 1
    call = fake.calls[0]
    assert call["batch_size"] == 2 and call["show_progress_bar"] is True
    assert call["pairs"][1] == ("apple", "red apple")


def test_ties_keep_input_order(fake: FakeCrossEncoder) -> None:
    results = CrossEncoderReranker("fake").rerank("apple", _candidates())
    assert [r.id for r in results] == ["d1", "d2", "d3", "d0"]


def test_top_k_and_threshold(fake: FakeCrossEncoder) -> None:
    reranker = CrossEncoderReranker("fake", top_k=2, score_threshold=1.0)
    assert [r.id for r in reranker.rerank("red apple pie", _candidates())] == ["d2", "d1"]
    # per-call overrides win, including falsy values
    assert [r.id for r in reranker.rerank("red apple pie", _candidates(), top_k=3)] == ["d2", "d1", "d3"]
    assert len(reranker.rerank("red apple pie", _candidates(), top_k=10, score_threshold=0.0)) == 4
    assert [r.id for r in reranker.rerank("red apple pie", _candidates(), top_k=10, score_threshold=2.5)] == ["d2"]
    assert reranker.rerank("red apple pie", _candidates(), top_k=0) == []


def test_empty_input_and_top_k_zero_load_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CrossEncoderReranker, "_load_model", lambda self: pytest.fail("model loaded"))
    assert CrossEncoderReranker("fake").rerank("q", []) == []
    assert CrossEncoderReranker("fake", top_k=0).rerank("q", _candidates()) == []


def test_warm_up_once_and_close(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[int] = []

    def load(self: CrossEncoderReranker) -> FakeCrossEncoder:
        loads.append(1)
        return FakeCrossEncoder()

    monkeypatch.setattr(CrossEncoderReranker, "_load_model", load)
    reranker = CrossEncoderReranker("fake")
    reranker.warm_up()
    reranker.warm_up()
    reranker.rerank("apple", _candidates())
    assert len(loads) == 1
    reranker.close()
    assert reranker._model is None
    reranker.rerank("apple", _candidates())
    assert len(loads) == 2


def test_multi_output_model_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CrossEncoderReranker, "_load_model", lambda self: FakeCrossEncoder(outputs=3))
    with pytest.raises(ConfigurationError, match=r"single output \(num_labels=1\)"):
        CrossEncoderReranker("nli-model").rerank("q", _candidates())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": ""}, "model must be a cross-encoder name or path"),
        ({"model": "m", "batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"model": "m", "top_k": -1}, "top_k must be None .* got -1"),
        ({"model": "m", "max_length": 0}, "max_length must be None or an integer >= 1, got 0"),
    ],
)
def test_bad_parameters(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        CrossEncoderReranker(**kwargs)


def test_bad_per_call_top_k(fake: FakeCrossEncoder) -> None:
    with pytest.raises(ConfigurationError, match="top_k must be None"):
        CrossEncoderReranker("fake").rerank("q", _candidates(), top_k=-2)


def test_config_round_trip() -> None:
    reranker = CrossEncoderReranker(
        "some/model", batch_size=8, top_k=5, score_threshold=0.2, max_length=256, progress=True, device="cpu"
    )
    config = reranker.to_config()
    assert config == {
        "type": "cross_encoder_reranker",
        "model": "some/model",
        "batch_size": 8,
        "top_k": 5,
        "score_threshold": 0.2,
        "max_length": 256,
        "progress": True,
        "device": "cpu",
    }
    assert CrossEncoderReranker.from_config(config).to_config() == config
    assert CrossEncoderReranker.from_config({"model": "m"}).to_config()["batch_size"] == 32
    with pytest.raises(ConfigurationError, match=r"unknown CrossEncoderReranker config keys \['topk'\]"):
        CrossEncoderReranker.from_config({"model": "m", "topk": 3})
    with pytest.raises(ConfigurationError, match="needs 'model'"):
        CrossEncoderReranker.from_config({})


async def test_async_matches_sync(fake: FakeCrossEncoder) -> None:
    reranker = CrossEncoderReranker("fake", top_k=3)
    sync = reranker.rerank("red apple pie", _candidates(), score_threshold=1.0)
    async_ = await reranker.rerank_async("red apple pie", _candidates(), score_threshold=1.0)
    assert async_ == sync
