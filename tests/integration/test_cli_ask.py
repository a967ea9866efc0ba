"""`lens-rag ask` end to end: embedded store, real models, the real local LLM server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lens_rag.cli import main

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


def test_ask_cites_a_retrieved_passage(
    llm_url: str, llm_model: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "store")
    assert main(["index", str(EXAMPLES), "--store", store, "--no-progress"]) == 0
    capsys.readouterr()
    argv = ["ask", "What causes scurvy?", "--store", store, "--llm-url", llm_url, "--json", "--top-k", "3"]
    if llm_model:
        argv += ["--llm-model", llm_model]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    passage_ids = [p["id"] for p in out["passages"]]
    assert len(passage_ids) == 3
    assert out["answer"].strip()
    # Structure, not wording: a 135M model writes shaky prose, but a citation must point at a passage shown.
    assert out["citations"], out
    assert all(c["document_id"] in passage_ids for c in out["citations"])


def test_ask_without_a_server_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "store")
    assert main(["index", str(EXAMPLES), "--store", store, "--no-progress", "--no-sparse", "--no-dense"]) == 0
    capsys.readouterr()
    code = main(
        ["ask", "What causes scurvy?", "--store", store, "--method", "bm25", "--llm-url", "http://127.0.0.1:9/v1",
         "--llm-model", "m", "--llm-timeout", "2"]
    )  # fmt: skip
    assert code == 2
    assert "127.0.0.1:9" in capsys.readouterr().err
