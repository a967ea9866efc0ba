"""LENS head builder: k-means head, the mean-logit identity, errors, and a loadable output directory."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from lens_rag.encoders.head_builder import (
    build_head_command,
    build_lens_head,
    centroids_from_assignments,
    kmeans,
)
from lens_rag.encoders.lens import LENSEncoder
from lens_rag.errors import ConfigurationError, ModelLoadError

pytestmark = pytest.mark.unit


def test_cluster_logit_is_mean_of_member_token_logits():
    torch.manual_seed(0)
    weight = torch.randn(50, 16)
    assignments = torch.arange(50) % 7  # a known clustering
    head = centroids_from_assignments(weight, assignments, 7)
    h = torch.randn(5, 16)
    cluster_logits = h @ head.T
    token_logits = h @ weight.T
    for c in range(7):
        torch.testing.assert_close(
            cluster_logits[:, c], token_logits[:, assignments == c].mean(dim=1), atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("backend", ["faiss", "sklearn"])
def test_kmeans_is_deterministic_and_backends_agree(backend):
    pytest.importorskip("faiss") if backend == "faiss" else None
    x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    c1, l1, _, _ = kmeans(x, 10, seed=3, backend=backend, progress=False)
    c2, l2, _, _ = kmeans(x, 10, seed=3, backend=backend, progress=False)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(c1, c2)
    assert np.bincount(l1, minlength=10).min() > 0


def test_backends_give_the_same_clustering():
    pytest.importorskip("faiss")
    x = np.random.default_rng(1).normal(size=(200, 6)).astype(np.float32)
    _, la, _, _ = kmeans(x, 5, seed=0, backend="faiss", progress=False)
    _, lb, _, _ = kmeans(x, 5, seed=0, backend="sklearn", progress=False)
    np.testing.assert_array_equal(la, lb)


def test_build_lens_head_on_a_causal_lm(tiny_causal_lm_dir, caplog):
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir)
    with caplog.at_level(logging.WARNING, logger="lens_rag.encoders.head_builder"):
        head = build_lens_head(lm, n_clusters=8, seed=0, progress=False)
    assert "needs fine-tuning" in caplog.text
    assert head.weight.shape == (8, 32) and head.token_to_cluster.shape == (lm.config.vocab_size,)
    expected = centroids_from_assignments(lm.lm_head.weight, head.token_to_cluster, 8)
    torch.testing.assert_close(head.weight, expected)
    again = build_lens_head(lm, n_clusters=8, seed=0, progress=False)
    torch.testing.assert_close(head.weight, again.weight, atol=0, rtol=0)
    assert "needs fine-tuning" in (build_lens_head.__doc__ or "")


def test_n_clusters_larger_than_vocabulary_is_refused():
    with pytest.raises(ConfigurationError, match=r"n_clusters must be between 1 and the vocabulary size \(20\)"):
        build_lens_head(torch.randn(20, 4), n_clusters=21)
    with pytest.raises(ConfigurationError, match="n_clusters"):
        build_lens_head(torch.randn(20, 4), n_clusters=0)


def test_model_without_lm_head_is_refused(tiny_backbone_only_dir):
    from transformers import AutoModel

    with pytest.raises(ModelLoadError, match=r"no LM head \(get_output_embeddings\(\) returned None\)"):
        build_lens_head(AutoModel.from_pretrained(tiny_backbone_only_dir), n_clusters=4)
    with pytest.raises(ModelLoadError, match=r"no LM head: \['lm_head.weight'\] missing"):
        build_head_command(str(tiny_backbone_only_dir), n_clusters=4, out="/nonexistent/never-written")


def test_build_head_command_writes_a_loadable_lens_model(tiny_causal_lm_dir, tmp_path):
    out = build_head_command(str(tiny_causal_lm_dir), n_clusters=6, out=str(tmp_path / "lens"), seed=1, progress=False)
    config = json.loads((out / "lens_config.json").read_text())
    assert config["trained"] is False and "fine-tuning" in config["warning"]
    assert config["n_clusters"] == 6 and config["kmeans"]["seed"] == 1 and config["marker_tokens_added"] == 3
    enc = LENSEncoder.load(out, progress=False)
    assert enc.dimension == 6
    ids, pos = enc.pooled_positions("what causes scurvy", is_query=True)
    assert enc._tokenizer.convert_ids_to_tokens(ids[pos[0]]) == "<query>"
    q, d = enc.encode_queries(["what causes scurvy"])[0], enc.encode_documents(["vitamin c lack causes scurvy"])[0]
    assert 0 < len(q) <= 6 and abs(d.norm() - 1) < 1e-5


def test_cluster_bias_makes_cluster_logit_the_mean_of_member_logits_with_bias(tiny_mlm_dir):
    from transformers import AutoModelForMaskedLM

    from lens_rag.encoders.head_builder import cluster_bias

    mlm = AutoModelForMaskedLM.from_pretrained(tiny_mlm_dir)
    decoder = mlm.get_output_embeddings()
    with torch.no_grad():
        decoder.bias.copy_(torch.randn(decoder.bias.shape, generator=torch.Generator().manual_seed(3)))
    head = build_lens_head(mlm, n_clusters=5, seed=0, progress=False, warn_untrained=False)
    assert head.bias is not None and head.bias.shape == (5,)
    h = torch.randn(4, decoder.weight.shape[1])
    with torch.no_grad():
        token_logits = h @ decoder.weight.T + decoder.bias
    cluster_logits = h @ head.weight.T + head.bias
    for c in range(5):
        members = head.token_to_cluster == c
        torch.testing.assert_close(cluster_logits[:, c], token_logits[:, members].mean(dim=1), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        cluster_bias(torch.tensor([1.0, 2.0, 3.0, 10.0]), torch.tensor([0, 0, 0, 2]), 3), torch.tensor([2.0, 0.0, 10.0])
    )


def test_causal_head_has_no_bias_and_a_wrong_bias_is_refused(tiny_causal_lm_dir):
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir)
    assert build_lens_head(lm, n_clusters=4, progress=False).bias is None
    weight = lm.get_output_embeddings().weight
    with pytest.raises(ConfigurationError, match=r"bias must have shape \(\d+,\) like the head's rows, got \(3,\)"):
        build_lens_head(weight, n_clusters=4, progress=False, bias=torch.zeros(3))


def test_build_head_command_on_a_masked_lm_writes_an_untrained_mlm_directory(tiny_mlm_dir, tmp_path, caplog):
    from lens_rag.encoders.mlm import CLUSTER_HEAD_FILE, MLMSparseEncoder

    with caplog.at_level(logging.WARNING):
        out = build_head_command(str(tiny_mlm_dir), n_clusters=6, out=str(tmp_path / "mlm"), progress=False)
    assert (out / CLUSTER_HEAD_FILE).is_file() and not (out / "lens_config.json").exists()
    assert "UNTRAINED" in caplog.text
    assert MLMSparseEncoder(str(out), progress=False).dimension == 6
