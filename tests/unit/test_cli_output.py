"""What the CLI prints and refuses, on the BM25-only path (no models load in the unit tier)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lens_rag.cli import main

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"
BM25_ONLY = ["--no-sparse", "--no-dense", "--no-cache"]


def _index(source: Path | str, store: Path, *extra: str) -> int:
    return main(["index", str(source), "--store", str(store), *BM25_ONLY, "--no-progress", *extra])


@pytest.fixture
def demo_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    store = tmp_path / "store"
    assert _index(EXAMPLES, store) == 0
    capsys.readouterr()
    return store


def test_search_prints_results_only(demo_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The first search builds the BM25 index: bm25s logs "DEBUG bm25s: Building index..." then.
    assert main(["search", "vitamin C", "--store", str(demo_store), "--method", "bm25", "--top-k", "1"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "vitamins.md" in out and "DEBUG" not in out


def test_search_in_a_fresh_process_prints_no_library_output(demo_store: Path) -> None:
    # In its own process, as a user runs it, with tqdm enabled: no "Split strings"/"Stem Tokens" bars.
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")}
    for _ in range(2):  # the first run builds and saves the BM25 index, the second loads it
        done = subprocess.run(
            [sys.executable, "-m", "lens_rag.cli", "search", "aspirin", "--store", str(demo_store), "--method", "bm25"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        assert "aspirin.md" in done.stdout


def test_verbose_and_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "good.txt").write_text("Scurvy comes from a lack of vitamin C.")
    (src / "latin1.txt").write_bytes("Caf\xe9".encode("latin-1"))
    assert _index(src, tmp_path / "s1", "-q") == 0
    out, err = capsys.readouterr()
    assert err == "" and "indexed 1 chunks" in out
    assert _index(src, tmp_path / "s2") == 0
    err = capsys.readouterr().err
    assert err.count("latin1.txt") == 1 and "INFO" not in err  # listed once, no info chatter
    assert _index(src, tmp_path / "s3", "-v") == 0
    assert "INFO lens_rag" in capsys.readouterr().err
    # -q hides warnings, never errors
    assert main(["search", "x", "--store", str(tmp_path / "nothing"), "--method", "bm25", "-q"]) == 2
    assert "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["search", "x", "--store", str(tmp_path / "s1"), "-q", "-v"])


def test_index_into_memory_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", str(EXAMPLES), "--store", "memory", *BM25_ONLY]) == 2
    assert "--store memory" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["bm25", "hybrid", "dense", "sparse", "lamer"])
def test_an_empty_query_is_the_same_error_for_every_method(
    demo_store: Path, method: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["search", "   ", "--store", str(demo_store), "--method", method]) == 2
    assert "the query is empty" in capsys.readouterr().err
    assert main(["ask", "", "--store", str(demo_store), "--method", method]) == 2
    assert "the question is empty" in capsys.readouterr().err


def test_escape_codes_in_passages_are_not_printed_raw(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jsonl = tmp_path / "evil.jsonl"
    text = "vitamin \x1b[2J\x1b[31mred\x07 text\r overwritten \u202eevil"
    jsonl.write_text(json.dumps({"_id": "e\x1b[1m1", "title": "T\x1b]0;pwned\x07", "text": text}) + "\n")
    assert _index(jsonl, tmp_path / "s") == 0
    capsys.readouterr()
    assert main(["search", "vitamin", "--store", str(tmp_path / "s"), "--method", "bm25"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out and "\u202e" not in out
    assert "\\x1b[31mred\\x07" in out and "\\u202e" in out
    assert main(["search", "vitamin", "--store", str(tmp_path / "s"), "--method", "bm25", "--json"]) == 0
    raw = capsys.readouterr().out
    assert "\x1b" not in raw
    assert json.loads(raw)["results"][0]["content"].endswith(text)  # JSON keeps the exact text


def test_a_bad_line_is_reported_before_anything_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [json.dumps({"_id": f"d{i}", "text": f"passage number {i}"}) for i in range(600)]
    lines[400] = "{not json"
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    store = tmp_path / "s"
    # batch size 256: the bad line is in the second batch; the whole file is read before any write.
    assert _index(jsonl, store) == 2
    err = capsys.readouterr().err
    assert "docs.jsonl:401" in err and "nothing was written" in err.lower()
    assert not (store / "nothing").exists()
    code = main(["search", "passage", "--store", str(store), "--method", "bm25"])
    assert code == 2 and "is empty" in capsys.readouterr().err


def test_reindexing_an_edited_folder_removes_deleted_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "notes"
    src.mkdir()
    (src / "keep.md").write_text("# Keep\nScurvy comes from a lack of vitamin C.")
    (src / "gone.md").write_text("# Gone\nZebras have stripes.")
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"_id": "o1", "text": "Zebras also live in zoos."}) + "\n")
    store = tmp_path / "s"
    assert _index(src, store) == 0
    assert _index(other, store) == 0
    (src / "gone.md").unlink()
    assert _index(src, store) == 0
    assert "removed 1 chunks" in capsys.readouterr().out
    assert main(["search", "zebras", "--store", str(store), "--method", "bm25", "--json"]) == 0
    ids = [r["id"] for r in json.loads(capsys.readouterr().out)["results"]]
    assert ids == ["o1"]  # the other source's document stays
    assert _index(src, store, "--no-sync") == 0


def _with_empty_query(beir: Path) -> Path:
    lines = [*(beir / "queries.jsonl").read_text().splitlines(), json.dumps({"_id": "q3", "text": " "})]
    (beir / "queries.jsonl").write_text("\n".join(lines))
    with (beir / "qrels" / "test.tsv").open("a") as handle:
        handle.write("q3\td3\t1\n")
    return beir


def test_eval_skips_an_empty_query_by_name(tiny_beir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", "--dataset", str(_with_empty_query(tiny_beir)), "--method", "bm25", "--json"])
    assert code == 0
    out, err = capsys.readouterr()
    assert "'q3'" in err and "empty" in err
    assert json.loads(out.strip().splitlines()[-1])["bm25"]["ndcg@10"] == pytest.approx(2 / 3)


def test_eval_refuses_a_store_holding_other_documents(
    demo_store: Path, tiny_beir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = main(["search", "vitamin", "--store", str(demo_store), "--method", "bm25", "--json"])
    assert before == 0
    capsys.readouterr()
    assert main(["eval", "--dataset", str(tiny_beir), "--method", "bm25", "--store", str(demo_store)]) == 2
    assert "did not index" in capsys.readouterr().err
    from lens_rag.stores.embedded import EmbeddedStore

    with EmbeddedStore(demo_store) as store:
        assert store.count_documents() == 6  # untouched
    own = tmp_path / "eval-store"
    for _ in range(2):  # created by eval, then reused
        assert main(["eval", "--dataset", str(tiny_beir), "--method", "bm25", "--store", str(own), "-q"]) == 0
    assert capsys.readouterr().err == ""
    with EmbeddedStore(own) as store:
        assert store.count_documents() == 3
        assert store.info["eval_dataset"]["name"] == tiny_beir.name


def test_ask_without_an_llm_says_which_model_answers(
    demo_store: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lens_rag import cli

    monkeypatch.delenv("LENS_RAG_LLM_URL", raising=False)
    made: list[object] = []

    class Stop(Exception):
        pass

    def fake_client(*args: object, **kwargs: object) -> object:
        made.append(args)
        raise Stop

    monkeypatch.setattr("lens_rag.llm.base.make_llm_client", fake_client)
    args = cli.build_parser().parse_args(["ask", "why?", "--store", str(demo_store)])
    args.quiet = False
    with pytest.raises(Stop):
        cli._llm_factory(args)()
    err = capsys.readouterr().err
    assert "no LLM configured" in err and "--llm-url" in err and "LENS_RAG_LLM_URL" in err
    args = cli.build_parser().parse_args(["ask", "why?", "--store", "x", "--llm-url", "http://127.0.0.1:1/v1"])
    args.quiet = False
    with pytest.raises(Stop):
        cli._llm_factory(args)()
    assert capsys.readouterr().err == "" and len(made) == 2


def test_a_run_that_fails_midway_says_how_many_documents_it_committed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lens_rag.stores.embedded import EmbeddedStore

    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("\n".join(json.dumps({"_id": f"d{i}", "text": f"passage number {i}"}) for i in range(600)))
    real_write = EmbeddedStore.write_documents
    calls = []

    def failing_write(self: EmbeddedStore, documents: list) -> object:
        calls.append(len(documents))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_write(self, documents)

    monkeypatch.setattr(EmbeddedStore, "write_documents", failing_write)
    assert _index(jsonl, tmp_path / "s") == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "256 documents were committed" in err
    assert "run the same command again" in err
    monkeypatch.setattr(EmbeddedStore, "write_documents", real_write)
    with EmbeddedStore(tmp_path / "s") as store:
        assert store.count_documents() == 256
