"""The CLI contract on the BM25-only path (no models load in the unit tier)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lens_rag.cli import main

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


def test_index_and_search_bm25(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "store")
    assert main(["index", str(EXAMPLES), "--store", store, "--no-sparse", "--no-dense", "--no-progress"]) == 0
    assert "indexed" in capsys.readouterr().out
    code = main(["search", "lack of vitamin C", "--store", store, "--method", "bm25", "--json", "--top-k", "2"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["results"][0]["meta"]["source"] == "vitamins.md"
    assert out["results"][0]["sources"]["bm25"]["rank"] == 1
    assert main(["search", "vitamin", "--store", store, "--method", "bm25", "--filter", "source=aspirin.md"]) == 0


def test_reindexing_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "store")
    args = ["index", str(EXAMPLES), "--store", store, "--no-sparse", "--no-dense", "--no-progress"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    second = capsys.readouterr().out
    count = first.split("(")[1].split(" in store")[0]
    assert count == second.split("(")[1].split(" in store")[0]


def test_non_utf8_files_are_skipped_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "good.txt").write_text("Scurvy comes from a lack of vitamin C.")
    (src / "latin1.txt").write_bytes("Caf\xe9 au lait".encode("latin-1"))
    assert main(["index", str(src), "--store", str(tmp_path / "s"), "--no-sparse", "--no-dense", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "latin1.txt" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["index", "/nonexistent/folder", "--store", "{tmp}/s", "--no-sparse", "--no-dense"], "does not exist"),
        (["eval", "--dataset", "/nonexistent/beir", "--method", "bm25"], "nonexistent"),
        (["search", "q", "--store", "{tmp}/empty", "--method", "bm25"], "is empty"),
        (["search", "q", "--store", "{tmp}/s2", "--method", "bm42"], "unknown method 'bm42'"),
    ],
)
def test_bad_input_gives_a_clear_error(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if "{tmp}/s2" in argv:
        main(["index", str(EXAMPLES), "--store", str(tmp_path / "s2"), "--no-sparse", "--no-dense", "--no-progress"])
        capsys.readouterr()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_empty_dataset_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "beir").mkdir()
    assert main(["eval", "--dataset", str(tmp_path / "beir"), "--method", "bm25"]) == 2
    assert "corpus.jsonl" in capsys.readouterr().err


def test_corrupted_store_is_not_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    main(["index", str(EXAMPLES), "--store", str(store), "--no-sparse", "--no-dense", "--no-progress"])
    (store / "manifest.json").write_text("garbage")
    code = main(["index", str(EXAMPLES), "--store", str(store), "--no-sparse", "--no-dense", "--no-progress"])
    assert code == 2
    assert "cannot be read" in capsys.readouterr().err
    assert (store / "manifest.json").read_text() == "garbage"


def test_eval_bm25_on_a_tiny_beir_dataset(tiny_beir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    beir = tiny_beir
    plot = tmp_path / "plot.png"
    code = main(["eval", "--dataset", str(beir), "--method", "bm25", "--json", "--plot", str(plot), "--no-progress"])
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last)["bm25"]["ndcg@10"] == pytest.approx(1.0)
    assert plot.stat().st_size > 1000
