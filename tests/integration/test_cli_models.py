"""The whole job on the embedded default with the real packaged models (SPLADE-tiny, MiniLM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lens_rag.cli import main

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    store = str(tmp_path_factory.mktemp("cli") / "store")
    assert main(["index", str(EXAMPLES), "--store", store, "--no-progress", "--no-cache"]) == 0
    return store


@pytest.mark.parametrize("method", ["bm25", "sparse", "dense", "hybrid", "hybrid:sparse+dense"])
def test_every_method_finds_the_answer(demo_store: str, method: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    query = "which illness do sailors get without vitamin C?"
    assert main(["search", query, "--store", demo_store, "--method", method, "--json", "--top-k", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    top = out["results"][0]
    assert top["meta"]["source"] == "vitamins.md", out
    if method == "hybrid":
        assert set(top["sources"]) == {"bm25", "sparse", "dense"}


def test_store_remembers_its_encoders(demo_store: str) -> None:
    from lens_rag.stores.embedded import EmbeddedStore

    encoders = EmbeddedStore(demo_store).info["encoders"]
    assert encoders["sparse"]["name"] == "splade-tiny" and encoders["sparse"]["type"] == "mlm"
    assert encoders["dense"]["name"] == "all-MiniLM-L6-v2" and encoders["dense"]["dimension"] == 384


def test_dense_dimension_mismatch_is_a_clear_error(demo_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Indexing with MiniLM then searching with an MLM model as the dense encoder must not go silently wrong.
    from lens_rag.models import splade_tiny_path

    capsys.readouterr()
    code = main(
        ["search", "vitamin", "--store", demo_store, "--method", "dense", "--dense-model", str(splade_tiny_path())]
    )
    assert code == 2
    assert "dimensions" in capsys.readouterr().err
