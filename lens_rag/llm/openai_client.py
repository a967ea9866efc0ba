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

**Greedy ``n``.** At ``temperature=0`` every sample would be the same greedy answer, so the client asks
for one and returns it ``n`` times (one request instead of ``n``, same result as asking for ``n``).

**Async.** The async methods never block the event loop: the model name is looked up with the async
client, and the async client is bound to the running event loop (a new one is created when the
client is used from another loop, e.g. a second ``asyncio.run``).

**Streaming.** :meth:`OpenAICompatibleClient.stream` / :meth:`~OpenAICompatibleClient.stream_async` yield one
completion piece by piece (``stream=True``); ``lens-rag serve`` forwards them as server-sent events.

**Secrets.** The API key is read from an environment variable (``api_key_env``, else
``LENS_RAG_LLM_API_KEY``, else ``OPENAI_API_KEY``); :meth:`OpenAICompatibleClient.to_config` saves that
variable's *name*, never the key.

Usage::

    llm = OpenAICompatibleClient(base_url="http://127.0.0.1:8080/v1")   # model found via /v1/models
    llm.generate("Say hi", n=3, temperature=1.0, max_tokens=16)
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
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
    :param api_key: the key itself, for this process only: it is never saved by `to_config`, so a client
        rebuilt from a config reads it from the environment (prefer `api_key_env`). `None` reads the
        variable named by `api_key_env`, else ``LENS_RAG_LLM_API_KEY`` then ``OPENAI_API_KEY``; with none set
        and a `base_url` given, a dummy key is sent (local servers ignore it).
    :param api_key_env: the name of the environment variable holding the key (saved by `to_config`), e.g.
        ``"OPENAI_API_KEY"``; read on first use.
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
        api_key_env: str | None = None,
    ) -> None:
        if api_key_env is not None and (not isinstance(api_key_env, str) or not api_key_env.strip()):
            raise ConfigurationError(
                f"api_key_env must name an environment variable (e.g. 'OPENAI_API_KEY'), got {api_key_env!r}"
            )
        if timeout is None or timeout <= 0:
            raise ConfigurationError(f"timeout must be > 0 seconds, got {timeout!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if n_mode not in ("auto", "native", "loop"):
            raise ConfigurationError(f"n_mode is {n_mode!r}; use 'auto', 'native' or 'loop'")
        self.base_url = base_url if base_url is not None else (os.environ.get(ENV_LLM_URL) or None)
        self._model = model if model is not None else (os.environ.get(ENV_LLM_MODEL) or None)
        self._api_key = api_key
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.n_mode: NMode = n_mode
        self.extra_body = dict(extra_body) if extra_body is not None else None
        self.usage = LLMUsage()
        # None: not known yet (auto mode asks natively once and learns).
        self._native_n: bool | None = {"auto": None, "native": True, "loop": False}[n_mode]
        self._client: Any = None
        self._async_client: Any = None
        self._async_loop: asyncio.AbstractEventLoop | None = None  # the loop `_async_client` belongs to
        self._lock = threading.Lock()
        # Guards only the quick creation of the async client: `_lock` is held across the sync model lookup
        # (HTTP), which must never make the event loop wait.
        self._async_lock = threading.Lock()
        self._closing: Any = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def _resolve_api_key(self) -> str:
        if self._api_key is not None:
            return self._api_key
        if self.api_key_env is not None:
            named = os.environ.get(self.api_key_env)
            if not named:
                raise ConfigurationError(
                    f"api_key_env={self.api_key_env!r} but that environment variable is not set; "
                    f"export {self.api_key_env}=<your key> or pass api_key_env=None for a local server"
                )
            return named
        key = os.environ.get(ENV_LLM_API_KEY) or os.environ.get("OPENAI_API_KEY")
        if key:
            return key
        if self.base_url is not None:
            return LOCAL_API_KEY
        raise ConfigurationError(
            "api_key is not set and no base_url was given, so requests would go to api.openai.com without a key; "
            f"set {ENV_LLM_API_KEY} or OPENAI_API_KEY, or pass base_url= for a local server (env {ENV_LLM_URL})"
        )

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "api_key": self._resolve_api_key(),
            "timeout": self.timeout,
            "max_retries": self.max_retries,
        }

    def warm_up(self) -> None:
        """Create the sync `openai` client and resolve the model name. Safe to call repeatedly.

        :raises MissingDependencyError: when `openai` is not installed.
        :raises LLMError: when `model` is unset and the server's model list cannot be read.
        """
        if self._client is not None and self._model is not None:
            return
        with self._lock:
            if self._client is None:
                self._client = _import_openai().OpenAI(**self._client_kwargs())
            if self._model is None:
                self._model = self._discover_model()

    async def warm_up_async(self) -> None:
        """The async twin of :meth:`warm_up`: creates this event loop's async client, resolves the model.

        Nothing here blocks the event loop: the first `openai` import runs in a worker thread and the
        model list is read with the async client.
        """
        if "openai" not in sys.modules:
            await asyncio.to_thread(_import_openai)
        client = self._async_client_for_loop()
        if self._model is None:
            model = await self._discover_model_async(client)
            if self._model is None:
                self._model = model

    def _async_client_for_loop(self) -> Any:
        # An AsyncOpenAI's connection pool belongs to the event loop that first used it; from another loop
        # (a second asyncio.run) its kept-alive connections fail, so each loop gets its own client.
        loop = asyncio.get_running_loop()
        with self._async_lock:
            if self._async_client is None or (self._async_loop is not None and self._async_loop is not loop):
                stale = self._async_client
                self._async_client = _import_openai().AsyncOpenAI(**self._client_kwargs())
                self._async_loop = loop
                if stale is not None:
                    logger.debug("new async LLM client for another event loop (the old one is dropped)")
            return self._async_client

    def _model_list_error(self, e: Exception) -> LLMError:
        return LLMError(
            f"model is not set and the model list at {self.base_url}/models could not be read ({e}); "
            f"pass model= (or set {ENV_LLM_MODEL}) or check that the server at base_url={self.base_url!r} "
            "is running"
        )

    def _pick_model(self, models: list[Any]) -> str:
        if not models:
            raise LLMError(f"the server at {self.base_url} lists no models; pass model= (or set {ENV_LLM_MODEL})")
        logger.info("using model %s served at %s", models[0].id, self.base_url)
        return str(models[0].id)

    def _discover_model(self) -> str:
        openai = _import_openai()
        try:
            models = list(self._client.models.list())
        except openai.APIError as e:
            raise self._model_list_error(e) from e
        return self._pick_model(models)

    async def _discover_model_async(self, client: Any) -> str:
        openai = _import_openai()
        try:
            models = [m async for m in client.models.list()]
        except openai.APIError as e:
            raise self._model_list_error(e) from e
        return self._pick_model(models)

    def close(self) -> None:
        """Close the HTTP clients; the next call creates new ones."""
        client, self._client = self._client, None
        async_client, self._async_client = self._async_client, None
        async_loop, self._async_loop = self._async_loop, None
        if client is not None:
            client.close()
        if async_client is not None:
            # AsyncOpenAI.close is a coroutine; its sockets are released when it is garbage-collected otherwise.
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None and (async_loop is None or async_loop is loop):
                self._closing = loop.create_task(async_client.close())
            elif async_loop is None or async_loop.is_closed():
                # Its loop is gone (or it never ran): close what can be closed without it.
                try:
                    asyncio.run(async_client.close())
                except Exception as e:  # closing must not fail; its sockets go with the garbage collector then
                    logger.debug("could not close the async LLM client: %s", e)
            # else: it belongs to a loop still running elsewhere; it is released when garbage-collected.

    async def model_async(self) -> str:
        """The model name, resolved with the async client when it was not given (never blocks the loop)."""
        if self._model is None:
            await self.warm_up_async()
        assert self._model is not None
        return self._model

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
        :param temperature: sampling temperature; 0 is greedy: one request, its answer returned `n` times.
        :param max_tokens: most tokens per sample.
        :returns: exactly `n` strings.
        :raises LLMTimeoutError: when the server does not answer within `timeout` (after retries).
        :raises LLMError: on connection or HTTP errors.
        """
        check_generation_args(n, temperature, max_tokens)
        if n > 1 and temperature == 0:
            return self.generate(prompt, n=1, temperature=0.0, max_tokens=max_tokens) * n
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
        """The async twin of :meth:`generate` (same arguments, same result); loop-mode samples run concurrently.

        Never blocks the event loop (see the module docs: model lookup and client are async, per loop).
        """
        check_generation_args(n, temperature, max_tokens)
        if n > 1 and temperature == 0:
            return (await self.generate_async(prompt, n=1, temperature=0.0, max_tokens=max_tokens)) * n
        await self.warm_up_async()
        client = self._async_client_for_loop()
        openai = _import_openai()
        start = time.perf_counter()
        texts: list[str] = []
        try:
            if self._plan(n):
                response = await client.chat.completions.create(
                    **self._request_kwargs(prompt, n, temperature, max_tokens)
                )
                self.usage.requests += 1
                texts = self._texts(response)[:n]
                self._learn(n, len(texts))
            missing = n - len(texts)
            if missing > 0:
                responses = await asyncio.gather(
                    *(
                        client.chat.completions.create(**self._request_kwargs(prompt, 1, temperature, max_tokens))
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

    # -- streaming (lens-rag serve) ----------------------------------------------------------------

    @staticmethod
    def _delta(chunk: Any) -> str:
        choices = getattr(chunk, "choices", None) or []
        if not choices:
            return ""
        delta = getattr(choices[0], "delta", None)
        return (getattr(delta, "content", None) or "") if delta is not None else ""

    def stream(self, prompt: Prompt, *, temperature: float = 0.0, max_tokens: int = 256) -> Iterator[str]:
        """Yield one completion for `prompt` piece by piece, as the server generates it (``stream=True``).

        :raises LLMTimeoutError: when the server does not answer within `timeout`.
        :raises LLMError: on connection or HTTP errors, also when they happen mid-stream.
        """
        check_generation_args(1, temperature, max_tokens)
        self.warm_up()
        openai = _import_openai()
        start = time.perf_counter()
        try:
            response = self._client.chat.completions.create(
                **self._request_kwargs(prompt, 1, temperature, max_tokens), stream=True
            )
            self.usage.requests += 1
            for chunk in response:
                text = self._delta(chunk)
                if text:
                    yield text
        except openai.OpenAIError as e:
            raise self._wrap_error(e) from e
        finally:
            self.usage.seconds += time.perf_counter() - start
        self.usage.generations += 1

    async def stream_async(
        self, prompt: Prompt, *, temperature: float = 0.0, max_tokens: int = 256
    ) -> AsyncIterator[str]:
        """The async twin of :meth:`stream`; never blocks the event loop."""
        check_generation_args(1, temperature, max_tokens)
        await self.warm_up_async()
        client = self._async_client_for_loop()
        openai = _import_openai()
        start = time.perf_counter()
        try:
            response = await client.chat.completions.create(
                **self._request_kwargs(prompt, 1, temperature, max_tokens), stream=True
            )
            self.usage.requests += 1
            async for chunk in response:
                text = self._delta(chunk)
                if text:
                    yield text
        except openai.OpenAIError as e:
            raise self._wrap_error(e) from e
        finally:
            self.usage.seconds += time.perf_counter() - start
        self.usage.generations += 1

    # -- configuration -----------------------------------------------------------------------------

    def to_config(self) -> dict[str, Any]:
        """A JSON-serialisable dict that :meth:`from_config` turns back into an equal client.

        The API key is never in it: ``api_key_env`` names the environment variable to read it from. A key
        passed as ``api_key=`` is not saved (a warning says so); the rebuilt client reads the environment.
        """
        if self._api_key is not None and self.api_key_env is None:
            logger.warning(
                "the API key passed as api_key= is not saved in the configuration; the rebuilt client reads "
                "%s or OPENAI_API_KEY — pass api_key_env='NAME' to name the variable that holds it",
                ENV_LLM_API_KEY,
            )
        return {
            "type": "openai",
            "base_url": self.base_url,
            "model": self._model,
            "api_key_env": self.api_key_env,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "n_mode": self.n_mode,
            "extra_body": self.extra_body,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> OpenAICompatibleClient:
        """Build a client from :meth:`to_config` output; missing keys take the defaults.

        :raises ConfigurationError: on unknown keys, or an ``api_key`` value (configs hold env var names only).
        """
        from lens_rag.config import config_params

        if "api_key" in config:
            raise ConfigurationError(
                "an LLM config must not hold the API key itself; put it in an environment variable and "
                "set 'api_key_env' to that variable's name"
            )
        allowed = ("base_url", "model", "api_key_env", "timeout", "max_retries", "n_mode", "extra_body")
        return cls(**config_params(config, cls.__name__, allowed))

    def __repr__(self) -> str:
        return f"OpenAICompatibleClient(base_url={self.base_url!r}, model={self._model!r}, n_mode={self.n_mode!r})"
