"""CrossEncoderReranker on real transformer weights.

No cross-encoder ships offline and the Hugging Face Hub is unreachable here, so the tests build one
locally: `CrossEncoder(minilm_path(), num_labels=1)` puts a freshly initialised one-output
classification head on the all-MiniLM-L6-v2 encoder, saves it to a temporary folder, and the
reranker loads it by path — exactly how a user's own cross-encoder folder is loaded. The random head
gives meaningless relevance, so these tests check the mechanics against the model's own `predict`
(ordering, top_k, threshold, batching, sources); the last test fine-tunes the tiny model for a few
steps to show that a trained head's preference comes through the reranker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lens_rag.documents import Document, ScoredDocument, SourceHit
from lens_rag.errors import ModelLoadError
from lens_rag.models import minilm_path
from lens_rag.rerank import FUSED_SOURCE, RERANK_SOURCE, CrossEncoderReranker

pytestmark = pytest.mark.integration

QUERY = "What causes scurvy?"
PASSAGES = [
    "Scurvy is caused by a lack of vitamin C in the diet.",
    "The stock market fell sharply on Monday.",
    "Sailors on long voyages developed scurvy until citrus fruit was carried aboard.",
    "Football is played by two teams of eleven players.",
    "Vitamin C deficiency impairs collagen synthesis, leading to bleeding gums.",
]


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sentence_transformers import CrossEncoder

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = CrossEncoder(str(minilm_path()), num_labels=1, device="cpu")
    path = tmp_path_factory.mktemp("cross-encoder")
    model.save(str(path))
    return path


@pytest.fixture(scope="module")
def reranker(cross_encoder_dir: Path) -> CrossEncoderReranker:
    reranker = CrossEncoderReranker(str(cross_encoder_dir), batch_size=2, max_length=64, device="cpu")
    reranker.warm_up()
    yield reranker
    reranker.close()


def _candidates() -> list[ScoredDocument]:
    return [
        ScoredDocument(
            Document(f"d{i}", text), score=1 / (60 + i + 1), rank=i + 1, sources={"bm25": SourceHit(5 - i, i + 1)}
        )
        for i, text in enumerate(PASSAGES)
    ]


def test_ordering_follows_predict(reranker: CrossEncoderReranker) -> None:
    expected = reranker._model.predict([(QUERY, p) for p in PASSAGES], batch_size=32, show_progress_bar=False)
    results = reranker.rerank(QUERY, _candidates())
    assert [r.id for r in results] == [f"d{i}" for i in np.argsort(-expected, kind="stable")]
    assert [r.score for r in results] == pytest.approx(sorted(expected.tolist(), reverse=True), abs=1e-5)
    assert [r.rank for r in results] == [1, 2, 3, 4, 5]
    for r in results:
        original = int(r.id[1:])
        assert r.sources["bm25"] == SourceHit(5 - original, original + 1)
        assert r.sources[FUSED_SOURCE].rank == original + 1
        assert r.sources[RERANK_SOURCE] == SourceHit(r.score, r.rank)


def test_batch_size_does_not_change_scores(reranker: CrossEncoderReranker, cross_encoder_dir: Path) -> None:
    one_batch = CrossEncoderReranker(str(cross_encoder_dir), batch_size=32, max_length=64, device="cpu")
    assert [r.score for r in one_batch.rerank(QUERY, _candidates())] == pytest.approx(
        [r.score for r in reranker.rerank(QUERY, _candidates())], abs=1e-5
    )


def test_top_k_threshold_and_empty(reranker: CrossEncoderReranker) -> None:
    full = reranker.rerank(QUERY, _candidates())
    assert [r.id for r in reranker.rerank(QUERY, _candidates(), top_k=2)] == [r.id for r in full[:2]]
    middle = full[2].score
    assert [r.id for r in reranker.rerank(QUERY, _candidates(), score_threshold=middle)] == [r.id for r in full[:3]]
    assert reranker.rerank(QUERY, [], top_k=3) == []


async def test_async(reranker: CrossEncoderReranker) -> None:
    assert await reranker.rerank_async(QUERY, _candidates(), top_k=3) == reranker.rerank(QUERY, _candidates(), top_k=3)


def test_missing_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="could not load cross-encoder model="):
        CrossEncoderReranker(str(tmp_path / "no-model")).warm_up()


def test_trained_head_prefers_relevant(cross_encoder_dir: Path, tmp_path: Path) -> None:
    """Training the one-output head on a handful of (query, relevant, irrelevant) triples makes the
    reranker put relevant passages first for unseen queries.

    Only the head trains, on the frozen encoder's pooled features computed once (a few seconds on a
    shared CPU; full fine-tuning took ~30 s here for the same effect).
    """
    torch = pytest.importorskip("torch")
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    train = [
        ("What causes scurvy?", "Scurvy results from vitamin C deficiency.", "The football match ended in a draw."),
        ("Who wrote Hamlet?", "Hamlet is a tragedy written by William Shakespeare.", "Paris is the capital of France."),
        ("How do plants make food?", "Plants make sugar from light by photosynthesis.", "Interest rates rose again."),
        (
            "What is the boiling point of water?",
            "Water boils at 100 degrees Celsius at sea level.",
            "Cats sleep a lot.",
        ),
        (
            "Where is Mount Everest?",
            "Mount Everest lies in the Himalayas on the Nepal–China border.",
            "Bread needs yeast.",
        ),
    ]
    model = CrossEncoder(str(cross_encoder_dir), max_length=48, device="cpu")
    net, tokenizer = model.model, model.tokenizer
    net.eval()
    queries = [q for q, _, _ in train] * 2
    passages = [p for _, p, _ in train] + [n for _, _, n in train]
    labels = torch.tensor([1.0] * len(train) + [0.0] * len(train))
    batch = tokenizer(queries, passages, padding=True, truncation=True, max_length=48, return_tensors="pt")
    with torch.no_grad():
        features = net.bert(**batch).pooler_output
    optimizer = torch.optim.AdamW(net.classifier.parameters(), lr=1e-2)
    for _ in range(100):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net.classifier(features).squeeze(-1), labels)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.3
    tuned = tmp_path / "tuned"
    model.save(str(tuned))

    reranker = CrossEncoderReranker(str(tuned), device="cpu")
    unseen = {
        "What causes scurvy in sailors?": [
            "The orchestra played a symphony by Beethoven.",
            "Lack of vitamin C in the diet causes scurvy.",
            "Quarterly earnings beat analyst expectations.",
        ],
        "Who painted the Mona Lisa?": [
            "Stock prices fell.",
            "Leonardo da Vinci painted the Mona Lisa.",
            "Dogs bark.",
        ],
    }
    for query, texts in unseen.items():
        candidates = [ScoredDocument(Document(f"p{i}", t), 1.0 - i / 10, i + 1) for i, t in enumerate(texts)]
        results = reranker.rerank(query, candidates)
        assert results[0].id == "p1", query  # the relevant passage, second on the way in, now first
        assert results[0].sources[FUSED_SOURCE] == SourceHit(0.9, 2)
