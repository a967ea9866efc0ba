"""The server going away mid-run: a clear ConnectionFailedError after bounded retries, no data loss on restart.

Runs its own throwaway instance (scripts/elasticsearch.sh with ES_INSTANCE) so the shared server is untouched.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from lens_rag.documents import Document
from lens_rag.errors import ConnectionFailedError
from lens_rag.stores.elasticsearch import ElasticsearchStore

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "elasticsearch.sh"


def _script(command: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/elasticsearch.sh {command} failed:\n{done.stderr[-3000:]}")
    return done.stdout


@pytest.fixture
def throwaway_instance(es_url):
    """A second, private Elasticsearch node; yields (url, env) and stops it afterwards."""
    if os.environ.get("LENS_RAG_SKIP_ES_OUTAGE"):
        pytest.skip("LENS_RAG_SKIP_ES_OUTAGE is set")
    env = {k: v for k, v in os.environ.items() if k not in ("ES_URL", "ES_API_KEY", "ES_USERNAME", "ES_PASSWORD")}
    env.update(ES_INSTANCE=f"outage-{uuid.uuid4().hex[:8]}", ES_HEAP="512m")
    out = _script("start", env)
    url = out.strip().splitlines()[-1].split("=", 1)[1]
    env["ES_PORT"] = url.rsplit(":", 1)[1]  # restart on the same port
    try:
        yield url, env
    finally:
        _script("stop", {**env, "ES_PURGE": "1"})


def test_server_going_away_fails_clearly_and_keeps_data(throwaway_instance):
    url, env = throwaway_instance
    store = ElasticsearchStore(url, index="outage", max_retries=2, request_timeout=3, progress=False)
    docs = [Document(id=f"d{i}", content=f"document number {i}", meta={"i": i}) for i in range(50)]
    assert store.write_documents(docs).written == 50

    _script("stop", env)
    started = time.monotonic()
    with pytest.raises(
        ConnectionFailedError, match=r"did not answer after 2 retries.*scripts/elasticsearch\.sh status"
    ):
        store.write_documents([Document(id="late", content="written while the server is down")])
    with pytest.raises(ConnectionFailedError):
        store.search_bm25("document")
    assert time.monotonic() - started < 60  # bounded: retries with backoff, not a hang

    _script("start", env)
    store.close()
    again = ElasticsearchStore(url, index="outage", progress=False)
    assert again.count_documents() == 50  # nothing acknowledged was lost
    assert again.write_documents([Document(id="late", content="written after the restart")]).written == 1
    assert again.count_documents() == 51
    again.close()
