"""Limits that keep one server usable under load and against oversized or hostile input.

- :class:`ServeLimits`: body size, message count, query length, top_k, concurrency, queueing.
- :class:`BodySizeLimit`: ASGI middleware answering 413 for a body over the limit (declared or streamed).
- :class:`ConcurrencyLimiter`: at most ``max_concurrency`` requests work at once; up to ``max_waiting``
  more wait at most ``queue_timeout`` seconds (then 503); beyond that a request is refused at once (429).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from lens_rag.errors import ConfigurationError

__all__ = ["BodySizeLimit", "ConcurrencyLimiter", "Saturated", "ServeLimits"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask for, and how much work the server takes on at once.

    :param max_body_bytes: largest request body (413 above it).
    :param max_messages: most chat messages in one request (422 above it).
    :param max_query_chars: longest question or search query, in characters (422 above it).
    :param max_history_chars: most characters of earlier turns used to condense a follow-up (older text is cut).
    :param max_top_k: most passages/hits one request may ask for (422 above it).
    :param max_tokens: most answer tokens a request may ask for (larger requests are clipped to it).
    :param max_concurrency: requests that search or generate at the same time.
    :param max_waiting: requests that may wait for a slot; more are refused with 429 at once.
    :param queue_timeout: seconds a waiting request waits for a slot before a 503.
    """

    max_body_bytes: int = 256 * 1024
    max_messages: int = 64
    max_query_chars: int = 2000
    max_history_chars: int = 4000
    max_top_k: int = 50
    max_tokens: int = 512
    max_concurrency: int = 8
    max_waiting: int = 32
    queue_timeout: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_messages", "max_query_chars", "max_top_k", "max_tokens", "max_concurrency"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.max_waiting, int) or self.max_waiting < 0:
            raise ConfigurationError(f"max_waiting must be an integer >= 0, got {self.max_waiting!r}")
        if self.queue_timeout < 0:
            raise ConfigurationError(f"queue_timeout must be >= 0 seconds, got {self.queue_timeout!r}")


class Saturated(Exception):
    """No slot is free: `status` is 429 (too many waiting) or 503 (waited `queue_timeout` in vain)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ConcurrencyLimiter:
    """A semaphore that refuses instead of queueing forever.

    Usage::

        limiter = ConcurrencyLimiter(limits)
        await limiter.acquire()      # raises Saturated
        try: ...
        finally: limiter.release()
    """

    def __init__(self, limits: ServeLimits) -> None:
        self.limits = limits
        self._semaphore: asyncio.Semaphore | None = None
        self.active = 0
        self.waiting = 0
        self.refused = 0

    def _sem(self) -> asyncio.Semaphore:
        if self._semaphore is None:  # created inside the server's event loop
            self._semaphore = asyncio.Semaphore(self.limits.max_concurrency)
        return self._semaphore

    async def acquire(self) -> None:
        """Take a slot, waiting at most ``queue_timeout`` seconds.

        :raises Saturated: 429 when ``max_waiting`` requests already wait, 503 after ``queue_timeout``.
        """
        sem = self._sem()
        if sem.locked():
            if self.waiting >= self.limits.max_waiting:
                self.refused += 1
                raise Saturated(
                    429,
                    f"the server is at its limit ({self.limits.max_concurrency} requests working, "
                    f"{self.waiting} waiting); retry in a moment",
                )
            self.waiting += 1
            try:
                await asyncio.wait_for(sem.acquire(), timeout=self.limits.queue_timeout)
            except TimeoutError:
                self.refused += 1
                raise Saturated(
                    503,
                    f"the server is busy: no slot became free within {self.limits.queue_timeout:g} s; retry later",
                ) from None
            finally:
                self.waiting -= 1
        else:
            await sem.acquire()
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        self._sem().release()


class BodySizeLimit:
    """ASGI middleware: a request body over `max_bytes` gets a 413 with a JSON error, before the app reads it.

    A ``Content-Length`` over the limit is refused at once; a chunked body is counted as it arrives.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": {
                    "message": f"the request body is larger than the server's limit of {self.max_bytes} bytes",
                    "type": "invalid_request_error",
                    "code": "request_too_large",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
        seen = 0
        too_large = False
        replaced = False

        async def counted_receive() -> Message:
            # A chunked body over the limit: the app sees it end here, and its response is replaced by the 413.
            nonlocal seen, too_large
            if too_large:
                return {"type": "http.request", "body": b"", "more_body": False}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def checked_send(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return
            if too_large and message["type"] == "http.response.start":
                replaced = True
                await self._refuse(send)
                return
            await send(message)

        await self.app(scope, counted_receive, checked_send)
