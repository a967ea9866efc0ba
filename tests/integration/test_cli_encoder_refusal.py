"""A store indexed with one encoder refuses another, through the real CLI and the real packaged models."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lens_rag.cli import main
from lens_rag.models import splade_tiny_path
from lens_rag.stores.embedded import EmbeddedStore

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


@pytest.fixture(scope="module")
def sparse_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("refusal") / "store"
    assert main(["index", str(EXAMPLES), "--store", str(store), "--no-dense", "--no-cache", "-q"]) == 0
    return store


@pytest.fixture(scope="module")
def other_sparse_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another sparse model, as a user would have one: a checkpoint in a folder of their own."""
    other = tmp_path_factory.mktemp("models") / "my-splade"
    shutil.copytree(splade_tiny_path(), other)
    return other


def test_search_with_another_sparse_model_is_refused(
    sparse_store: Path, other_sparse_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["search", "vitamin", "--store", str(sparse_store), "--method", "sparse"]
    assert main([*argv, "--sparse-model", str(other_sparse_model)]) == 2
    err = capsys.readouterr().err
    assert "'splade-tiny'" in err and str(other_sparse_model) in err
    assert "--sparse-model splade-tiny" in err and "re-index into a new store" in err
    # The same model named by its path is the same encoder.
    assert main([*argv, "--sparse-model", str(splade_tiny_path()), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["meta"]["source"] == "vitamins.md"


def test_index_with_another_sparse_model_is_refused_and_writes_nothing(
    sparse_store: Path, other_sparse_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "new.md").write_text("# New\nA brand new note about zebras.")
    code = main(
        ["index", str(extra), "--store", str(sparse_store), "--no-dense", "--sparse-model", str(other_sparse_model)]
    )
    assert code == 2
    assert "cannot write to store" in capsys.readouterr().err
    with EmbeddedStore(sparse_store) as store:
        assert store.count_documents() == 6
        assert store.info["encoders"]["sparse"]["name"] == "splade-tiny"


def test_a_method_whose_vectors_the_store_lacks_says_why(
    sparse_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["search", "vitamin", "--store", str(sparse_store), "--method", "hybrid"]) == 2
    assert "has no dense vectors" in capsys.readouterr().err


def test_eval_reuses_its_store_only_with_the_same_encoders(
    tiny_beir: Path, other_sparse_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "eval-store")
    argv = ["eval", "--dataset", str(tiny_beir), "--method", "sparse", "--store", store, "--json", "-q"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(argv) == 0
    assert (
        json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sparse"]["ndcg@10"] == first["sparse"]["ndcg@10"]
    )
    assert main([*argv, "--sparse-model", str(other_sparse_model)]) == 2
    err = capsys.readouterr().err
    assert "'splade-tiny'" in err and str(other_sparse_model) in err


def test_hybrid_search_in_a_fresh_process_prints_results_only(tmp_path: Path) -> None:
    """As a user runs it: no DEBUG line, no "Loading weights"/"Split strings" bars, only the results."""
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")}
    store = str(tmp_path / "store")
    cli = [sys.executable, "-m", "lens_rag.cli"]
    done = subprocess.run(
        [*cli, "index", str(EXAMPLES), "--store", store, "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "indexing" in done.stderr and "Loading weights" not in done.stderr  # our bar, not the libraries'
    query = "which illness do sailors get without vitamin C?"
    done = subprocess.run(
        [*cli, "search", query, "--store", store, "--method", "hybrid", "--top-k", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "vitamins.md#0" in done.stdout.splitlines()[0]
