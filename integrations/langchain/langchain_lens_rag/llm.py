"""Any LangChain chat model as a lens-rag LLM client, so LameR (and `answer_question`) can use it."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseLanguageModel

from lens_rag.errors import ConfigurationError, LLMError
from lens_rag.llm.base import Prompt, check_generation_args, to_messages

__all__ = ["ChatModelClient"]


def _text(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return str(content)


class ChatModelClient:
    """Wraps a LangChain chat model (`ChatOpenAI`, `ChatOllama`, …) in lens-rag's `LLMClient` interface.

    ``n`` samples are ``n`` calls through the model's own `batch`/`abatch`; `temperature` and
    `max_tokens` are passed as call options, which OpenAI-compatible and most provider models
    honour (models that ignore call options use their own settings). Any exception from the model
    becomes an :class:`~lens_rag.errors.LLMError`, so LameR falls back to the original query.

    :param chat_model: the LangChain chat model.
    :param model_name: the name used in cache keys; default: the model's `model_name`/`model` field.
    """

    def __init__(self, chat_model: BaseLanguageModel, model_name: str | None = None) -> None:
        if not isinstance(chat_model, BaseLanguageModel):
            raise ConfigurationError(f"chat_model must be a LangChain chat model, got {type(chat_model).__name__}")
        self.chat_model = chat_model
        self._model_name = model_name

    @property
    def model(self) -> str:
        if self._model_name is not None:
            return self._model_name
        for attr in ("model_name", "model"):
            value = getattr(self.chat_model, attr, None)
            if isinstance(value, str) and value:
                return value
        return type(self.chat_model).__name__

    def _inputs(self, prompt: Prompt, n: int) -> list[Any]:
        messages = [(m["role"], m["content"]) for m in to_messages(prompt)]
        return [messages] * n

    def generate(self, prompt: Prompt, *, n: int = 1, temperature: float = 0.0, max_tokens: int = 256) -> list[str]:
        check_generation_args(n, temperature, max_tokens)
        try:
            outputs = self.chat_model.batch(self._inputs(prompt, n), temperature=temperature, max_tokens=max_tokens)
        except Exception as e:
            raise LLMError(f"the chat model {self.model!r} failed: {type(e).__name__}: {e}") from e
        return [_text(o) for o in outputs]

    async def generate_async(
        self, prompt: Prompt, *, n: int = 1, temperature: float = 0.0, max_tokens: int = 256
    ) -> list[str]:
        check_generation_args(n, temperature, max_tokens)
        try:
            outputs = await self.chat_model.abatch(
                self._inputs(prompt, n), temperature=temperature, max_tokens=max_tokens
            )
        except Exception as e:
            raise LLMError(f"the chat model {self.model!r} failed: {type(e).__name__}: {e}") from e
        return [_text(o) for o in outputs]

    def to_config(self) -> dict[str, Any]:
        raise ConfigurationError(
            "a LangChain chat model cannot be saved in a lens-rag configuration; save the chain with LangChain's "
            "own tools, or use lens_rag.llm.OpenAICompatibleClient"
        )

    def __repr__(self) -> str:
        return f"ChatModelClient(model={self.model!r})"
