"""examples/langchain_qa.py runs end to end offline: embedded store, real models, the real local LLM server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("langchain_openai")

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_langchain_qa_example_streams_an_answer_with_sources(llm_url, llm_model):
    env = {**os.environ, "LENS_RAG_LLM_URL": llm_url, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    if llm_model:
        env["LENS_RAG_LLM_MODEL"] = llm_model
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "langchain_qa.py"), "--question", "What causes scurvy?", "-k", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    ).stdout
    answer = out.split("A: ", 1)[1]
    assert len(answer.split("passages", 1)[0].strip()) > 0
    assert "vitamins.md#0" in out  # the passage about scurvy is retrieved and listed with its ranks
    assert "bm25 #" in out or "sparse #" in out
