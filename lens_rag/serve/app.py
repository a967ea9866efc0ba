"""The FastAPI app behind ``lens-rag serve``: an OpenAI-compatible chat API with citations, search, and a chat page.

Endpoints (``/docs`` shows them with their schemas):

- ``POST /v1/chat/completions`` — OpenAI's chat-completions schema, ``stream`` true (server-sent events) or
  false. The last user message is the question; with earlier turns it is first condensed into a standalone
  search query (:mod:`lens_rag.serve.condense`). The answer is the model's, citing passages as ``[n]``; the
  extra top-level field ``lens_rag`` (ignored by OpenAI clients) holds the retrieved passages (id, title,
  snippet, content, score, per-source ranks), the model's inline citations, and the post-hoc attribution of
  every answer sentence (:mod:`lens_rag.attribution`). In a stream, the first chunk carries the passages and
  the last one the full ``lens_rag`` field. When the LLM fails or times out the answer says
  "No answer generated" and the sources are still returned (HTTP 200, ``lens_rag.answer_generated: false``).
- ``POST /v1/search`` — retrieval only: ``{"query", "method", "top_k", "filters"}`` → hits.
- ``GET /v1/models`` — ``lens-rag`` (the default method) and ``lens-rag:METHOD`` for each method served; the
  model name picks the retrieval method, so a chat front end's model menu is a method switch.
- ``GET /healthz`` — liveness, document count, methods, whether auth is on. ``GET /`` — the chat page.

Safety: with an API key, every ``/v1`` route needs ``Authorization: Bearer KEY`` (401 otherwise); bodies,
message counts, query lengths and ``top_k`` are limited (413/422); a concurrency limit answers 429/503
instead of queueing forever; errors are JSON in OpenAI's ``{"error": {...}}`` shape and never carry a stack
trace; CORS is off unless origins are configured.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from lens_rag.answer import (
    ANSWER_EXAMPLE,
    ANSWER_SYSTEM_PROMPT,
    ANSWER_TEMPLATE,
    Answer,
    answer_from_text,
    answer_question_async,
    build_answer_prompt,
)
from lens_rag.attribution import DEFAULT_THRESHOLD, Embed, SentenceAttribution, attribute_answer
from lens_rag.documents import ScoredDocument
from lens_rag.errors import ConfigurationError, LensRagError, LLMError, LLMTimeoutError
from lens_rag.llm.base import LLMClient, model_name_async
from lens_rag.retrieval import Retriever
from lens_rag.serve.condense import Condensed, condense_query_async
from lens_rag.serve.limits import BodySizeLimit, ConcurrencyLimiter, Saturated, ServeLimits
from lens_rag.serve.schemas import ChatRequest, SearchRequest, message_text

__all__ = ["NO_ANSWER", "ServeConfig", "ServeError", "create_app"]

logger = logging.getLogger(__name__)

#: The start of the answer when the LLM did not produce one; the sources follow.
NO_ANSWER = "No answer generated"
#: Shown when the model returned nothing (the sources still follow).
EMPTY_ANSWER = "(the model returned an empty answer)"
SNIPPET_CHARS = 240
CONTENT_CHARS = 4000


@dataclass
class ServeConfig:
    """What the served app offers and allows.

    :param methods: the retrieval methods clients may pick (the first is the default unless `default_method`).
    :param default_method: the method used when a request names none.
    :param top_k: passages given to the LLM by default.
    :param max_tokens: answer tokens by default.
    :param temperature: sampling temperature by default (0: greedy, reproducible).
    :param api_key: when set, ``/v1`` routes need ``Authorization: Bearer <api_key>``.
    :param cors_origins: origins allowed to call the API from a browser; empty: CORS off.
    :param limits: request and concurrency limits.
    :param model_id: the model name clients see (``lens-rag`` and ``lens-rag:METHOD``).
    :param condense_timeout: seconds the LLM may take to rewrite a follow-up before the keyword fallback.
    :param attribution_threshold: least support for an attributed citation.
    :param title: shown on the chat page.
    """

    methods: Sequence[str] = ("hybrid",)
    default_method: str | None = None
    top_k: int = 5
    max_tokens: int = 256
    temperature: float = 0.0
    api_key: str | None = None
    cors_origins: Sequence[str] = ()
    limits: ServeLimits = field(default_factory=ServeLimits)
    model_id: str = "lens-rag"
    condense_timeout: float = 20.0
    attribution_threshold: float = DEFAULT_THRESHOLD
    title: str = "lens-rag"

    def __post_init__(self) -> None:
        if not self.methods:
            raise ConfigurationError("methods is empty; serve at least one retrieval method, e.g. ('hybrid',)")
        self.methods = tuple(dict.fromkeys(self.methods))
        if self.default_method is None:
            self.default_method = self.methods[0]
        elif self.default_method not in self.methods:
            self.methods = (self.default_method, *self.methods)
        if not isinstance(self.top_k, int) or self.top_k < 1:
            raise ConfigurationError(f"top_k must be an integer >= 1, got {self.top_k!r}")


class ServeError(Exception):
    """An error answered to the client as ``{"error": {...}}`` with `status` (never a stack trace)."""

    def __init__(self, status: int, message: str, code: str = "invalid_request", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers


def _error_body(message: str, code: str, status: int) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 401:
        kind = "authentication_error"
    return {"error": {"message": message, "type": kind, "code": code, "param": None}}


class _Fixed:
    """A retriever that returns passages already retrieved (so the core's answering path reuses them)."""

    name = "retrieved"

    def __init__(self, passages: list[ScoredDocument]) -> None:
        self.passages = passages

    def retrieve(self, query: str, top_k: int = 10, filters: Any = None) -> list[ScoredDocument]:
        return self.passages[:top_k]

    async def retrieve_async(self, query: str, top_k: int = 10, filters: Any = None) -> list[ScoredDocument]:
        return self.passages[:top_k]


def _snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rstrip() + "…"


def passage_json(number: int | None, hit: ScoredDocument) -> dict[str, Any]:
    """A retrieved passage as JSON: id, title, snippet, content (cut), score, rank and each source's score/rank."""
    meta = hit.document.meta if isinstance(hit.document.meta, dict) else {}
    content = hit.document.content
    return {
        **({"number": number} if number is not None else {}),
        "id": hit.id,
        "title": meta.get("title"),
        "snippet": _snippet(content),
        "content": content if len(content) <= CONTENT_CHARS else content[:CONTENT_CHARS] + "…",
        "score": hit.score,
        "rank": hit.rank,
        "sources": {name: {"score": s.score, "rank": s.rank} for name, s in hit.sources.items()},
        "meta": {k: v for k, v in meta.items() if isinstance(v, str | int | float | bool) or v is None},
    }


async def _stream_text(llm: LLMClient, messages: list[dict[str, str]], temperature: float, max_tokens: int) -> Any:
    """The LLM's answer piece by piece: its ``stream_async`` when it has one, else one piece."""
    stream = getattr(llm, "stream_async", None)
    if callable(stream):
        async for piece in stream(messages, temperature=temperature, max_tokens=max_tokens):
            yield piece
        return
    yield (await llm.generate_async(messages, n=1, temperature=temperature, max_tokens=max_tokens))[0]


def _llm_failure_text(error: Exception) -> str:
    why = (
        "the language model did not answer in time"
        if isinstance(error, LLMTimeoutError | TimeoutError)
        else ("the language model is unavailable")
    )
    return f"{NO_ANSWER}: {why}. The retrieved sources are listed with this reply."


def create_app(
    retriever_for: Callable[[str], Retriever],
    llm: LLMClient | None,
    config: ServeConfig | None = None,
    *,
    embedder: Callable[[], Embed | None] | None = None,
    count_documents: Callable[[], int] | None = None,
) -> FastAPI:
    """Build the app.

    :param retriever_for: the retriever for a method name (called once per method, in a worker thread; it may
        load models); raise :class:`~lens_rag.errors.ConfigurationError` for a method it cannot serve.
    :param llm: the LLM that answers (and condenses follow-ups); `None` serves search and sources only.
    :param config: see :class:`ServeConfig`.
    :param embedder: returns the embedding function for attribution (called once, in a worker thread), or `None`
        for lexical-only attribution.
    :param count_documents: the store's document count, for ``/healthz``.
    """
    cfg = config or ServeConfig()
    limits = cfg.limits
    limiter = ConcurrencyLimiter(limits)
    retrievers: dict[str, Retriever] = {}
    build_lock = threading.Lock()
    embed_state: dict[str, Any] = {}

    app = FastAPI(
        title="lens-rag",
        version="1",
        description="Chat over your documents with cited answers (OpenAI-compatible) and hybrid search.",
    )
    app.state.limiter = limiter
    app.state.config = cfg

    # -- errors: OpenAI's shape, no stack traces -------------------------------------------------------------
    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse(_error_body(exc.message, exc.code, exc.status), exc.status, headers=exc.headers)

    @app.exception_handler(Saturated)
    async def _saturated(request: Request, exc: Saturated) -> JSONResponse:
        return JSONResponse(
            _error_body(exc.message, "server_busy", exc.status), exc.status, headers={"Retry-After": "1"}
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
        return JSONResponse(_error_body("invalid request: " + "; ".join(parts), "invalid_request", 422), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(_error_body(str(exc.detail), "http_error", exc.status_code), exc.status_code)

    @app.exception_handler(ConfigurationError)
    async def _config(request: Request, exc: ConfigurationError) -> JSONResponse:
        return JSONResponse(_error_body(str(exc), "invalid_request", 422), 422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error serving %s %s", request.method, request.url.path)
        return JSONResponse(_error_body("internal server error (see the server log)", "internal_error", 500), 500)

    # -- auth --------------------------------------------------------------------------------------------------
    async def require_key(request: Request) -> None:
        if cfg.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), cfg.api_key.encode()):
            raise ServeError(
                401,
                "missing or wrong API key: send 'Authorization: Bearer <key>' (the key given to lens-rag serve)",
                "invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    # -- helpers -----------------------------------------------------------------------------------------------
    def pick_method(requested: str | None, model: str | None) -> str:
        method = requested
        if method is None and model and model.startswith(cfg.model_id + ":"):
            method = model[len(cfg.model_id) + 1 :]
        method = method or cfg.default_method
        assert method is not None
        if method not in cfg.methods:
            raise ServeError(
                422, f"method {method!r} is not served here; use one of {', '.join(cfg.methods)}", "unknown_method"
            )
        return method

    def _build(method: str) -> Retriever:
        with build_lock:
            if method not in retrievers:
                retrievers[method] = retriever_for(method)
            return retrievers[method]

    async def get_retriever(method: str) -> Retriever:
        found = retrievers.get(method)
        return found if found is not None else await asyncio.to_thread(_build, method)

    def _embed() -> Embed | None:
        with build_lock:
            if "embed" not in embed_state:
                try:
                    embed_state["embed"] = embedder() if embedder is not None else None
                except Exception as e:  # attribution still works lexically
                    logger.warning("dense attribution is off: the embedder failed to load (%s)", e)
                    embed_state["embed"] = None
            return embed_state["embed"]  # type: ignore[no-any-return]

    def check_query(text: str, what: str) -> str:
        if not text.strip():
            raise ServeError(422, f"the {what} is empty; send the text to search for", "empty_query")
        if len(text) > limits.max_query_chars:
            raise ServeError(
                422,
                f"the {what} is {len(text)} characters long; the limit is {limits.max_query_chars}",
                "query_too_long",
            )
        return text

    def check_top_k(top_k: int) -> int:
        if top_k > limits.max_top_k:
            raise ServeError(422, f"top_k is {top_k}; the limit is {limits.max_top_k}", "top_k_too_large")
        return top_k

    async def retrieve(method: str, query: str, top_k: int, filters: Any) -> list[ScoredDocument]:
        retriever = await get_retriever(method)
        try:
            return await retriever.retrieve_async(query, top_k=top_k, filters=filters)
        except ConfigurationError:
            raise
        except LensRagError as e:
            logger.warning("retrieval failed for method %s: %s", method, e)
            raise ServeError(
                503, f"the search backend failed ({type(e).__name__}); retry later", "search_failed"
            ) from e

    async def attribute(text: str, passages: list[ScoredDocument]) -> list[SentenceAttribution]:
        if not text.strip() or not passages:
            return []
        try:
            embed = await asyncio.to_thread(_embed)
            return await asyncio.to_thread(
                attribute_answer, text, passages, embed=embed, threshold=cfg.attribution_threshold
            )
        except Exception as e:  # attribution is an extra: never lose the answer over it
            logger.warning("attribution failed: %s", e)
            return []

    def lens_field(
        condensed: Condensed,
        method: str,
        passages: list[ScoredDocument],
        answer: Answer | None,
        attributions: list[SentenceAttribution],
        error: str | None,
    ) -> dict[str, Any]:
        cited = {c.number for c in answer.citations} if answer is not None else set()
        attributed = sorted({a.passage_number for a in attributions if a.passage_number is not None})
        return {
            "query": condensed.query,
            "condensed": condensed.how,
            "method": method,
            "answer_generated": error is None,
            "error": error,
            "citations": [
                {**passage_json(c.number, passages[c.number - 1]), "kind": "inline"}
                for c in (answer.citations if answer is not None else [])
            ],
            "invalid_citations": list(answer.invalid_citations) if answer is not None else [],
            "attributed_citations": [{**passage_json(n, passages[n - 1]), "kind": "attributed"} for n in attributed],
            "attributions": [a.to_dict() for a in attributions],
            "passages": [
                {**passage_json(i, p), "cited": i in cited, "attributed": i in attributed}
                for i, p in enumerate(passages, start=1)
            ],
        }

    def answer_question_text(condensed: Condensed, history: list[tuple[str, str]], question: str) -> str:
        if condensed.how == "llm":
            return condensed.query
        if condensed.how == "keywords":
            earlier = [t for r, t in history[:-1] if r == "user"]
            if earlier:
                return f"{earlier[-1].strip()} Follow-up question: {question.strip()}"
        return question

    def completion_id() -> str:
        return f"chatcmpl-lensrag-{uuid.uuid4().hex[:24]}"

    async def acquire() -> Callable[[], None]:
        await limiter.acquire()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                limiter.release()

        return release

    # -- routes ------------------------------------------------------------------------------------------------
    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness and what is served (no auth: for load balancers and the chat page)."""
        documents = None
        if count_documents is not None:
            try:
                documents = await asyncio.to_thread(count_documents)
            except Exception as e:
                logger.warning("healthz: counting documents failed: %s", e)
        return {
            "status": "ok",
            "documents": documents,
            "methods": list(cfg.methods),
            "default_method": cfg.default_method,
            "llm": llm is not None,
            "auth": cfg.api_key is not None,
            "title": cfg.title,
            "active": limiter.active,
            "waiting": limiter.waiting,
        }

    @app.get("/v1/models", tags=["openai"], dependencies=[Depends(require_key)])
    async def models() -> dict[str, Any]:
        """``lens-rag`` (default method) and ``lens-rag:METHOD`` per served method."""
        ids = [cfg.model_id] + [f"{cfg.model_id}:{m}" for m in cfg.methods]
        return {
            "object": "list",
            "data": [{"id": i, "object": "model", "created": 0, "owned_by": "lens-rag"} for i in ids],
        }

    @app.post("/v1/search", tags=["search"], dependencies=[Depends(require_key)])
    async def search(body: SearchRequest) -> dict[str, Any]:
        """Retrieve passages for a query (no LLM)."""
        method = pick_method(body.method, None)
        query = check_query(body.query, "query")
        top_k = check_top_k(body.top_k)
        release = await acquire()
        try:
            hits = await retrieve(method, query, top_k, body.filters)
        finally:
            release()
        return {"query": query, "method": method, "hits": [passage_json(None, h) for h in hits]}

    @app.post("/v1/chat/completions", tags=["openai"], dependencies=[Depends(require_key)], response_model=None)
    async def chat(body: ChatRequest) -> Any:
        """Answer the last user message from the store, citing passages (OpenAI chat-completions schema)."""
        if len(body.messages) > limits.max_messages:
            raise ServeError(
                422,
                f"the conversation has {len(body.messages)} messages; the limit is {limits.max_messages} — "
                "start a new conversation or send only the recent turns",
                "too_many_messages",
            )
        turns = [(m.role, message_text(m)) for m in body.messages]
        if not any(role == "user" for role, _ in turns):
            raise ServeError(422, "the messages hold no 'user' message; the last user message is the question")
        last_user = max(i for i, (role, _) in enumerate(turns) if role == "user")
        question = check_query(turns[last_user][1], "question")
        history = [(r, t[-limits.max_history_chars :]) for r, t in turns[: last_user + 1]]
        method = pick_method(body.method, body.model)
        top_k = check_top_k(body.top_k if body.top_k is not None else cfg.top_k)
        requested = body.max_completion_tokens or body.max_tokens or cfg.max_tokens
        max_tokens = min(requested, limits.max_tokens)
        temperature = body.temperature if body.temperature is not None else cfg.temperature
        model_name = f"{cfg.model_id}:{method}"
        release = await acquire()
        try:
            condensed = await condense_query_async(
                history, llm, max_history_chars=limits.max_history_chars, timeout=cfg.condense_timeout
            )
            passages = await retrieve(method, condensed.query, top_k, body.filters)
            prompt_question = answer_question_text(condensed, history, question)
        except BaseException:
            release()
            raise
        if body.stream:
            stream = _chat_stream(
                release, completion_id(), model_name, condensed, method, passages, prompt_question, max_tokens,
                temperature, body.attribution,
            )  # fmt: skip
            return StreamingResponse(
                stream,
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                background=BackgroundTask(release),
            )
        try:
            answer: Answer | None = None
            error: str | None = None
            if llm is None:
                text, error = _llm_failure_text(LLMError("no LLM")), "no LLM is configured"
            else:
                try:
                    answer = await answer_question_async(
                        prompt_question, _Fixed(passages), llm, top_k=max(1, len(passages)),
                        max_tokens=max_tokens, temperature=temperature,
                    )  # fmt: skip
                    text = answer.answer_text
                except LLMError as e:
                    logger.warning("no answer generated: %s", e)
                    text, error = _llm_failure_text(e), type(e).__name__
            attributions = await attribute(text, passages) if answer is not None and body.attribution else []
        finally:
            release()
        return {
            "id": completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "lens_rag": lens_field(condensed, method, passages, answer, attributions, error),
        }

    async def _chat_stream(
        release: Callable[[], None],
        cid: str,
        model_name: str,
        condensed: Condensed,
        method: str,
        passages: list[ScoredDocument],
        question: str,
        max_tokens: int,
        temperature: float,
        with_attribution: bool,
    ) -> AsyncIterator[str]:
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, extra: dict[str, Any] | None = None) -> str:
            payload: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if extra is not None:
                payload["lens_rag"] = extra
            return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

        try:
            early = {
                "query": condensed.query,
                "condensed": condensed.how,
                "method": method,
                "passages": [passage_json(i, p) for i, p in enumerate(passages, start=1)],
            }
            yield chunk({"role": "assistant", "content": ""}, extra=early)
            pieces: list[str] = []
            error: str | None = None
            answer: Answer | None = None
            streamed = llm is not None and callable(getattr(llm, "stream_async", None))
            if llm is None:
                error = "no LLM is configured"
                yield chunk({"content": _llm_failure_text(LLMError("no LLM"))})
            else:
                messages = build_answer_prompt(question, passages, ANSWER_TEMPLATE, ANSWER_SYSTEM_PROMPT, 1200,
                                               ANSWER_EXAMPLE)  # fmt: skip
                try:
                    async for piece in _stream_text(llm, messages, temperature, max_tokens):
                        pieces.append(piece)
                        yield chunk({"content": piece})
                    if not "".join(pieces).strip():
                        # Some servers (llama-cpp-python with a long prompt) end a stream without a token while
                        # the same request unstreamed answers: ask once more, unstreamed.
                        logger.info("the LLM streamed an empty answer; asking again without streaming")
                        text = (await llm.generate_async(messages, n=1, temperature=temperature,
                                                         max_tokens=max_tokens))[0]  # fmt: skip
                        pieces, streamed = [text], False
                        yield chunk({"content": text if text.strip() else EMPTY_ANSWER})
                    answer = answer_from_text(question, "".join(pieces), passages, await model_name_async(llm))
                except LLMError as e:
                    logger.warning("no answer generated (stream): %s", e)
                    error = type(e).__name__
                    note = _llm_failure_text(e)
                    yield chunk({"content": note if not pieces else f"\n\n[{note}]"})
            attributions = (
                await attribute(answer.answer_text, passages) if answer is not None and with_attribution else []
            )
            final = lens_field(condensed, method, passages, answer, attributions, error)
            yield chunk({}, "stop", {**final, "streamed": streamed})
            yield "data: [DONE]\n\n"
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("the chat stream failed")
            error_body = _error_body("internal server error (see the server log)", "internal_error", 500)
            yield f"data: {json.dumps(error_body)}\n\n"
        finally:
            release()

    # -- page --------------------------------------------------------------------------------------------------
    page = resources.files("lens_rag.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(
            page,
            headers={
                "Content-Security-Policy": (
                    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
                ),
                "X-Content-Type-Options": "nosniff",
            },
        )

    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cfg.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type"],
        )
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    return app
