"""The one small LLM interface every backend implements, plus the pieces they share.

An :class:`LLMClient` turns a prompt (a string, or chat messages) into ``n`` sampled texts. Two real
backends implement it: :class:`~lens_rag.llm.openai_client.OpenAICompatibleClient` (any
OpenAI-compatible endpoint: OpenAI, vLLM, llama.cpp's server, Ollama …) and
:class:`~lens_rag.llm.transformers_client.TransformersClient` (local generation, no server).

Usage::

    from lens_rag.llm import make_llm_client

    llm = make_llm_client(base_url="http://127.0.0.1:8080/v1")   # or model="Qwen/Qwen2.5-7B-Instruct"
    answers = llm.generate("Why is the sky blue?", n=2, temperature=1.0, max_tokens=64)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from lens_rag.errors import ConfigurationError

__all__ = [
    "ENV_LLM_API_KEY",
    "ENV_LLM_MODEL",
    "ENV_LLM_URL",
    "LLMCache",
    "LLMClient",
    "LLMFallbackWarning",
    "LLMUsage",
    "Prompt",
    "check_generation_args",
    "llm_from_config",
    "make_llm_client",
    "model_name_async",
    "prompt_key",
    "to_messages",
]

logger = logging.getLogger(__name__)

ENV_LLM_URL = "LENS_RAG_LLM_URL"
ENV_LLM_MODEL = "LENS_RAG_LLM_MODEL"
ENV_LLM_API_KEY = "LENS_RAG_LLM_API_KEY"

#: A plain prompt (sent as one user message) or OpenAI-style chat messages ``[{"role": …, "content": …}]``.
Prompt = str | Sequence[Mapping[str, str]]


class LLMFallbackWarning(UserWarning):
    """An LLM step failed and lens-rag went on without it (e.g. LameR used the original query)."""


@runtime_checkable
class LLMClient(Protocol):
    """Anything that samples text from a language model.

    `model` names the model (it is part of every cache key). `generate` and `generate_async` take
    the same arguments and return the same thing: a list of exactly ``n`` strings (an answer the
    model left empty is ``""``). Backends raise :class:`~lens_rag.errors.LLMError` (or its
    :class:`~lens_rag.errors.LLMTimeoutError`) when generation fails.
    """

    @property
    def model(self) -> str: ...

    def generate(self, prompt: Prompt, *, n: int = 1, temperature: float = 0.0, max_tokens: int = 256) -> list[str]: ...

    async def generate_async(
        self, prompt: Prompt, *, n: int = 1, temperature: float = 0.0, max_tokens: int = 256
    ) -> list[str]: ...

    def to_config(self) -> dict[str, Any]: ...

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LLMClient: ...


@dataclass
class LLMUsage:
    """What a client has spent: HTTP requests / `generate` runs, texts returned, seconds waited."""

    requests: int = 0
    generations: int = 0
    seconds: float = 0.0
    failures: int = 0

    def as_dict(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "generations": self.generations,
            "seconds": self.seconds,
            "failures": self.failures,
        }


def to_messages(prompt: Prompt) -> list[dict[str, str]]:
    """Normalise a prompt to chat messages: a string becomes one ``user`` message.

    :raises ConfigurationError: on an empty prompt or a message without ``role``/``content``.
    """
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ConfigurationError("prompt is empty; pass the text to send to the LLM")
        return [{"role": "user", "content": prompt}]
    messages: list[dict[str, str]] = []
    for i, message in enumerate(prompt):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise ConfigurationError(
                f"prompt message {i} is {message!r}; each message must be a mapping with 'role' and 'content'"
            )
        messages.append({"role": str(message["role"]), "content": str(message["content"])})
    if not messages:
        raise ConfigurationError("prompt has no messages; pass a string or a non-empty list of chat messages")
    return messages


async def model_name_async(llm: LLMClient) -> str:
    """`llm.model` without blocking the event loop.

    Reading `model` may be I/O (an OpenAI-compatible client with no model set asks the server), so a
    client's own ``model_async()`` is awaited when it has one, else the property is read in a worker thread.
    """
    method = getattr(llm, "model_async", None)
    if callable(method):
        return str(await method())
    return str(await asyncio.to_thread(getattr, llm, "model"))


def check_generation_args(n: int, temperature: float, max_tokens: int) -> None:
    """Validate the sampling arguments shared by every backend.

    :raises ConfigurationError: naming the bad argument.
    """
    if not isinstance(n, int) or n < 1:
        raise ConfigurationError(f"n must be an integer >= 1 (the number of samples), got {n!r}")
    if temperature < 0:
        raise ConfigurationError(f"temperature must be >= 0 (0 means greedy), got {temperature!r}")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigurationError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")


def prompt_key(model: str, prompt: Prompt, n: int, temperature: float, max_tokens: int) -> str:
    """A stable hash of everything that determines an LLM output: model, prompt and sampling arguments."""
    payload = json.dumps(
        {"model": model, "messages": to_messages(prompt), "n": n, "temperature": temperature, "max_tokens": max_tokens},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class LLMCache:
    """LLM outputs keyed by (model, prompt, n, temperature, max_tokens): in memory, optionally on disk.

    On disk each entry is one small JSON file ``<directory>/<key[:2]>/<key>.json`` written atomically
    (temp file + rename), so several processes can share a directory. Sampled outputs are cached on
    purpose: rerunning an evaluation reuses the same samples and costs no LLM calls.

    :param directory: where to persist entries; `None` keeps them in memory only. Created on first write.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = None if directory is None else Path(directory).expanduser()
        self._memory: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> list[str] | None:
        """Return the cached outputs for `key`, or `None`."""
        with self._lock:
            value = self._memory.get(key)
        if value is None and self.directory is not None:
            path = self._path(key)
            if path.is_file():
                try:
                    value = list(json.loads(path.read_text(encoding="utf-8"))["outputs"])
                except (OSError, ValueError, KeyError, TypeError) as e:
                    logger.warning("ignoring unreadable LLM cache entry %s: %s", path, e)
                    value = None
                if value is not None:
                    with self._lock:
                        self._memory[key] = value
        with self._lock:
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
        return None if value is None else list(value)

    def put(self, key: str, outputs: Sequence[str], **info: Any) -> None:
        """Store `outputs` under `key`; `info` (model, prompt …) is saved beside them for inspection."""
        with self._lock:
            self._memory[key] = list(outputs)
        if self.directory is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"outputs": list(outputs), **info}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record, f, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return len(self._memory)


def llm_from_config(config: Mapping[str, Any]) -> LLMClient:
    """Rebuild a client from its :meth:`LLMClient.to_config` dict (``{"type": "openai" | "transformers", …}``).

    :raises ConfigurationError: on an unknown ``type``.
    """
    kind = config.get("type")
    if kind == "openai":
        from lens_rag.llm.openai_client import OpenAICompatibleClient

        return OpenAICompatibleClient.from_config(config)
    if kind == "transformers":
        from lens_rag.llm.transformers_client import TransformersClient

        return TransformersClient.from_config(config)
    raise ConfigurationError(f"LLM config type is {kind!r}; use 'openai' or 'transformers'")


def make_llm_client(
    base_url: str | None = None,
    model: str | None = None,
    *,
    backend: str = "auto",
    timeout: float = 60.0,
    max_retries: int = 2,
) -> LLMClient:
    """Pick a backend from CLI-style options: the one place where "a stronger model" is one flag.

    - ``backend="openai"``, or ``"auto"`` with a `base_url` (or ``LENS_RAG_LLM_URL`` set): an
      :class:`~lens_rag.llm.openai_client.OpenAICompatibleClient` for `base_url` and `model`;
    - ``backend="transformers"``, or ``"auto"`` without a URL: a local
      :class:`~lens_rag.llm.transformers_client.TransformersClient` for `model` (default: the packaged
      SmolLM2-135M-Instruct GGUF). Any Hugging Face name or path works, e.g. ``Qwen/Qwen2.5-1.5B-Instruct``.

    Nothing is loaded or contacted here.

    :param base_url: OpenAI-compatible endpoint, e.g. ``http://127.0.0.1:8080/v1``.
    :param model: model name on the server, or a model name/path for local generation.
    :param backend: ``"auto"``, ``"openai"`` or ``"transformers"``.
    :raises ConfigurationError: on an unknown backend.
    """
    if backend not in ("auto", "openai", "transformers"):
        raise ConfigurationError(f"backend is {backend!r}; use 'auto', 'openai' or 'transformers'")
    url = base_url if base_url is not None else os.environ.get(ENV_LLM_URL) or None
    if backend == "openai" or (backend == "auto" and url is not None):
        from lens_rag.llm.openai_client import OpenAICompatibleClient

        return OpenAICompatibleClient(base_url=url, model=model, timeout=timeout, max_retries=max_retries)
    from lens_rag.llm.transformers_client import TransformersClient

    return TransformersClient(model=model if model is not None else TransformersClient.DEFAULT_MODEL)
