from __future__ import annotations

import json

import pytest
from _llm_fakes import FakeLLM

from lens_rag.errors import ConfigurationError
from lens_rag.llm import (
    LLMCache,
    LLMClient,
    OpenAICompatibleClient,
    TransformersClient,
    llm_from_config,
    make_llm_client,
)
from lens_rag.llm.base import check_generation_args, prompt_key, to_messages

pytestmark = pytest.mark.unit


def test_to_messages_wraps_strings_and_checks_messages():
    assert to_messages("hi") == [{"role": "user", "content": "hi"}]
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert to_messages(msgs) == msgs
    with pytest.raises(ConfigurationError, match="prompt is empty"):
        to_messages("  ")
    with pytest.raises(ConfigurationError, match="prompt message 0"):
        to_messages([{"content": "no role"}])
    with pytest.raises(ConfigurationError, match="no messages"):
        to_messages([])


@pytest.mark.parametrize(
    ("args", "message"),
    [((0, 1.0, 5), "n must be"), ((1, -1.0, 5), "temperature must be"), ((1, 1.0, 0), "max_tokens must be")],
)
def test_check_generation_args(args, message):
    with pytest.raises(ConfigurationError, match=message):
        check_generation_args(*args)


def test_prompt_key_depends_on_every_part():
    base = prompt_key("m", "p", 5, 1.0, 128)
    assert base == prompt_key("m", [{"role": "user", "content": "p"}], 5, 1.0, 128)
    variants = [("m2", "p", 5, 1.0, 128), ("m", "p2", 5, 1.0, 128), ("m", "p", 4, 1.0, 128), ("m", "p", 5, 0.7, 128)]
    variants.append(("m", "p", 5, 1.0, 64))
    assert len({base, *(prompt_key(*v) for v in variants)}) == 6


def test_cache_memory_and_disk(tmp_path):
    cache = LLMCache(tmp_path / "c")
    assert cache.get("k" * 64) is None
    cache.put("k" * 64, ["a", "b"], model="m", prompt="p")
    assert cache.get("k" * 64) == ["a", "b"]
    files = list((tmp_path / "c").rglob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["model"] == "m"
    assert LLMCache(tmp_path / "c").get("k" * 64) == ["a", "b"]
    assert (cache.hits, cache.misses) == (1, 1)


def test_cache_ignores_corrupt_entry(tmp_path):
    cache = LLMCache(tmp_path)
    cache.put("ab" * 32, ["x"])
    next(tmp_path.rglob("*.json")).write_text("{not json")
    assert LLMCache(tmp_path).get("ab" * 32) is None


def test_fake_and_real_clients_satisfy_the_protocol():
    assert isinstance(FakeLLM(), LLMClient)
    assert isinstance(OpenAICompatibleClient(base_url="http://127.0.0.1:9/v1", model="m"), LLMClient)
    assert isinstance(TransformersClient(), LLMClient)


def test_make_llm_client_picks_backend(monkeypatch):
    monkeypatch.delenv("LENS_RAG_LLM_URL", raising=False)
    local = make_llm_client()
    assert isinstance(local, TransformersClient) and local.model == "smollm2-135m-instruct"
    remote = make_llm_client(base_url="http://127.0.0.1:9/v1", model="qwen")
    assert isinstance(remote, OpenAICompatibleClient) and remote.base_url == "http://127.0.0.1:9/v1"
    monkeypatch.setenv("LENS_RAG_LLM_URL", "http://127.0.0.1:8/v1")
    assert isinstance(make_llm_client(), OpenAICompatibleClient)
    assert isinstance(make_llm_client(model="Qwen/Qwen2.5-1.5B-Instruct", backend="transformers"), TransformersClient)
    with pytest.raises(ConfigurationError, match="backend is 'vllm'"):
        make_llm_client(backend="vllm")


def test_llm_from_config_round_trips():
    client = OpenAICompatibleClient(base_url="http://127.0.0.1:9/v1", model="m", timeout=5.0, n_mode="loop")
    again = llm_from_config(client.to_config())
    assert isinstance(again, OpenAICompatibleClient) and again.to_config() == client.to_config()
    local = TransformersClient("some/model", device="cpu")
    assert llm_from_config(local.to_config()).to_config() == local.to_config()
    with pytest.raises(ConfigurationError, match="type is 'x'"):
        llm_from_config({"type": "x"})
