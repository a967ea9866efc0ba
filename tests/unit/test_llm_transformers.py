from __future__ import annotations

import pytest

from lens_rag.errors import ConfigurationError
from lens_rag.llm.transformers_client import TransformersClient, default_cache_dir

pytestmark = pytest.mark.unit


def test_construction_loads_nothing():
    client = TransformersClient()
    assert client._model is None and client._tokenizer is None
    assert client.model == "smollm2-135m-instruct"


def test_model_name_includes_gguf_file():
    assert TransformersClient("dir", gguf_file="m.gguf").model == "dir:m.gguf"


def test_config_round_trip():
    client = TransformersClient("org/model", device="cpu", torch_dtype="bfloat16", seed=3, system_prompt="be brief")
    assert TransformersClient.from_config(client.to_config()).to_config() == client.to_config()
    assert TransformersClient.from_config({"model": "x"}).model == "x"


def test_invalid_model():
    with pytest.raises(ConfigurationError, match="model must be a Hugging Face name or a path"):
        TransformersClient("")


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LENS_RAG_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path


def test_system_prompt_is_prepended_once():
    client = TransformersClient(system_prompt="sys")
    assert client._messages("hi")[0] == {"role": "system", "content": "sys"}
    msgs = [{"role": "system", "content": "mine"}, {"role": "user", "content": "u"}]
    assert client._messages(msgs) == msgs
