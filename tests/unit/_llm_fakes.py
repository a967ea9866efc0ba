"""Fake LLM and retriever objects for the unit tier (no model, no server)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from lens_rag.documents import Document, ScoredDocument
from lens_rag.errors import LLMError


class FakeLLM:
    """Returns scripted answers, records prompts; `error` makes every call raise it."""

    def __init__(self, answers: list[str] | None = None, model: str = "fake-model", error: Exception | None = None):
        self.answers = answers if answers is not None else ["alpha answer", "beta answer"]
        self._model = model
        self.error = error
        self.calls: list[dict[str, Any]] = []

    @property
    def model(self) -> str:
        return self._model

    def _run(self, prompt, n, temperature, max_tokens) -> list[str]:
        self.calls.append({"prompt": prompt, "n": n, "temperature": temperature, "max_tokens": max_tokens})
        if self.error is not None:
            raise self.error
        return [self.answers[i % len(self.answers)] for i in range(n)]

    def generate(self, prompt, *, n=1, temperature=0.0, max_tokens=256) -> list[str]:
        return self._run(prompt, n, temperature, max_tokens)

    async def generate_async(self, prompt, *, n=1, temperature=0.0, max_tokens=256) -> list[str]:
        await asyncio.sleep(0)
        return self._run(prompt, n, temperature, max_tokens)

    def to_config(self) -> dict[str, Any]:
        return {"type": "fake", "model": self._model}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FakeLLM:
        return cls(model=config["model"])


class FakeRetriever:
    """Returns its documents in order (top_k of them) for any query, and records the queries."""

    def __init__(self, docs: list[Document] | None = None, name: str = "fake"):
        self.name = name
        self.docs = docs if docs is not None else make_docs(12)
        self.queries: list[tuple[str, int, Any]] = []

    def retrieve(self, query: str, top_k: int = 10, filters=None) -> list[ScoredDocument]:
        self.queries.append((query, top_k, filters))
        return [ScoredDocument(d, score=float(len(self.docs) - i), rank=i + 1) for i, d in enumerate(self.docs[:top_k])]

    async def retrieve_async(self, query: str, top_k: int = 10, filters=None) -> list[ScoredDocument]:
        await asyncio.sleep(0)
        return self.retrieve(query, top_k, filters)


def make_docs(n: int) -> list[Document]:
    return [
        Document(id=f"d{i}", content=f"passage number {i} about topic {i}", meta={"title": f"T{i}"}) for i in range(n)
    ]


__all__ = ["FakeLLM", "FakeRetriever", "LLMError", "make_docs"]
