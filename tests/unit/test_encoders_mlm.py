"""MLM (SPLADE-family) encoder on a tiny random BERT: exact pooling, batching, errors, config."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from lens_rag.encoders.mlm import MLMSparseEncoder
from lens_rag.encoders.pooling import max_pool_saturated_logits, rows_to_sparse
from lens_rag.errors import ConfigurationError, ModelLoadError

pytestmark = pytest.mark.unit

TEXTS = ["alpha beta gamma", "what causes scurvy ? vitamin c lack of vitamin c", "one", "aspirin lowers heart risk"]


def _naive(model_dir, texts, max_length=256):
    """The textbook formula: log1p(relu(full logits)), masked, max over positions."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**batch).logits
    act = torch.log1p(torch.relu(logits)) * batch["attention_mask"][..., None]
    return act.amax(dim=1).numpy()


def test_fused_pooling_equals_naive_formula():
    torch.manual_seed(0)
    hidden, weight, bias = torch.randn(3, 7, 8), torch.randn(50, 8), torch.randn(50)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [0] * 7], dtype=torch.bool)
    got = max_pool_saturated_logits(hidden, weight, mask, bias, vocab_chunk=16)
    logits = hidden @ weight.T + bias
    want = torch.log1p(torch.relu(logits)).masked_fill(~mask[..., None], 0).amax(dim=1)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert torch.all(got[2] == 0)
    vecs = rows_to_sparse(got.numpy())
    assert len(vecs[2]) == 0 and vecs[0].values.min() > 0


def test_construction_does_not_load():
    enc = MLMSparseEncoder("/does/not/exist")
    assert enc._model is None and enc._tokenizer is None
    assert MLMSparseEncoder().name == "splade-tiny"


def test_matches_naive_formula_and_batching(tiny_mlm_dir):
    enc = MLMSparseEncoder(str(tiny_mlm_dir), batch_size=2, progress=False)
    got = enc.encode_dense(TEXTS)
    np.testing.assert_allclose(got, _naive(tiny_mlm_dir, TEXTS), atol=1e-5)
    single = np.concatenate([enc.encode_dense([t]) for t in TEXTS])
    np.testing.assert_allclose(got, single, atol=1e-5)
    vecs = enc.encode_documents(TEXTS)
    for row, v in zip(got, vecs):
        assert v.values.min() > 0 and np.all(np.diff(v.indices) > 0)
        np.testing.assert_array_equal(np.flatnonzero(row), v.indices)
    assert enc.encode_queries(TEXTS) == vecs  # same model, same length: same vectors


def test_empty_text_raises_naming_index(tiny_mlm_dir):
    enc = MLMSparseEncoder(str(tiny_mlm_dir), progress=False)
    with pytest.raises(ConfigurationError, match=r"texts\[2\] is empty or whitespace"):
        enc.encode_documents(["alpha", "beta", " \n"])
    with pytest.raises(ConfigurationError, match=r"texts\[0\] must be a string"):
        enc.encode_queries([None])
    assert enc.encode_documents([]) == []


def test_long_text_truncated_with_warning(tiny_mlm_dir, caplog):
    enc = MLMSparseEncoder(str(tiny_mlm_dir), max_length=8, query_max_length=5, progress=False)
    long_text = " ".join(["alpha", "beta"] * 30)
    with caplog.at_level(logging.WARNING, logger="lens_rag.encoders.mlm"):
        got = enc.encode_dense([long_text, "alpha beta"])
    assert "1 of 2 texts exceed max_length=8" in caplog.text
    np.testing.assert_allclose(got, _naive(tiny_mlm_dir, [long_text, "alpha beta"], max_length=8), atol=1e-5)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lens_rag.encoders.mlm"):
        enc.encode_queries([long_text])
    assert "max_length=5" in caplog.text


def test_model_without_mlm_head_is_refused(tmp_path, tiny_mlm_dir):
    from transformers import AutoTokenizer, BertModel

    bare = BertModel.from_pretrained(tiny_mlm_dir)
    bare.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_mlm_dir).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=r"has no trained MLM head \(missing: \['cls\.predictions"):
        MLMSparseEncoder(str(tmp_path)).warm_up()


def test_config_round_trip_and_save(tiny_mlm_dir, tmp_path):
    enc = MLMSparseEncoder(str(tiny_mlm_dir), max_length=64, batch_size=4, progress=False, query_max_length=16)
    cfg = json.loads(json.dumps(enc.to_config()))
    assert MLMSparseEncoder.from_config(cfg).to_config() == enc.to_config()
    assert MLMSparseEncoder.from_config({"model": str(tiny_mlm_dir)}).max_length == 256
    before = enc.encode_documents(TEXTS)
    out = enc.save(tmp_path / "saved")
    saved = json.loads((out / "lens_rag_encoder.json").read_text())
    assert saved["max_length"] == 64 and "transformers" in saved["library_versions"] and "max" in saved["pooling"]
    after = MLMSparseEncoder(str(out), max_length=64, progress=False).encode_documents(TEXTS)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_allclose(a.values, b.values, atol=1e-6)


@pytest.mark.parametrize(("kwargs", "match"), [({"max_length": 0}, "max_length"), ({"batch_size": -1}, "batch_size")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        MLMSparseEncoder(**kwargs)


def test_clustered_head_file_replaces_the_vocabulary_head(tiny_mlm_dir, tmp_path):
    import shutil

    from safetensors.torch import save_file

    from lens_rag.encoders.mlm import CLUSTER_HEAD_FILE

    d = tmp_path / "clustered"
    shutil.copytree(tiny_mlm_dir, d)
    enc_full = MLMSparseEncoder(str(tiny_mlm_dir), progress=False)
    full_dim = enc_full.dimension
    hidden = int(enc_full._weight.shape[1])
    torch.manual_seed(4)
    weight, bias = torch.randn(3, hidden), torch.randn(3)
    save_file(
        {"weight": weight, "bias": bias, "token_to_cluster": torch.arange(full_dim) % 3}, str(d / CLUSTER_HEAD_FILE)
    )
    enc = MLMSparseEncoder(str(d), progress=False)
    assert enc.is_clustered and not enc_full.is_clustered
    assert enc.dimension == 3
    got = enc.encode_dense(TEXTS)
    # The same body, the 3-row head: log1p(relu(max over real tokens of h @ weight.T + bias)).
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForMaskedLM.from_pretrained(d).eval()
    model.cls.predictions.decoder = torch.nn.Identity()
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**batch).logits @ weight.T + bias
    want = torch.log1p(torch.relu(logits.masked_fill(~batch["attention_mask"].bool()[..., None], -1e9).amax(1)))
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
    # Without a provenance file the identity still marks it as clustered (fingerprint unknown).
    assert enc.to_config()["cluster_head_fingerprint"] is None
    assert "cluster_head_fingerprint" not in enc_full.to_config()


def test_clustered_head_of_the_wrong_width_is_refused(tiny_mlm_dir, tmp_path):
    import shutil

    from safetensors.torch import save_file

    from lens_rag.encoders.mlm import CLUSTER_HEAD_FILE

    d = tmp_path / "bad"
    shutil.copytree(tiny_mlm_dir, d)
    save_file({"weight": torch.zeros(3, 7)}, str(d / CLUSTER_HEAD_FILE))
    with pytest.raises(ModelLoadError, match=r"must hold `weight` of shape \[k, \d+\].*got \(3, 7\)"):
        MLMSparseEncoder(str(d), progress=False).warm_up()
