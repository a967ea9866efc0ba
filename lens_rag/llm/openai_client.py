"""An :class:`~lens_rag.llm.base.LLMClient` for any OpenAI-compatible chat endpoint, through the `openai` package.

Works with OpenAI, vLLM, Ollama, TGI and llama.cpp's server (``python -m llama_cpp.server`` or
``llama-server``). Retries with exponential backoff are the `openai` client's own (connection errors,
timeouts, 408/409/429/5xx; ``max_retries`` of them, 0.5 s doubling up to 8 s, with jitter).

**``n`` samples.** OpenAI and vLLM return ``n`` choices for one request. llama-cpp-python's server
accepts ``n`` but returns one choice. With ``n_mode="auto"`` the first request with ``n > 1`` asks
for ``n`` natively; when fewer choices come back the client keeps what it got, remembers that this
endpoint ignores ``n``, and makes the missing samples (and all later ones) with one request each.
``"native"`` trusts the server (and raises if it returns too few); ``"loop"`` always makes ``n``
requests. The async client sends the ``n`` requests concurrently.

Usage::

    llm = OpenAICompatibleClient(base_url="http://127.0.0.1:8080/v1")   # model found via /v1/models
    llm.generate("Say hi", n=3, temperature=1.0, max_tokens=16)
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

from lens_rag.errors import ConfigurationError, LLMError, LLMTimeoutError, MissingDependencyError
from lens_rag.llm.base import (
    ENV_LLM_API_KEY,
    ENV_LLM_MODEL,
    ENV_LLM_URL,
    LLMUsage,
    Prompt,
    check_generation_args,
    to_messages,
)

__all__ = ["LOCAL_API_KEY", "OpenAICompatibleClient"]

logger = logging.getLogger(__name__)

#: Sent when no key is configured and a `base_url` is given: local servers ignore the key, the client needs one.
LOCAL_API_KEY = "sk-no-key-required"

NMode = Literal["auto", "native", "loop"]


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as e:
        raise MissingDependencyError("openai", "llm", "OpenAICompatibleClient") from e
    return openai


class OpenAICompatibleClient:
    """Chat completions from an OpenAI-compatible endpoint.

    Construction validates and stores; the `openai` clients are created on first use
    (:meth:`warm_up`) and released by :meth:`close`.

    :param base_url: endpoint root including ``/v1``; `None` reads ``LENS_RAG_LLM_URL``, and when that is
        unset too the `openai` default (api.openai.com).
    :param model: model name; `None` reads ``LENS_RAG_LLM_MODEL``, and when that is unset too the first
        model the server lists at ``/v1/models`` (resolved on first use).
    :param api_key: `None` reads ``LENS_RAG_LLM_API_KEY`` then ``OPENAI_API_KEY``; with neither set and a
        `base_url` given, a dummy key is sent (local servers ignore it). The key is never saved by `to_config`.
    :param timeout: seconds to wait for one request (each retry gets its own `timeout`).
    :param max_retries: retries after a failed request, with exponential backoff (the `openai` client's).
    :param n_mode: how to get ``n`` samples: ``"auto"``, ``"native"`` or ``"loop"`` (see the module docs).
    :param extra_body: extra JSON fields sent with every request (e.g. ``{"top_k": 40}`` for llama.cpp).
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        n_mode: NMode = "auto",
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if timeout is None or timeout <= 0:
            raise ConfigurationError(f"timeout must be > 0 seconds, got {timeout!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if n_mode not in ("auto", "native", "loop"):
            raise ConfigurationError(f"n_mode is {n_mode!r}; use 'auto', 'native' or 'loop'")
        self.base_url = base_url if base_url is not None else (os.environ.get(ENV_LLM_URL) or None)
        self._model = model if model is not None else (os.environ.get(ENV_LLM_MODEL) or None)
        self._api_key = api_key
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.n_mode: NMode = n_mode
        self.extra_body = dict(extra_body) if extra_body is not None else None
        self.usage = LLMUsage()
        # None: not known yet (auto mode asks natively once and learns).
        self._native_n: bool | None = {"auto": None, "native": True, "loop": False}[n_mode]
        self._client: Any = None
        self._async_client: Any = None
        self._lock = threading.Lock()
        self._closing: Any = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def _resolve_api_key(self) -> str:
        if self._api_key is not None:
            return self._api_key
        key = os.environ.get(ENV_LLM_API_KEY) or os.environ.get("OPENAI_API_KEY")
        if key:
            return key
        if self.base_url is not None:
            return LOCAL_API_KEY
        raise ConfigurationError(
            "api_key is not set and no base_url was given, so requests would go to api.openai.com without a key; "
            f"set {ENV_LLM_API_KEY} or OPENAI_API_KEY, or pass base_url= for a local server (env {ENV_LLM_URL})"
        )

    def warm_up(self) -> None:
        """Create the `openai` clients and resolve the model name. Safe to call repeatedly.

        :raises MissingDependencyError: when `openai` is not installed.
        :raises LLMError: when `model` is unset and the server's model list cannot be read.
        """
        if self._client is not None and self._model is not None:
            return
        with self._lock:
            if self._client is None:
                openai = _import_openai()
                kwargs = {
                    "base_url": self.base_url,
                    "api_key": self._resolve_api_key(),
                    "timeout": self.timeout,
                    "max_retries": self.max_retries,
                }
                self._client = openai.OpenAI(**kwargs)
                self._async_client = openai.AsyncOpenAI(**kwargs)
            if self._model is None:
                self._model = self._discover_model()

    def _discover_model(self) -> str:
        openai = _import_openai()
        try:
            models = list(self._client.models.list())
        except openai.APIError as e:
            raise LLMError(
                f"model is not set and the model list at {self.base_url}/models could not be read ({e}); "
                f"pass model= (or set {ENV_LLM_MODEL}) or check that the server at base_url={self.base_url!r} "
                "is running"
            ) from e
        if not models:
            raise LLMError(f"the server at {self.base_url} lists no models; pass model= (or set {ENV_LLM_MODEL})")
        logger.info("using model %s served at %s", models[0].id, self.base_url)
        return str(models[0].id)

    def close(self) -> None:
        """Close the HTTP clients; the next call creates new ones."""
        client, self._client = self._client, None
        async_client, self._async_client = self._async_client, None
        if client is not None:
            client.close()
        if async_client is not None:
            # AsyncOpenAI.close is a coroutine; its sockets are released when it is garbage-collected otherwise.
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                asyncio.run(async_client.close())
            else:
                self._closing = loop.create_task(async_client.close())

    @property
    def model(self) -> str:
        """The model name; resolved from the server on first access when it was not given."""
        if self._model is None:
            self.warm_up()
        assert self._model is not None
        return self._model

    # -- generation --------------------------------------------------------------------------------

    def _request_kwargs(self, prompt: Prompt, n: int, temperature: float, max_tokens: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": to_messages(prompt),
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        if n > 1:
            kwargs["n"] = n
        if self.extra_body is not None:
            kwargs["extra_body"] = self.extra_body
        return kwargs

    def _wrap_error(self, e: Exception) -> LLMError:
        openai = _import_openai()
        self.usage.failures += 1
        if isinstance(e, openai.APITimeoutError):
            return LLMTimeoutError(
                f"the LLM at {self.base_url or 'api.openai.com'} did not answer within timeout={self.timeout} s "
                f"(after {self.max_retries} retries); raise timeout=, lower max_tokens, or use a faster model"
            )
        if isinstance(e, openai.APIConnectionError):
            return LLMError(
                f"could not connect to the LLM at base_url={self.base_url!r} ({e}); start the server "
                "(scripts/llm-server.sh start) or pass the right --llm-url"
            )
        if isinstance(e, openai.APIStatusError):
            return LLMError(
                f"the LLM at {self.base_url or 'api.openai.com'} answered HTTP {e.status_code} "
                f"for model={self._model!r}: {e.message}"
            )
        return LLMError(f"the LLM request to {self.base_url or 'api.openai.com'} failed: {e}")

    @staticmethod
    def _texts(response: Any) -> list[str]:
        return [(choice.message.content or "") for choice in response.choices]

    def _plan(self, n: int) -> bool:
        """Whether to ask for `n` natively in the next request."""
        return n > 1 and self._native_n is not False

    def _learn(self, n: int, got: int) -> None:
        if n <= 1:
            return
        if got >= n:
            self._native_n = True
            return
        if self.n_mode == "native":
            raise LLMError(
                f"asked the LLM at {self.base_url} for n={n} samples and got {got}; this server ignores n — "
                "use n_mode='auto' or 'loop'"
            )
        if self._native_n is None:
            logger.info(
                "the LLM at %s ignores n>1 (returned %d of %d); making one request per sample", self.base_url, got, n
            )
        self._native_n = False

    def generate(self, prompt: Prompt, *, n: int = 1, temperature: float = 0.0, max_tokens: int = 256) -> list[str]:
        """Sample `n` completions for `prompt`.

        :param prompt: a string (sent as one user message) or chat messages.
        :param n: how many samples.
        :param temperature: sampling temperature; 0 is greedy.
        :param max_tokens: most tokens per sample.
        :returns: exactly `n` strings.
        :raises LLMTimeoutError: when the server does not answer within `timeout` (after retries).
        :raises LLMError: on connection or HTTP errors.
        """
        check_generation_args(n, temperature, max_tokens)
        self.warm_up()
        openai = _import_openai()
        start = time.perf_counter()
        texts: list[str] = []
        try:
            if self._plan(n):
                response = self._client.chat.completions.create(
                    **self._request_kwargs(prompt, n, temperature, max_tokens)
                )
                self.usage.requests += 1
                texts = self._texts(response)[:n]
                self._learn(n, len(texts))
            while len(texts) < n:
                response = self._client.chat.completions.create(
                    **self._request_kwargs(prompt, 1, temperature, max_tokens)
                )
                self.usage.requests += 1
                texts.extend(self._texts(response)[:1])
        except openai.OpenAIError as e:
            raise self._wrap_error(e) from e
        finally:
            self.usage.seconds += time.perf_counter() - start
        self.usage.generations += len(texts)
        return texts

    async def generate_async(
        self, prompt: Prompt, *, n: int = 1, temperature: float = 0.0, max_tokens: int = 256
    ) -> list[str]:
        """The async twin of :meth:`generate` (same arguments, same result); loop-mode samples run concurrently."""
        check_generation_args(n, temperature, max_tokens)
        self.warm_up()
        openai = _import_openai()
        start = time.perf_counter()
        texts: list[str] = []
        try:
            if self._plan(n):
                response = await self._async_client.chat.completions.create(
                    **self._request_kwargs(prompt, n, temperature, max_tokens)
                )
                self.usage.requests += 1
                texts = self._texts(response)[:n]
                self._learn(n, len(texts))
            missing = n - len(texts)
            if missing > 0:
                responses = await asyncio.gather(
                    *(
                        self._async_client.chat.completions.create(
                            **self._request_kwargs(prompt, 1, temperature, max_tokens)
                        )
                        for _ in range(missing)
                    )
                )
                self.usage.requests += len(responses)
                for response in responses:
                    texts.extend(self._texts(response)[:1])
        except openai.OpenAIError as e:
            raise self._wrap_error(e) from e
        finally:
            self.usage.seconds += time.perf_counter() - start
        self.usage.generations += len(texts)
        return texts

    # -- configuration -----------------------------------------------------------------------------

    def to_config(self) -> dict[str, Any]:
        """A JSON-serialisable dict that :meth:`from_config` turns back into an equal client (never the API key)."""
        return {
            "type": "openai",
            "base_url": self.base_url,
            "model": self._model,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "n_mode": self.n_mode,
            "extra_body": self.extra_body,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> OpenAICompatibleClient:
        """Build a client from :meth:`to_config` output; missing keys take the defaults."""
        params = {k: v for k, v in config.items() if k != "type"}
        return cls(**params)

    def __repr__(self) -> str:
        return f"OpenAICompatibleClient(base_url={self.base_url!r}, model={self._model!r}, n_mode={self.n_mode!r})"
