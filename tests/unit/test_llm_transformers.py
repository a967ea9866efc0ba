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


class _Inputs(dict):
    def to(self, device):
        return self


class _FakeTokenizer:
    pad_token_id = 0

    def apply_chat_template(self, messages, **kwargs):
        import torch

        return _Inputs(input_ids=torch.zeros((1, 3), dtype=torch.long))

    def batch_decode(self, output, skip_special_tokens=True):
        return [f" answer {int(row[-1])} " for row in output]


class _FakeModel:
    """Behaves like transformers' `generate`: refuses several sequences from greedy decoding."""

    def __init__(self):
        self.calls: list[dict] = []

    def generate(self, input_ids, **kwargs):
        import torch

        self.calls.append(kwargs)
        n = kwargs["num_return_sequences"]
        if not kwargs["do_sample"] and n > 1:
            raise ValueError("Greedy methods without beam search do not support `num_return_sequences` != 1")
        return torch.cat([input_ids.repeat(n, 1), torch.arange(n).reshape(n, 1) + 1], dim=1)


def _loaded_client(**kwargs) -> tuple[TransformersClient, _FakeModel]:
    client = TransformersClient("fake/model", **kwargs)
    model = _FakeModel()
    client._model, client._tokenizer, client._device = model, _FakeTokenizer(), "cpu"
    return client, model


def test_greedy_n_decodes_once_and_repeats_the_answer():
    client, model = _loaded_client()
    assert client.generate("q", n=3, temperature=0.0, max_tokens=4) == ["answer 1"] * 3
    assert len(model.calls) == 1 and model.calls[0]["num_return_sequences"] == 1
    assert model.calls[0]["do_sample"] is False


def test_sampled_n_asks_for_n_sequences():
    client, model = _loaded_client(seed=1)
    assert client.generate("q", n=3, temperature=0.7, max_tokens=4) == ["answer 1", "answer 2", "answer 3"]
    assert model.calls[0]["num_return_sequences"] == 3 and model.calls[0]["do_sample"] is True


async def test_lamer_with_greedy_local_generation_does_not_fall_back():
    import warnings

    from _llm_fakes import FakeRetriever

    from lens_rag.lamer import LameRRetriever
    from lens_rag.llm.base import LLMFallbackWarning

    client, _ = _loaded_client()
    lamer = LameRRetriever(FakeRetriever(), client, n_answers=3, temperature=0.0, cache=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LLMFallbackWarning)
        augmented = lamer.augment("what is it")
        augmented_async = await lamer.augment_async("what is it")
    assert not augmented.fell_back and augmented.answers == ["answer 1"] * 3
    assert not augmented_async.fell_back and augmented_async.text == augmented.text
