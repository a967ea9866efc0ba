"""A Haystack chat generator as a lens-rag `LLMClient`, so LameR can use any generator a user already has."""

from __future__ import annotations

from typing import Any

from haystack.dataclasses import ChatMessage

from lens_rag.errors import LLMError
from lens_rag.llm.base import Prompt, to_messages

__all__ = ["ChatGeneratorClient"]

_ROLES = {"user": ChatMessage.from_user, "system": ChatMessage.from_system, "assistant": ChatMessage.from_assistant}


class ChatGeneratorClient:
    """Implements :class:`lens_rag.llm.base.LLMClient` over a Haystack chat generator (`run(messages=...)`).

    ``n`` answers are asked for with ``generation_kwargs={"n": ...}``; servers that return fewer (llama.cpp
    returns one) are called again until there are ``n``. A generator error becomes `LLMError`, which
    LameR turns into a logged fallback to the original query.
    """

    def __init__(self, generator: Any) -> None:
        self.generator = generator

    @property
    def model(self) -> str:
        return str(getattr(self.generator, "model", type(self.generator).__name__))

    def _messages(self, prompt: Prompt) -> list[ChatMessage]:
        return [_ROLES.get(m["role"], ChatMessage.from_user)(m["content"]) for m in to_messages(prompt)]

    @staticmethod
    def _kwargs(want: int, temperature: float, max_tokens: int) -> dict[str, Any]:
        return {"n": want, "temperature": temperature, "max_tokens": max_tokens}

    def generate(self, prompt: Prompt, *, n: int = 1, temperature: float = 0.0, max_tokens: int = 256) -> list[str]:
        texts: list[str] = []
        while len(texts) < n:
            try:
                result = self.generator.run(
                    messages=self._messages(prompt),
                    generation_kwargs=self._kwargs(n - len(texts), temperature, max_tokens),
                )
            except Exception as e:  # any generator failure: LameR falls back, loudly
                raise LLMError(f"chat generator {type(self.generator).__name__} failed: {e}") from e
            texts.extend(reply.text or "" for reply in result["replies"])
            if not result["replies"]:
                break
        return (texts + [""] * n)[:n]

    async def generate_async(
        self, prompt: Prompt, *, n: int = 1, temperature: float = 0.0, max_tokens: int = 256
    ) -> list[str]:
        run_async = getattr(self.generator, "run_async", None)
        if run_async is None:
            import asyncio

            return await asyncio.to_thread(self.generate, prompt, n=n, temperature=temperature, max_tokens=max_tokens)
        texts: list[str] = []
        while len(texts) < n:
            try:
                result = await run_async(
                    messages=self._messages(prompt),
                    generation_kwargs=self._kwargs(n - len(texts), temperature, max_tokens),
                )
            except Exception as e:
                raise LLMError(f"chat generator {type(self.generator).__name__} failed: {e}") from e
            texts.extend(reply.text or "" for reply in result["replies"])
            if not result["replies"]:
                break
        return (texts + [""] * n)[:n]

    def to_config(self) -> dict[str, Any]:
        raise NotImplementedError("a Haystack chat generator is saved by the component that holds it (to_dict)")

    @classmethod
    def from_config(cls, config: Any) -> ChatGeneratorClient:
        raise NotImplementedError("a Haystack chat generator is loaded by the component that holds it (from_dict)")
