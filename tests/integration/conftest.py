"""Fixtures shared by the integration tier (real services and models)."""

from __future__ import annotations

import os

import pytest


def _missing(reason: str) -> None:
    """Skip locally when a service is not running; fail in CI (.ci/run sets LENS_RAG_REQUIRE_SERVICES)."""
    if os.environ.get("LENS_RAG_REQUIRE_SERVICES"):
        pytest.fail(reason)
    pytest.skip(reason)


# --- local LLM server (scripts/llm-server.sh) ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def llm_url() -> str:
    """The local LLM server's URL, from LENS_RAG_LLM_URL (set by `eval "$(scripts/llm-server.sh start)"`)."""
    url = os.environ.get("LENS_RAG_LLM_URL")
    if not url:
        _missing('LENS_RAG_LLM_URL is not set; start the local LLM server: eval "$(scripts/llm-server.sh start)"')
    return url  # type: ignore[return-value]


@pytest.fixture(scope="session")
def llm_model() -> str | None:
    """The served model name (LENS_RAG_LLM_MODEL), or None to let the client ask the server."""
    return os.environ.get("LENS_RAG_LLM_MODEL") or None


# --- Elasticsearch (scripts/elasticsearch.sh) ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def es_url() -> str:
    """The Elasticsearch URL from ES_URL (set by `eval "$(scripts/elasticsearch.sh start)"`)."""
    url = os.environ.get("ES_URL")
    if not url:
        _missing('ES_URL is not set; start Elasticsearch first: eval "$(scripts/elasticsearch.sh start)"')
    return url  # type: ignore[return-value]


# --- BEIR SciFact (never copied into the repository) ------------------------------------------------------------------


@pytest.fixture(scope="session")
def scifact():
    """BEIR SciFact test split from LENS_RAG_SCIFACT (default: the shared dataset folder)."""
    from pathlib import Path

    folder = Path(os.environ.get("LENS_RAG_SCIFACT", "/work/shared/datasets/scifact"))
    if not (folder / "corpus.jsonl").is_file():
        _missing(f"SciFact not found at {folder}; set LENS_RAG_SCIFACT to a BEIR SciFact folder")
    from lens_rag.evaluation import load_beir

    return load_beir(folder)
