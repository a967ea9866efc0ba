"""LENS encoder: released layout, bidirectional attention, pooled positions, padding, head loading."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from lens_rag.encoders.lens import (
    HEAD_FILE,
    LENSEncoder,
    load_lens_head,
    make_bidirectional,
    padding_only_mask,
)
from lens_rag.errors import ConfigurationError, ModelLoadError

pytestmark = pytest.mark.unit

torch.set_num_threads(1)


def _first_position_output(model, ids: list[int]) -> torch.Tensor:
    input_ids = torch.tensor([ids])
    mask = torch.ones_like(input_ids)
    with torch.inference_mode():
        out = model(input_ids=input_ids, attention_mask=padding_only_mask(mask, torch.float32)).last_hidden_state
    return out[0, 0]


def test_construction_does_not_load(released_lens_dir):
    enc = LENSEncoder(str(released_lens_dir))
    assert enc._model is None and enc._tokenizer is None and enc._head is None
    enc2 = LENSEncoder("/does/not/exist")  # no I/O: a wrong path only fails at warm_up
    assert enc2.name == "exist"


@pytest.mark.parametrize("kind", ["mistral", "llama"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_attention_is_bidirectional(kind, attn, tiny_decoder_config):
    """Changing the last token changes the first position's output (and would not under causal attention)."""
    from transformers import AutoModel

    torch.manual_seed(0)
    config = tiny_decoder_config(kind, 40)
    config._attn_implementation = attn
    model = AutoModel.from_config(config, attn_implementation=attn).eval()
    a, b = [2, 10, 11, 12, 3], [2, 10, 11, 13, 3]
    # Control: the untouched (causal) model ignores the change at position 0 — the test can see the difference.
    with torch.inference_mode():
        c1 = model(input_ids=torch.tensor([a])).last_hidden_state[0, 0]
        c2 = model(input_ids=torch.tensor([b])).last_hidden_state[0, 0]
    assert torch.allclose(c1, c2, atol=1e-6)
    assert make_bidirectional(model) == 2
    assert not torch.allclose(_first_position_output(model, a), _first_position_output(model, b), atol=1e-4)
    # Also without our explicit mask: the config/module switches alone make transformers build a bidirectional one.
    with torch.inference_mode():
        h1 = model(input_ids=torch.tensor([a])).last_hidden_state[0, 0]
        h2 = model(input_ids=torch.tensor([b])).last_hidden_state[0, 0]
    assert not torch.allclose(h1, h2, atol=1e-4)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_document_vector_sees_its_last_token(released_lens_copy, attn):
    """End to end: pooled positions exclude the last content token, so only bidirectional attention can see it."""
    enc = LENSEncoder(str(released_lens_copy), progress=False, attn_implementation=attn)
    v1, v2 = enc.encode_documents(["alpha beta gamma delta", "alpha beta gamma epsilon"])
    _, pos = enc.pooled_positions("alpha beta gamma delta", is_query=False)
    assert pos == [0, 1, 2, 3]  # BOS, alpha, beta, gamma — not delta, not EOS
    assert abs(v1.dot(v2) - 1.0) > 1e-6


def test_pooled_positions_query_and_document(released_lens_copy):
    enc = LENSEncoder(str(released_lens_copy), instruction="given a query , retrieve relevant passages")
    ids, pos = enc.pooled_positions("what causes scurvy", is_query=True)
    tok = enc._tokenizer
    tokens = tok.convert_ids_to_tokens(ids)
    assert tokens[0] == "<s>" and tokens[-1] == "</s>"
    assert tokens[1] == "<instruct>"
    q = tokens.index("<query>")
    # From <query> up to, excluding, the last content token ("scurvy") and EOS.
    assert [tokens[i] for i in pos] == ["<query>", "what", "causes"]
    assert pos == list(range(q, len(ids) - 2))

    ids, pos = enc.pooled_positions("vitamin c lack", is_query=False)
    assert tok.convert_ids_to_tokens(ids) == ["<s>", "vitamin", "c", "lack", "</s>"]
    assert pos == [0, 1, 2]  # all but the last two, BOS included

    ids, pos = enc.pooled_positions("scurvy", is_query=False)
    assert pos == [0]


def test_left_and_right_padding_give_same_vectors(released_lens_copy):
    enc = LENSEncoder(str(released_lens_copy), batch_size=4, progress=False)
    texts = ["alpha", "alpha beta gamma delta epsilon zeta eta", "what causes scurvy", "one two three four"]
    enc.warm_up()
    encoded, _ = enc._tokenize_documents(texts)
    left = enc.encode_matrix(encoded, padding_side="left")
    right = enc.encode_matrix(encoded, padding_side="right")
    np.testing.assert_allclose(left, right, atol=1e-5)
    single = np.stack([enc.encode_matrix([e])[0] for e in encoded])
    np.testing.assert_allclose(left, single, atol=1e-5)
    queries = enc.encode_queries(texts)
    for v in queries:
        assert v.values.min() > 0 and abs(v.norm() - 1.0) < 1e-5
        assert v.indices.dtype == np.int64 and v.values.dtype == np.float32
        assert np.all(np.diff(v.indices) > 0)


def test_released_head_converts_to_safetensors_once(released_lens_copy, monkeypatch):
    enc = LENSEncoder(str(released_lens_copy), progress=False)
    first = enc.encode_documents(["alpha beta gamma"])[0]
    assert (released_lens_copy / HEAD_FILE).is_file()
    assert enc.dimension == 16

    def no_pickle(*a, **k):
        raise AssertionError("lm_head.pth must not be read once converted")

    monkeypatch.setattr(torch, "load", no_pickle)
    again = LENSEncoder(str(released_lens_copy), progress=False).encode_documents(["alpha beta gamma"])[0]
    assert first == again


def test_released_head_as_pickled_linear_loads_without_arbitrary_unpickling(tmp_path):
    head = nn.Linear(32, 6, bias=False)
    torch.save(head, tmp_path / "lm_head.pth")
    weight = load_lens_head(tmp_path)
    torch.testing.assert_close(weight, head.weight.detach())
    assert (tmp_path / HEAD_FILE).is_file()


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_released_head_with_foreign_pickle_is_refused(tmp_path):
    torch.save({"weight": _Evil()}, tmp_path / "lm_head.pth")
    with pytest.raises(ModelLoadError, match="could not be read safely"):
        load_lens_head(tmp_path)


def test_directory_without_head_names_the_missing_files(tiny_backbone_only_dir):
    enc = LENSEncoder(str(tiny_backbone_only_dir))
    with pytest.raises(ModelLoadError, match=r"lens_head\.safetensors.*lm_head\.pth"):
        enc.warm_up()


def test_empty_and_blank_texts_raise_naming_the_index(released_lens_copy):
    enc = LENSEncoder(str(released_lens_copy), progress=False)
    with pytest.raises(ConfigurationError, match=r"texts\[1\] is empty"):
        enc.encode_documents(["alpha", ""])
    with pytest.raises(ConfigurationError, match=r"texts\[0\] is empty"):
        enc.encode_queries(["   "])
    with pytest.raises(ConfigurationError, match="single string"):
        enc.encode_documents("alpha")
    assert enc.encode_documents([]) == []


def test_long_text_is_truncated_with_warning(released_lens_copy, caplog):
    enc = LENSEncoder(str(released_lens_copy), max_length=8, progress=False)
    long_text = " ".join(["alpha"] * 50)
    with caplog.at_level(logging.WARNING, logger="lens_rag.encoders.lens"):
        v = enc.encode_documents([long_text])[0]
    assert "truncated" in caplog.text and len(v) > 0
    ids, _ = enc.pooled_positions(long_text, is_query=False)
    assert len(ids) == 8 and ids[-1] == enc._tokenizer.eos_token_id
    # An instruction that fills the whole budget is a configuration error, not a silent empty query.
    with pytest.raises(ConfigurationError, match="instruction"):
        LENSEncoder(str(released_lens_copy), max_length=6).encode_queries(["what causes scurvy"])


def test_config_round_trip_and_save_load(released_lens_copy, tmp_path):
    enc = LENSEncoder(str(released_lens_copy), instruction="given a query", max_length=64, progress=False)
    cfg = json.loads(json.dumps(enc.to_config()))
    assert LENSEncoder.from_config(cfg).to_config() == enc.to_config()
    docs = ["alpha beta gamma delta", "what causes scurvy"]
    before_d, before_q = enc.encode_documents(docs), enc.encode_queries(docs)
    out = enc.save(tmp_path / "saved")
    saved = json.loads((out / "lens_config.json").read_text())
    assert saved["encoder"] == {"instruction": "given a query", "max_length": 64}
    assert {"torch", "transformers", "lens_rag"} <= set(saved["library_versions"])
    loaded = LENSEncoder.load(out, progress=False)
    assert loaded.instruction == "given a query" and loaded.max_length == 64
    for a, b in zip(before_d + before_q, loaded.encode_documents(docs) + loaded.encode_queries(docs)):
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_allclose(a.values, b.values, atol=1e-6)
    shutil.rmtree(out)


def test_bad_constructor_arguments():
    with pytest.raises(ConfigurationError, match="max_length"):
        LENSEncoder("x", max_length=2)
    with pytest.raises(ConfigurationError, match="dtype"):
        LENSEncoder("x", dtype="float8")
    with pytest.raises(ConfigurationError, match="batch_size"):
        LENSEncoder("x", batch_size=0)
