from __future__ import annotations

import builtins
import json
import math
from pathlib import Path

import pytest

from lens_rag import evaluation
from lens_rag.documents import Document, ScoredDocument
from lens_rag.errors import ConfigurationError, DatasetError, MissingDependencyError
from lens_rag.evaluation import evaluate_run, format_table, load_beir, plot_scores, results_to_run

pytestmark = pytest.mark.unit

# Worked example. trec_eval's nDCG uses the relevance grade itself as the gain (not 2^rel - 1) and
# discounts rank i by log2(i + 1).
QRELS = {"q1": {"d1": 2, "d2": 1}, "q2": {"d3": 1}, "q3": {"d9": 1}}
RUN = {
    "q1": {"q1": 10.0, "d3": 3.0, "d1": 2.0, "d2": 1.0},  # "q1" is a self-hit: removed before scoring
    "q2": {"d4": 2.0, "d3": 1.0},
    # q3 is judged but missing from the run: it counts as 0
    "q_unjudged": {"d1": 1.0},  # ignored: no judgments
}
# q1 after removing the self-hit ranks d3 (0), d1 (2), d2 (1)
Q1_NDCG = (2 / math.log2(3) + 1 / math.log2(4)) / (2 + 1 / math.log2(3))
Q2_NDCG = (1 / math.log2(3)) / 1
# with the self-hit left in, q1 ranks q1 (0), d3 (0), d1 (2), d2 (1)
Q1_NDCG_WITH_SELF_HIT = (2 / math.log2(4) + 1 / math.log2(5)) / (2 + 1 / math.log2(3))


def test_public_api() -> None:
    assert set(evaluation.__all__) == {
        "DEFAULT_METRICS",
        "BeirDataset",
        "load_beir",
        "evaluate_run",
        "results_to_run",
        "format_table",
        "plot_scores",
    }


def test_worked_example_ndcg_and_recall() -> None:
    scores = evaluate_run(RUN, QRELS)
    assert list(scores) == ["ndcg@10", "recall@100"]
    assert Q1_NDCG == pytest.approx(0.669672, abs=1e-6)
    assert scores["ndcg@10"] == pytest.approx((Q1_NDCG + Q2_NDCG + 0.0) / 3, abs=1e-9)
    assert scores["ndcg@10"] == pytest.approx(0.433534, abs=1e-6)
    assert scores["recall@100"] == pytest.approx((1.0 + 1.0 + 0.0) / 3)


def test_self_hits_can_be_kept() -> None:
    scores = evaluate_run(RUN, QRELS, remove_self_hits=False)
    assert scores["ndcg@10"] == pytest.approx((Q1_NDCG_WITH_SELF_HIT + Q2_NDCG) / 3, abs=1e-9)


def test_missing_and_empty_queries_count_as_zero() -> None:
    only_q1 = {"q1": RUN["q1"]}
    expected = Q1_NDCG / 3
    assert evaluate_run(only_q1, QRELS)["ndcg@10"] == pytest.approx(expected, abs=1e-9)
    assert evaluate_run({**only_q1, "q2": {}}, QRELS)["ndcg@10"] == pytest.approx(expected, abs=1e-9)
    # a run that only had the self-hit is empty after removal
    assert evaluate_run({"q1": {"q1": 1.0}}, QRELS)["ndcg@10"] == 0.0


def test_metric_names() -> None:
    scores = evaluate_run(RUN, QRELS, metrics=("ndcg@3", "P_1", "recall_1", "map"))
    assert list(scores) == ["ndcg@3", "precision@1", "recall@1", "map"]
    assert scores["precision@1"] == pytest.approx(0.0)  # q1 and q2 both rank an unjudged doc first
    with pytest.raises(ConfigurationError, match="'ndcg@@10' is not a metric name"):
        evaluate_run(RUN, QRELS, metrics=("ndcg@@10",))
    with pytest.raises(ConfigurationError, match="qrels has no judged queries"):
        evaluate_run(RUN, {})


def test_missing_pytrec_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: object, **kwargs: object) -> object:
        if name == "pytrec_eval":
            raise ImportError("no pytrec_eval")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MissingDependencyError, match=r"pip install 'lens-rag\[eval\]'") as info:
        evaluate_run(RUN, QRELS)
    assert info.value.package == "pytrec-eval-terrier"


def test_results_to_run() -> None:
    def hit(doc_id: str, score: float) -> ScoredDocument:
        return ScoredDocument(Document(doc_id, "text"), score)

    run = results_to_run({"q1": [hit("a", 2.0), hit("b", 1.0), hit("a", 0.5)], "q2": []})
    assert run == {"q1": {"a": 2.0, "b": 1.0}, "q2": {}}


# --- load_beir -----------------------------------------------------------------------------------------


def _beir(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    (root / "qrels").mkdir(parents=True)
    corpus = [{"_id": "d1", "title": "One", "text": "first"}, {"_id": "d2", "title": "", "text": "second"}]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus) + "\n", encoding="utf-8")
    queries = [{"_id": "q1", "text": "query one"}, {"_id": "q2", "text": "query two"}]
    (root / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in queries) + "\n", encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\n", encoding="utf-8")
    return root


def test_load_beir(tmp_path: Path) -> None:
    data = load_beir(_beir(tmp_path))
    assert [(d.id, d.content) for d in data.corpus] == [("d1", "One\nfirst"), ("d2", "second")]
    assert data.queries == {"q1": "query one"}  # q2 has no judgments in this split
    assert data.qrels == {"q1": {"d1": 1, "d2": 0}}


def test_load_beir_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_beir(tmp_path / "missing")
    root = _beir(tmp_path)
    with pytest.raises(DatasetError, match=r"split 'dev' has no judgments.*available splits: test"):
        load_beir(root, split="dev")
    (root / "qrels" / "empty.tsv").write_text("query-id\tcorpus-id\tscore\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="has no judgments"):
        load_beir(root, split="empty")
    (root / "qrels" / "bad.tsv").write_text("q1\td1\thigh\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad\.tsv, line 1: relevance score 'high' is not an integer"):
        load_beir(root, split="bad")
    (root / "queries.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"queries\.jsonl is empty"):
        load_beir(root)
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n', encoding="utf-8")
    (root / "corpus.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"corpus\.jsonl' is empty"):
        load_beir(root)
    (root / "corpus.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"not a BEIR folder: corpus\.jsonl is missing"):
        load_beir(root)


# --- table and plot ----------------------------------------------------------------------------------------


def test_format_table_is_aligned() -> None:
    table = format_table({"bm25": {"ndcg@10": 0.6789, "recall@100": 0.92531}, "dense+rerank": {"ndcg@10": 0.7}})
    lines = table.splitlines()
    assert lines[0].split() == ["method", "ndcg@10", "recall@100"]
    assert lines[2].split() == ["bm25", "0.6789", "0.9253"]
    assert lines[3].split() == ["dense+rerank", "0.7000", "-"]
    assert len({len(line) for line in lines[:3]}) == 1  # columns line up
    assert lines[3].index("0.7000") == lines[2].index("0.6789")


def test_plot_scores_writes_png(tmp_path: Path) -> None:
    out = plot_scores(
        {"bm25": {"ndcg@10": 0.67, "recall@100": 0.9}, "hybrid": {"ndcg@10": 0.7, "recall@100": 0.95}},
        tmp_path / "plots" / "scores.png",
        title="tiny",
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigurationError, match="scores is empty"):
        plot_scores({}, tmp_path / "x.png")
