"""OpenAICompatibleClient.stream / stream_async (used by `lens-rag serve`), with fake `openai` clients."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from lens_rag.errors import LLMError
from lens_rag.llm.openai_client import OpenAICompatibleClient

pytestmark = pytest.mark.unit

openai = pytest.importorskip("openai")


def _chunk(text: str | None) -> Any:
    return SimpleNamespace(choices=[SimpleNamespace(delta=SimpleNamespace(content=text))])


PIECES = [_chunk(None), _chunk("Scurvy "), SimpleNamespace(choices=[]), _chunk("needs vitamin C [1].")]


class Completions:
    def __init__(self, fail_after: int | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_after = fail_after

    def _pieces(self) -> list[Any]:
        return PIECES if self.fail_after is None else PIECES[: self.fail_after]

    def create(self, **kwargs: Any) -> Any:
        self.requests.append(kwargs)
        fail = self.fail_after is not None

        def gen() -> Any:
            yield from self._pieces()
            if fail:
                raise openai.APIConnectionError(request=None)  # type: ignore[arg-type]

        return gen()


class AsyncCompletions(Completions):
    async def create(self, **kwargs: Any) -> Any:  # type: ignore[override]
        self.requests.append(kwargs)
        pieces, fail = self._pieces(), self.fail_after is not None

        async def gen() -> Any:
            for p in pieces:
                yield p
            if fail:
                raise openai.APIConnectionError(request=None)  # type: ignore[arg-type]

        return gen()


def _client(sync: Completions, async_: Completions) -> OpenAICompatibleClient:
    client = OpenAICompatibleClient(base_url="http://127.0.0.1:9/v1", model="m")
    client._client = SimpleNamespace(chat=SimpleNamespace(completions=sync))
    client._async_client = SimpleNamespace(chat=SimpleNamespace(completions=async_))
    return client


async def test_stream_and_stream_async_yield_the_text_pieces_and_ask_for_a_stream() -> None:
    sync, async_ = Completions(), AsyncCompletions()
    client = _client(sync, async_)
    assert list(client.stream("q", max_tokens=9)) == ["Scurvy ", "needs vitamin C [1]."]
    assert [p async for p in client.stream_async("q", max_tokens=9)] == ["Scurvy ", "needs vitamin C [1]."]
    for request in (sync.requests[0], async_.requests[0]):
        assert request["stream"] is True and request["max_tokens"] == 9 and request["model"] == "m"
    assert client.usage.requests == 2 and client.usage.generations == 2


async def test_a_failure_mid_stream_is_an_llm_error() -> None:
    client = _client(Completions(fail_after=2), AsyncCompletions(fail_after=2))
    got: list[str] = []
    with pytest.raises(LLMError, match="could not connect"):
        for piece in client.stream("q"):
            got.append(piece)
    assert got == ["Scurvy "]
    with pytest.raises(LLMError):
        async for _ in client.stream_async("q"):
            pass
    assert client.usage.failures == 2
