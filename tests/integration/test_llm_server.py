"""The OpenAI-compatible client against the real local llama.cpp server, a slow server and a server that dies."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from _tiny_bm25 import TinyBM25

from lens_rag.errors import LLMError, LLMTimeoutError
from lens_rag.lamer import LameRRetriever
from lens_rag.llm import LLMFallbackWarning, OpenAICompatibleClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(llm_url, llm_model) -> OpenAICompatibleClient:
    return OpenAICompatibleClient(base_url=llm_url, model=llm_model, timeout=120.0)


def test_openai_package_talks_to_the_local_server(llm_url):
    import openai

    raw = openai.OpenAI(base_url=llm_url, api_key="sk-no-key-required", timeout=120)
    model = next(iter(raw.models.list())).id
    response = raw.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0
    )
    assert response.choices[0].message.content.strip()


def test_model_is_discovered_from_the_server(llm_url):
    assert OpenAICompatibleClient(base_url=llm_url).model


def test_n_samples_are_non_empty(client):
    out = client.generate("Write one sentence about the sea.", n=3, temperature=1.0, max_tokens=24)
    assert len(out) == 3 and all(text.strip() for text in out)
    # llama-cpp-python's server returns one choice whatever n says: auto mode must have learnt that.
    assert client._native_n is False


async def test_async_generation(client):
    out = await client.generate_async("Name a fruit.", n=2, temperature=1.0, max_tokens=8)
    assert len(out) == 2 and all(text.strip() for text in out)


def test_async_model_lookup_and_two_successive_event_loops(llm_url):
    import asyncio

    fresh = OpenAICompatibleClient(base_url=llm_url, timeout=120.0)  # no model: looked up asynchronously

    async def ask() -> tuple[list[str], str]:
        out = await fresh.generate_async("Name a colour.", n=2, temperature=0.0, max_tokens=8)
        return out, await fresh.model_async()

    first, model = asyncio.run(ask())
    second, _ = asyncio.run(ask())  # a new loop: the first loop's HTTP client must not be reused
    assert model and fresh._client is None  # the sync client was never needed
    assert len(first) == 2 and first[0] == first[1] and first[0].strip()  # greedy n: one answer, twice
    assert len(second) == 2 and second[0].strip()


# --- a slow server: the timeout must be honoured ---------------------------------------------------------------------


class _SlowHandler(BaseHTTPRequestHandler):
    delay = 20.0
    release = threading.Event()

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):  # /v1/models answers at once
        self._send({"object": "list", "data": [{"id": "slow", "object": "model", "owned_by": "test"}]})

    def do_POST(self):
        self.release.wait(self.delay)  # sleeps, but lets the fixture end the request early
        self._send({"id": "x", "object": "chat.completion", "created": 0, "model": "slow", "choices": []})

    def _send(self, body):
        data = json.dumps(body).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def slow_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    server.daemon_threads = True
    _SlowHandler.release.clear()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        _SlowHandler.release.set()
        server.shutdown()
        server.server_close()


def test_timeout_is_honoured(slow_url):
    client = OpenAICompatibleClient(base_url=slow_url, model="slow", timeout=1.0, max_retries=0)
    start = time.perf_counter()
    with pytest.raises(LLMTimeoutError, match=r"timeout=1.0 s"):
        client.generate("hello", max_tokens=4)
    assert time.perf_counter() - start < 5.0  # the server would have taken 20 s


def test_timeout_with_retries_is_bounded(slow_url):
    client = OpenAICompatibleClient(base_url=slow_url, model="slow", timeout=1.0, max_retries=1)
    start = time.perf_counter()
    with pytest.raises(LLMTimeoutError):
        client.generate("hello", max_tokens=4)
    elapsed = time.perf_counter() - start
    assert 2.0 <= elapsed < 8.0  # two attempts of 1 s plus one backoff


def test_lamer_falls_back_when_the_llm_is_too_slow(slow_url):
    bm25 = TinyBM25()
    llm = OpenAICompatibleClient(base_url=slow_url, timeout=1.0, max_retries=0)  # model discovered: "slow"
    lamer = LameRRetriever(bm25, llm, n_answers=2)
    query = "Does vitamin D reduce fractures?"
    with pytest.warns(LLMFallbackWarning, match="fell back to the original query"):
        hits = lamer.retrieve(query, top_k=3)
    assert [h.id for h in hits] == [h.id for h in bm25.retrieve(query, top_k=3)]
    assert hits[0].id == "vitd" and lamer.stats.fallbacks == 1


# --- a server that stops mid-run -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/models", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def throwaway_server(tmp_path) -> Iterator[tuple[str, subprocess.Popen]]:
    """A second, private llama.cpp server (bounded start-up time) that the test may kill."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is installed by scripts/llm-server.sh")
    from lens_rag.models import smollm2_gguf_path

    port = _free_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf_path()), "--host", "127.0.0.1",
         "--port", str(port), "--n_threads", "1", "--n_ctx", "1024"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while not _answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"throwaway llama server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        log.close()


def test_server_stopped_mid_run_falls_back_with_warning(throwaway_server):
    url, proc = throwaway_server
    bm25 = TinyBM25()
    llm = OpenAICompatibleClient(base_url=url, timeout=60.0, max_retries=1)
    lamer = LameRRetriever(bm25, llm, n_candidates=3, n_answers=2, max_tokens=16)

    first = lamer.augment("Does aspirin prevent heart attacks?")
    assert not first.fell_back and len(first.answers) == 2

    proc.kill()
    proc.wait(timeout=30)

    query = "Does vitamin D reduce fractures?"
    with pytest.warns(LLMFallbackWarning, match="could not connect"):
        hits = lamer.retrieve(query, top_k=3)
    assert hits and hits[0].id == "vitd"  # the original query's BM25 results, not an empty list
    assert lamer.stats.fallbacks == 1
    with pytest.raises(LLMError, match="could not connect"):
        llm.generate("still there?")
