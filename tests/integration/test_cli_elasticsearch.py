"""The CLI's `--store elasticsearch` path: index, search and eval against the real server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from lens_rag.cli import main
from lens_rag.stores.elasticsearch import ElasticsearchStore

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


@pytest.fixture
def index_name(es_url: str):
    name = f"lens-rag-cli-{uuid.uuid4().hex[:10]}"
    yield name
    store = ElasticsearchStore(es_url, index=name, progress=False)
    store.delete_index()
    store.close()


def test_index_and_search_on_elasticsearch(es_url: str, index_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    es = ["--store", "elasticsearch", "--es-url", es_url, "--index", index_name]
    assert main(["index", str(EXAMPLES), *es, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["search", "which illness comes from a lack of vitamin C?", *es, "--json", "--top-k", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["results"][0]["meta"]["source"] == "vitamins.md"
    assert set(out["results"][0]["sources"]) == {"bm25", "sparse", "dense"}
    # The index remembers its encoders, like the embedded store.
    info = ElasticsearchStore(es_url, index=index_name).info
    assert info["sparse"]["type"] == "mlm" and "model" in info["dense"]


def test_eval_on_elasticsearch(es_url: str, index_name: str, tiny_beir: Path, capsys) -> None:
    beir = tiny_beir
    argv = ["eval", "--dataset", str(beir), "--method", "bm25", "--method", "hybrid", "--store", "elasticsearch"]
    argv += ["--es-url", es_url, "--index", index_name, "--json", "--no-progress", "--no-cache"]
    assert main(argv) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["bm25"]["ndcg@10"] == pytest.approx(1.0)
    assert scores["hybrid"]["ndcg@10"] == pytest.approx(1.0)
