from __future__ import annotations

import asyncio
import json
import re
import sys
from types import SimpleNamespace
from typing import ClassVar

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
    assert client.generate("p", n=3, temperature=1.0) == ["r1c0", "r2c0", "r3c0"]
    assert [r.get("n") for r in fake.requests] == [3, None, None]
    client.generate("p", n=2, temperature=1.0)
    assert [r.get("n") for r in fake.requests[3:]] == [None, None]  # learnt: no more native attempts
    assert client.usage.requests == 5 and client.usage.generations == 5


def test_loop_mode_never_sends_n():
    fake = FakeCompletions()
    client = _client_with(fake, n_mode="loop")
    assert len(client.generate("p", n=2, temperature=1.0)) == 2
    assert [r.get("n") for r in fake.requests] == [None, None]


def test_native_mode_raises_when_server_ignores_n():
    client = _client_with(FakeCompletions(choices_per_request=1), n_mode="native")
    with pytest.raises(LLMError, match="ignores n"):
        client.generate("p", n=2, temperature=1.0)


async def test_async_loop_mode_requests_concurrently():
    afake = AsyncFakeCompletions(choices_per_request=1)
    client = _client_with(FakeCompletions(), afake)
    out = await client.generate_async("p", n=3, temperature=1.0)
    assert len(out) == 3 and [r.get("n") for r in afake.requests] == [3, None, None]


@pytest.mark.parametrize("n_mode", ["auto", "native", "loop"])
def test_greedy_n_is_one_request_repeated(n_mode):
    fake = FakeCompletions(choices_per_request=1)
    client = _client_with(fake, n_mode=n_mode)
    assert client.generate("p", n=4, temperature=0.0) == ["r1c0"] * 4
    assert len(fake.requests) == 1 and "n" not in fake.requests[0] and fake.requests[0]["temperature"] == 0.0


async def test_greedy_n_async_is_one_request_repeated():
    afake = AsyncFakeCompletions()
    client = _client_with(FakeCompletions(), afake)
    assert await client.generate_async("p", n=3, temperature=0.0) == ["r1c0"] * 3
    assert len(afake.requests) == 1 and "n" not in afake.requests[0]


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


def test_api_key_env_names_the_variable_and_only_the_name_is_saved(monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", "sk-from-env-123")
    client = OpenAICompatibleClient(base_url="http://x/v1", model="m", api_key_env="MY_LLM_KEY")
    assert client._resolve_api_key() == "sk-from-env-123"
    config = client.to_config()
    assert config["api_key_env"] == "MY_LLM_KEY" and "sk-from-env-123" not in json.dumps(config)
    rebuilt = OpenAICompatibleClient.from_config(json.loads(json.dumps(config)))
    assert rebuilt.to_config() == config and rebuilt._resolve_api_key() == "sk-from-env-123"
    monkeypatch.delenv("MY_LLM_KEY")
    with pytest.raises(ConfigurationError, match="api_key_env='MY_LLM_KEY' but that environment variable is not set"):
        rebuilt._resolve_api_key()


def test_from_config_refuses_a_key_value_and_unknown_keys():
    with pytest.raises(ConfigurationError, match="must not hold the API key itself"):
        OpenAICompatibleClient.from_config({"type": "openai", "api_key": "sk-x"})
    with pytest.raises(ConfigurationError, match=r"unknown OpenAICompatibleClient config keys \['modle'\]"):
        OpenAICompatibleClient.from_config({"type": "openai", "modle": "m"})


def test_a_key_passed_by_value_is_not_saved_and_a_warning_says_so(caplog):
    client = OpenAICompatibleClient(base_url="http://x/v1", model="m", api_key="sk-secret-value")
    with caplog.at_level("WARNING", logger="lens_rag.llm.openai_client"):
        config = client.to_config()
    assert "sk-secret-value" not in json.dumps(config) and config["api_key_env"] is None
    assert "api_key_env" in caplog.text and "sk-secret-value" not in caplog.text


class _FakeAsyncOpenAI:
    """Records construction; `models.list()` is an async iterator; the sync client must not be used."""

    created: ClassVar[list[_FakeAsyncOpenAI]] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.loop = asyncio.get_running_loop()
        self.closed = False
        _FakeAsyncOpenAI.created.append(self)
        outer = self

        class _Models:
            def list(self):
                assert asyncio.get_running_loop() is outer.loop, "client used from another event loop"

                async def gen():
                    yield SimpleNamespace(id="served-model")

                return gen()

        class _Completions:
            async def create(self, **kw):
                assert asyncio.get_running_loop() is outer.loop, "client used from another event loop"
                return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=kw["model"]))])

        self.models = _Models()
        self.chat = SimpleNamespace(completions=_Completions())

    async def close(self):
        self.closed = True


def test_async_client_is_bound_per_event_loop_and_model_lookup_is_async(monkeypatch):
    import openai

    _FakeAsyncOpenAI.created = []
    monkeypatch.setattr(openai, "AsyncOpenAI", _FakeAsyncOpenAI)

    def no_sync(**kwargs):
        raise AssertionError("the sync client was created inside an async method")

    monkeypatch.setattr(openai, "OpenAI", no_sync)
    client = OpenAICompatibleClient(base_url="http://127.0.0.1:9/v1")  # no model: looked up on first use
    assert asyncio.run(client.generate_async("hi")) == ["served-model"]
    assert asyncio.run(client.generate_async("hi again")) == ["served-model"]  # a second loop works
    assert len(_FakeAsyncOpenAI.created) == 2 and client.model == "served-model"
    first, second = _FakeAsyncOpenAI.created
    assert first.loop is not second.loop


async def test_model_async_never_uses_the_sync_client(monkeypatch):
    import openai

    monkeypatch.setattr(openai, "AsyncOpenAI", _FakeAsyncOpenAI)
    monkeypatch.setattr(openai, "OpenAI", lambda **kw: pytest.fail("sync client created"))
    client = OpenAICompatibleClient(base_url="http://127.0.0.1:9/v1")
    assert await client.model_async() == "served-model"
