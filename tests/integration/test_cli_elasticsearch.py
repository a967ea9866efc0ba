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
    # The index remembers its encoders (mapping _meta), like the embedded store, and refuses others.
    encoders = ElasticsearchStore(es_url, index=index_name).info["encoders"]
    assert encoders["sparse"]["name"] == "splade-tiny" and encoders["dense"]["dimension"] == 384
    from lens_rag.models import minilm_path

    assert main(["search", "vitamin", *es, "--method", "sparse", "--sparse-model", str(minilm_path())]) == 2
    err = capsys.readouterr().err
    assert f"Elasticsearch index {index_name!r}" in err and "'splade-tiny'" in err and "'all-MiniLM-L6-v2'" in err


def test_reindexing_syncs_the_source_on_elasticsearch(
    es_url: str, index_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "notes"
    src.mkdir()
    (src / "keep.md").write_text("# Keep\nScurvy comes from a lack of vitamin C.")
    (src / "gone.md").write_text("# Gone\nZebras have stripes.")
    es = ["--store", "elasticsearch", "--es-url", es_url, "--index", index_name]
    assert main(["index", str(src), *es, "--no-sparse", "--no-dense", "-q"]) == 0
    (src / "gone.md").unlink()
    assert main(["index", str(src), *es, "--no-sparse", "--no-dense", "-q"]) == 0
    assert "removed 1 chunks" in capsys.readouterr().out
    assert main(["search", "zebras", *es, "--method", "bm25"]) == 0
    assert "no results" in capsys.readouterr().out


def test_eval_refuses_an_index_holding_other_documents(
    es_url: str, index_name: str, tiny_beir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    es = ["--store", "elasticsearch", "--es-url", es_url, "--index", index_name]
    assert main(["index", str(EXAMPLES), *es, "--no-sparse", "--no-dense", "-q"]) == 0
    assert main(["eval", "--dataset", str(tiny_beir), "--method", "bm25", *es]) == 2
    assert "did not index" in capsys.readouterr().err
    assert ElasticsearchStore(es_url, index=index_name).count_documents() == 6


def test_eval_on_elasticsearch(es_url: str, index_name: str, tiny_beir: Path, capsys) -> None:
    beir = tiny_beir
    argv = ["eval", "--dataset", str(beir), "--method", "bm25", "--method", "hybrid", "--store", "elasticsearch"]
    argv += ["--es-url", es_url, "--index", index_name, "--json", "--no-progress", "--no-cache"]
    assert main(argv) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["bm25"]["ndcg@10"] == pytest.approx(1.0)
    assert scores["hybrid"]["ndcg@10"] == pytest.approx(1.0)
