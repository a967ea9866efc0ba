"""Request bodies of the served API (pydantic models; FastAPI validates them and documents them in OpenAPI).

The chat request follows OpenAI's ``/v1/chat/completions`` schema; fields lens-rag does not use
(``n``, ``presence_penalty``, tools …) are accepted and ignored, so any OpenAI client or chat front
end can talk to the server. lens-rag's own options travel as extra fields (``method``, ``top_k``,
``filters``), which the `openai` client sends with ``extra_body=``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ChatMessage", "ChatRequest", "SearchRequest", "message_text"]


class ChatMessage(BaseModel):
    """One chat turn; ``content`` is a string or OpenAI's list of parts (text parts are used)."""

    model_config = ConfigDict(extra="allow")

    role: str = Field(description="system, user, assistant (or developer/tool, ignored)")
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """OpenAI chat-completions request, plus lens-rag's retrieval options."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(default=None, description="'lens-rag' or 'lens-rag:METHOD' (e.g. lens-rag:dense)")
    messages: list[ChatMessage] = Field(description="the conversation; the last user message is the question")
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, description="most tokens in the answer")
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    method: str | None = Field(default=None, description="retrieval method; overrides the one in 'model'")
    top_k: int | None = Field(default=None, ge=1, description="passages given to the LLM")
    filters: dict[str, Any] | None = Field(default=None, description="metadata filters (lens-rag filter syntax)")
    attribution: bool = Field(default=True, description="link answer sentences to supporting passages")


class SearchRequest(BaseModel):
    """``POST /v1/search``: retrieval only, no LLM."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="the search query")
    method: str | None = Field(default=None, description="bm25, sparse, dense, hybrid … (default: the server's)")
    top_k: int = Field(default=10, ge=1)
    filters: dict[str, Any] | None = None


def message_text(message: ChatMessage) -> str:
    """The text of a message: the string content, or its text parts joined."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(str(part.get("text", "")) for part in content if part.get("type", "text") == "text")
