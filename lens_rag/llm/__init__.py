"""LLM clients: one small interface (:class:`LLMClient`), an OpenAI-compatible backend and a local transformers one.

Importing this package loads neither `openai` nor a model; both happen on first use.
"""

from __future__ import annotations

from lens_rag.llm.base import (
    LLMCache,
    LLMClient,
    LLMFallbackWarning,
    LLMUsage,
    Prompt,
    llm_from_config,
    make_llm_client,
    to_messages,
)
from lens_rag.llm.openai_client import OpenAICompatibleClient
from lens_rag.llm.transformers_client import TransformersClient

__all__ = [
    "LLMCache",
    "LLMClient",
    "LLMFallbackWarning",
    "LLMUsage",
    "OpenAICompatibleClient",
    "Prompt",
    "TransformersClient",
    "llm_from_config",
    "make_llm_client",
    "to_messages",
]
