"""Fixtures shared by both test tiers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    """A three-passage BEIR dataset where each of two queries has one obviously relevant passage."""
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "d1", "title": "Scurvy", "text": "Scurvy is caused by a lack of vitamin C."},
        {"_id": "d2", "title": "Aspirin", "text": "Aspirin lowers the risk of heart attack."},
        {"_id": "d3", "title": "Volcanoes", "text": "Magma reaches the surface in volcanoes."},
    ]
    (beir / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus))
    queries = [{"_id": "q1", "text": "vitamin C deficiency"}, {"_id": "q2", "text": "heart attack prevention"}]
    (beir / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    return beir
