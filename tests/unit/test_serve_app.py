"""`lens-rag serve` app with fake retrievers and LLMs: OpenAI schema, streaming, auth, limits, failures."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from _llm_fakes import FakeLLM, FakeRetriever, make_docs

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from lens_rag.documents import Document
from lens_rag.errors import LLMError, LLMTimeoutError, StoreError
from lens_rag.serve import NO_ANSWER, ServeConfig, ServeLimits, create_app

pytestmark = pytest.mark.unit

ANSWER = "Passage number 1 is about topic 1 [1]. Pizza tastes wonderful in Naples every summer."


def _app(llm: Any = None, retriever: Any = None, **config: Any) -> Any:
    retrievers: dict[str, Any] = {}

    def retriever_for(method: str) -> Any:
        retrievers[method] = retriever if retriever is not None else FakeRetriever(name=method)
        return retrievers[method]

    config.setdefault("methods", ("hybrid", "bm25"))
    app = create_app(retriever_for, FakeLLM([ANSWER]) if llm is None else llm, ServeConfig(**config))
    app.state.retrievers = retrievers
    return app


def _chat(client: TestClient, content: str = "topic 1?", **body: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": content}], **body})


def _events(text: str) -> list[Any]:
    out = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_chat_completion_has_openai_shape_citations_and_attribution() -> None:
    client = TestClient(_app())
    body = _chat(client).json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "lens-rag:hybrid"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": ANSWER}
    lens = body["lens_rag"]
    assert lens["answer_generated"] is True
    assert [c["number"] for c in lens["citations"]] == [1]
    assert lens["citations"][0]["id"] == "d0" and lens["citations"][0]["title"] == "T0"
    assert [p["id"] for p in lens["passages"]] == ["d0", "d1", "d2", "d3", "d4"]  # default top_k 5
    assert {"id", "title", "snippet", "score", "rank", "sources", "content"} <= set(lens["passages"][0])
    # Attribution: the first sentence is supported by passage 1, the pizza sentence by nothing.
    statuses = [(a["status"], a["passage_number"]) for a in lens["attributions"]]
    assert statuses == [("supported", 1), ("unsupported", None)]
    assert [c["number"] for c in lens["attributed_citations"]] == [1]


def test_stream_sends_passages_first_pieces_then_the_full_field_and_done() -> None:
    client = TestClient(_app())
    response = _chat(client, stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    assert events[-1] == "[DONE]"
    first, last = events[0], events[-2]
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert len(first["lens_rag"]["passages"]) == 5
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == ANSWER  # FakeLLM cannot stream: one piece
    assert last["choices"][0]["finish_reason"] == "stop"
    assert [c["number"] for c in last["lens_rag"]["citations"]] == [1]
    assert last["lens_rag"]["attributions"][0]["passage_number"] == 1


class StreamingLLM(FakeLLM):
    async def stream_async(self, prompt: Any, *, temperature: float = 0.0, max_tokens: int = 256) -> Any:
        self.calls.append({"prompt": prompt, "max_tokens": max_tokens})
        for word in ["Topic ", "1 ", "[1]."]:
            await asyncio.sleep(0)
            yield word


def test_stream_forwards_each_piece_of_a_streaming_llm() -> None:
    client = TestClient(_app(llm=StreamingLLM()))
    events = _events(_chat(client, stream=True, max_tokens=7).text)
    pieces = [e["choices"][0]["delta"]["content"] for e in events[1:-2] if e["choices"][0]["delta"].get("content")]
    assert pieces == ["Topic ", "1 ", "[1]."]
    assert events[-2]["lens_rag"]["streamed"] is True


def test_model_name_or_method_field_picks_the_retriever_and_unknown_is_422() -> None:
    app = _app()
    client = TestClient(app)
    assert _chat(client, model="lens-rag:bm25").json()["lens_rag"]["method"] == "bm25"
    assert _chat(client, method="bm25", model="lens-rag:hybrid").json()["model"] == "lens-rag:bm25"
    bad = _chat(client, method="dense")
    assert bad.status_code == 422
    assert "hybrid, bm25" in bad.json()["error"]["message"]
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["lens-rag", "lens-rag:hybrid", "lens-rag:bm25"]


def test_follow_up_is_condensed_before_retrieval() -> None:
    llm = FakeLLM(["How is topic seven treated?"])
    app = _app(llm=llm)
    client = TestClient(app)
    messages = [
        {"role": "user", "content": "Tell me about topic seven"},
        {"role": "assistant", "content": "Topic seven is a passage."},
        {"role": "user", "content": "How is it treated?"},
    ]
    body = client.post("/v1/chat/completions", json={"messages": messages}).json()
    assert body["lens_rag"]["condensed"] == "llm"
    assert body["lens_rag"]["query"] == "How is topic seven treated?"
    assert app.state.retrievers["hybrid"].queries[-1][0] == "How is topic seven treated?"


def test_search_returns_hits_with_source_ranks() -> None:
    client = TestClient(_app())
    body = client.post("/v1/search", json={"query": "topic", "method": "bm25", "top_k": 3}).json()
    assert body["method"] == "bm25"
    assert [h["id"] for h in body["hits"]] == ["d0", "d1", "d2"]
    assert [h["rank"] for h in body["hits"]] == [1, 2, 3]


def test_healthz_models_docs_and_page() -> None:
    client = TestClient(_app(api_key="k" * 12))
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["auth"] is True and health["methods"] == ["hybrid", "bm25"]
    assert client.get("/openapi.json").json()["paths"]["/v1/chat/completions"]
    page = client.get("/")
    assert page.status_code == 200 and "<textarea" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "innerHTML" not in page.text  # every server text goes in as textContent


# -- auth ---------------------------------------------------------------------------------------------------------


def test_api_key_is_required_on_the_api_but_not_on_health_or_page() -> None:
    client = TestClient(_app(api_key="s3cret-key"))
    for response in (_chat(client), client.get("/v1/models"), client.post("/v1/search", json={"query": "x"})):
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
        assert response.headers["www-authenticate"] == "Bearer"
    bad = client.post("/v1/search", json={"query": "x"}, headers={"Authorization": "Bearer wrong-key"})
    assert bad.status_code == 401
    good = client.get("/v1/models", headers={"Authorization": "Bearer s3cret-key"})
    assert good.status_code == 200
    assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200


# -- limits -------------------------------------------------------------------------------------------------------


def test_body_over_the_limit_is_413_declared_or_chunked() -> None:
    client = TestClient(_app(limits=ServeLimits(max_body_bytes=1000)))
    big = _chat(client, "x" * 1500)
    assert big.status_code == 413
    assert "1000 bytes" in big.json()["error"]["message"]

    def chunks() -> Any:
        yield b'{"messages": ['
        for _ in range(10):
            yield b" " * 200
        yield b"]}"

    chunked = client.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413


def test_message_count_query_length_and_top_k_limits_are_422_with_the_limit() -> None:
    client = TestClient(_app(limits=ServeLimits(max_messages=3, max_query_chars=50, max_top_k=4)))
    many = [{"role": "user", "content": "q"}] * 4
    r = client.post("/v1/chat/completions", json={"messages": many})
    assert r.status_code == 422 and "4 messages; the limit is 3" in r.json()["error"]["message"]
    r = _chat(client, "x" * 51)
    assert r.status_code == 422 and "51 characters long; the limit is 50" in r.json()["error"]["message"]
    r = _chat(client, top_k=5)
    assert r.status_code == 422 and "the limit is 4" in r.json()["error"]["message"]
    r = client.post("/v1/search", json={"query": "y" * 60})
    assert r.status_code == 422
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "system", "content": "hi"}]})
    assert r.status_code == 422 and "no 'user' message" in r.json()["error"]["message"]
    r = _chat(client, "   ")
    assert r.status_code == 422 and "empty" in r.json()["error"]["message"]
    r = client.post("/v1/chat/completions", json={"messages": "nope"})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("invalid request: messages")


def test_max_tokens_is_clipped_to_the_server_limit() -> None:
    llm = FakeLLM([ANSWER])
    client = TestClient(_app(llm=llm, limits=ServeLimits(max_tokens=40)))
    assert _chat(client, max_tokens=4000).status_code == 200
    assert llm.calls[-1]["max_tokens"] == 40


class BlockingRetriever(FakeRetriever):
    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.entered = 0

    async def retrieve_async(self, query: str, top_k: int = 10, filters: Any = None) -> Any:
        self.entered += 1
        await self.gate.wait()
        return self.retrieve(query, top_k, filters)


async def _saturate(limits: ServeLimits) -> tuple[list[int], str]:
    retriever = BlockingRetriever()
    app = _app(retriever=retriever, limits=limits)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first = asyncio.create_task(client.post("/v1/search", json={"query": "a"}))
        while retriever.entered < 1:
            await asyncio.sleep(0.01)
        second = await client.post("/v1/search", json={"query": "b"})
        retriever.gate.set()
        done = await first
    return [done.status_code, second.status_code], second.json()["error"]["message"]


async def test_saturated_server_answers_429_when_nobody_may_wait() -> None:
    codes, message = await _saturate(ServeLimits(max_concurrency=1, max_waiting=0))
    assert codes == [200, 429]
    assert "at its limit" in message


async def test_saturated_server_answers_503_after_the_queue_timeout() -> None:
    codes, message = await _saturate(ServeLimits(max_concurrency=1, max_waiting=4, queue_timeout=0.2))
    assert codes == [200, 503]
    assert "no slot became free within 0.2 s" in message


def test_slots_are_released_after_streams_and_errors() -> None:
    app = _app(llm=FakeLLM(error=LLMError("down")), limits=ServeLimits(max_concurrency=1, max_waiting=0))
    client = TestClient(app)
    for _ in range(3):
        assert _chat(client, stream=True).status_code == 200
        assert _chat(client).status_code == 200
        assert _chat(client, top_k=99).status_code == 422
    assert app.state.limiter.active == 0


# -- failures -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [LLMError("connection refused at http://10.0.0.5:8080"), LLMTimeoutError("slow")])
def test_llm_outage_still_returns_the_sources(error: Exception) -> None:
    client = TestClient(_app(llm=FakeLLM(error=error)))
    body = _chat(client).json()
    text = body["choices"][0]["message"]["content"]
    assert text.startswith(NO_ANSWER)
    assert "10.0.0.5" not in json.dumps(body)  # the LLM's address stays in the server log
    assert body["lens_rag"]["answer_generated"] is False
    assert len(body["lens_rag"]["passages"]) == 5
    events = _events(_chat(client, stream=True).text)
    streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert streamed.startswith(NO_ANSWER)
    assert events[-2]["lens_rag"]["answer_generated"] is False and len(events[-2]["lens_rag"]["passages"]) == 5


def test_no_llm_configured_serves_sources_only() -> None:
    app = create_app(lambda m: FakeRetriever(), None, ServeConfig())
    body = _chat(TestClient(app)).json()
    assert body["choices"][0]["message"]["content"].startswith(NO_ANSWER)
    assert body["lens_rag"]["passages"]


class BrokenRetriever(FakeRetriever):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def retrieve_async(self, query: str, top_k: int = 10, filters: Any = None) -> Any:
        raise self.error


def test_unexpected_errors_carry_no_stack_trace_and_store_errors_are_503() -> None:
    client = TestClient(
        _app(retriever=BrokenRetriever(RuntimeError("secret /etc/path detail"))), raise_server_exceptions=False
    )
    r = _chat(client)
    assert r.status_code == 500
    assert r.json()["error"]["message"] == "internal server error (see the server log)"
    assert "Traceback" not in r.text and "secret" not in r.text
    client = TestClient(_app(retriever=BrokenRetriever(StoreError("es down at 10.1.1.1"))))
    r = client.post("/v1/search", json={"query": "x"})
    assert r.status_code == 503 and "10.1.1.1" not in r.text


def test_cors_is_off_by_default_and_on_for_configured_origins() -> None:
    preflight = {"Origin": "https://chat.example", "Access-Control-Request-Method": "POST"}
    off = TestClient(_app()).options("/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in off.headers
    client = TestClient(_app(cors_origins=("https://chat.example",)))
    on = client.options("/v1/chat/completions", headers=preflight)
    assert on.headers["access-control-allow-origin"] == "https://chat.example"
    other = client.options("/v1/chat/completions", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_passage_text_is_returned_verbatim_as_json_data() -> None:
    docs = [Document(id="x", content="<script>alert(1)</script> scurvy", meta={"title": "<b>t</b>"}), *make_docs(2)]
    client = TestClient(_app(retriever=FakeRetriever(docs)))
    body = client.post("/v1/search", json={"query": "x"}).json()
    assert body["hits"][0]["content"] == "<script>alert(1)</script> scurvy"  # data; the page shows it as text


class SilentStreamLLM(FakeLLM):
    async def stream_async(self, prompt: Any, *, temperature: float = 0.0, max_tokens: int = 256) -> Any:
        for _ in ():
            yield ""


def test_a_stream_that_ends_without_text_is_asked_again_unstreamed() -> None:
    llm = SilentStreamLLM([ANSWER])
    events = _events(_chat(TestClient(_app(llm=llm)), stream=True).text)
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == ANSWER
    assert len(llm.calls) == 1  # the unstreamed retry
    assert events[-2]["lens_rag"]["streamed"] is False
    assert events[-2]["lens_rag"]["citations"][0]["number"] == 1
