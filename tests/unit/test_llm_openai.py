from __future__ import annotations

import re
import sys
from types import SimpleNamespace

import pytest

from lens_rag.errors import ConfigurationError, LLMError, LLMTimeoutError, MissingDependencyError
from lens_rag.llm.openai_client import LOCAL_API_KEY, OpenAICompatibleClient

pytestmark = pytest.mark.unit


class FakeCompletions:
    """Stands in for `client.chat.completions`: returns `choices_per_request` choices whatever `n` asks."""

    def __init__(self, choices_per_request: int | None = None, error: Exception | None = None):
        self.choices_per_request = choices_per_request
        self.error = error
        self.requests: list[dict] = []

    def _response(self, kwargs):
        self.requests.append(kwargs)
        if self.error is not None:
            raise self.error
        count = kwargs.get("n", 1) if self.choices_per_request is None else self.choices_per_request
        i = len(self.requests)
        return SimpleNamespace(
            choices=[SimpleNamespace(message=SimpleNamespace(content=f"r{i}c{j}")) for j in range(count)]
        )

    def create(self, **kwargs):
        return self._response(kwargs)


class AsyncFakeCompletions(FakeCompletions):
    async def create(self, **kwargs):
        return self._response(kwargs)


def _client_with(fake: FakeCompletions, async_fake: FakeCompletions | None = None, **kwargs) -> OpenAICompatibleClient:
    client = OpenAICompatibleClient(base_url="http://127.0.0.1:9/v1", model="m", **kwargs)
    client._client = SimpleNamespace(chat=SimpleNamespace(completions=fake))
    client._async_client = SimpleNamespace(chat=SimpleNamespace(completions=async_fake or AsyncFakeCompletions()))
    return client


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("LENS_RAG_LLM_URL", "LENS_RAG_LLM_MODEL", "LENS_RAG_LLM_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_construction_does_no_io():
    client = OpenAICompatibleClient(base_url="http://127.0.0.1:9/v1")  # nothing listens on port 9
    assert client._client is None and client._async_client is None


def test_env_defaults(monkeypatch):
    monkeypatch.setenv("LENS_RAG_LLM_URL", "http://127.0.0.1:7/v1")
    monkeypatch.setenv("LENS_RAG_LLM_MODEL", "envmodel")
    client = OpenAICompatibleClient()
    assert client.base_url == "http://127.0.0.1:7/v1" and client.model == "envmodel"
    assert OpenAICompatibleClient(base_url="http://x/v1", model="explicit").model == "explicit"


def test_api_key_resolution(monkeypatch):
    assert OpenAICompatibleClient(base_url="http://127.0.0.1:9/v1")._resolve_api_key() == LOCAL_API_KEY
    with pytest.raises(ConfigurationError, match="api_key is not set and no base_url"):
        OpenAICompatibleClient()._resolve_api_key()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    assert OpenAICompatibleClient()._resolve_api_key() == "sk-openai"
    monkeypatch.setenv("LENS_RAG_LLM_API_KEY", "sk-lens")
    assert OpenAICompatibleClient()._resolve_api_key() == "sk-lens"
    assert OpenAICompatibleClient(api_key="sk-arg")._resolve_api_key() == "sk-arg"


def test_to_config_never_contains_the_key():
    client = OpenAICompatibleClient(base_url="http://x/v1", model="m", api_key="sk-secret")
    assert "sk-secret" not in str(client.to_config())
    assert OpenAICompatibleClient.from_config({"type": "openai", "base_url": "http://x/v1"}).base_url == "http://x/v1"


def test_missing_openai_raises_with_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)
    client = OpenAICompatibleClient(base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(MissingDependencyError, match=r"pip install 'lens-rag\[llm\]'"):
        client.generate("hi")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": 0}, "timeout must be > 0"),
        ({"max_retries": -1}, "max_retries must be"),
        ({"n_mode": "x"}, "n_mode is 'x'"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        OpenAICompatibleClient(**kwargs)


def test_native_n_used_when_server_honours_it():
    fake = FakeCompletions()
    client = _client_with(fake)
    assert client.generate("p", n=3, temperature=1.0, max_tokens=8) == ["r1c0", "r1c1", "r1c2"]
    assert len(fake.requests) == 1 and fake.requests[0]["n"] == 3
    assert fake.requests[0]["messages"] == [{"role": "user", "content": "p"}]
    assert (fake.requests[0]["temperature"], fake.requests[0]["max_tokens"]) == (1.0, 8)


def test_auto_mode_learns_that_server_ignores_n():
    fake = FakeCompletions(choices_per_request=1)  # llama.cpp's server
    client = _client_with(fake)
    assert client.generate("p", n=3) == ["r1c0", "r2c0", "r3c0"]
    assert [r.get("n") for r in fake.requests] == [3, None, None]
    client.generate("p", n=2)
    assert [r.get("n") for r in fake.requests[3:]] == [None, None]  # learnt: no more native attempts
    assert client.usage.requests == 5 and client.usage.generations == 5


def test_loop_mode_never_sends_n():
    fake = FakeCompletions()
    client = _client_with(fake, n_mode="loop")
    assert len(client.generate("p", n=2)) == 2
    assert [r.get("n") for r in fake.requests] == [None, None]


def test_native_mode_raises_when_server_ignores_n():
    client = _client_with(FakeCompletions(choices_per_request=1), n_mode="native")
    with pytest.raises(LLMError, match="ignores n"):
        client.generate("p", n=2)


async def test_async_loop_mode_requests_concurrently():
    afake = AsyncFakeCompletions(choices_per_request=1)
    client = _client_with(FakeCompletions(), afake)
    out = await client.generate_async("p", n=3)
    assert len(out) == 3 and [r.get("n") for r in afake.requests] == [3, None, None]


def test_timeout_and_connection_errors_are_wrapped():
    import httpx2
    import openai

    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    client = _client_with(FakeCompletions(error=openai.APITimeoutError(request=request)), timeout=1.5)
    with pytest.raises(LLMTimeoutError, match=r"did not answer within timeout=1.5 s"):
        client.generate("p")
    client = _client_with(FakeCompletions(error=openai.APIConnectionError(request=request)))
    with pytest.raises(LLMError, match=re.escape("could not connect to the LLM at base_url='http://127.0.0.1:9/v1'")):
        client.generate("p")
    assert client.usage.failures == 1
