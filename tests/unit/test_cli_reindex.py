"""`lens-rag reindex`: a store's passages into a new store with other encoders, nothing stale kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lens_rag.cli import main

pytestmark = pytest.mark.unit

DOCS = [
    {"_id": "d1", "title": "alpha beta", "text": "alpha beta gamma delta one two"},
    {"_id": "d2", "title": "aspirin", "text": "aspirin lowers heart attack risk"},
    {"_id": "d3", "title": "scurvy", "text": "what causes scurvy lack of vitamin c"},
]


@pytest.fixture
def source(tmp_path: Path, tiny_mlm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LENS_RAG_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "corpus.jsonl"
    src.write_text("\n".join(json.dumps(d) for d in DOCS))
    store = str(tmp_path / "old")
    assert main(["index", str(src), "--store", store, "--sparse-model", str(tiny_mlm_dir), "--no-dense",
                 "--no-progress"]) == 0  # fmt: skip
    return store


def test_reindex_copies_every_passage_with_the_new_encoder(
    source: str, tmp_path: Path, tiny_mlm_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lens_rag.stores.embedded import EmbeddedStore

    capsys.readouterr()
    new = str(tmp_path / "new")
    # The "new model" is another copy of the tiny MLM at another path: a different encoder identity.
    other = tmp_path / "other_model"
    other.mkdir()
    for f in tiny_mlm_dir.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    args = ["reindex", "--from", source, "--store", new, "--sparse-model", str(other), "--no-dense", "--no-progress"]
    assert main(args) == 0
    assert "re-indexed 3 of 3 documents" in capsys.readouterr().out
    store = EmbeddedStore(new)
    assert sorted(d.id for d in store.iter_documents()) == ["d1", "d2", "d3"]
    assert store.info["encoders"]["sparse"]["name"] == str(other.resolve())
    assert main(["search", "aspirin", "--store", new, "--method", "bm25", "--json", "--top-k", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["id"] == "d2"
    assert main(["search", "aspirin", "--store", new, "--method", "sparse", "--json", "--top-k", "3"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 3  # every passage got a vector of the new model
    # The old store is untouched and still searchable with its own model.
    assert EmbeddedStore(source).info["encoders"]["sparse"]["name"] == str(tiny_mlm_dir.resolve())
    # A second run into the now non-empty store is refused: no vectors of two models side by side.
    assert main(args) == 2
    assert "already holds 3 documents" in capsys.readouterr().err


def test_reindex_refuses_the_same_store_and_a_missing_source(source: str, tmp_path: Path) -> None:
    assert main(["reindex", "--from", source, "--store", source, "--no-progress"]) == 2
    assert main(["reindex", "--from", str(tmp_path / "nope"), "--store", str(tmp_path / "n"), "--no-progress"]) == 2
    assert not (tmp_path / "nope").exists()
