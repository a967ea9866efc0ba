"""Training a clustered (LENS) head on a tiny random BERT MLM: loss falls, the result loads, bad arguments fail."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lens_rag.documents import Document
from lens_rag.encoders.mlm import CLUSTER_HEAD_FILE, MLMSparseEncoder
from lens_rag.errors import ConfigurationError
from lens_rag.training.cluster_head import (
    ClusterHeadConfig,
    export_clustered_mlm,
    train_cluster_head,
    train_head_command,
)

pytestmark = pytest.mark.unit

_WORDS = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
    "upsilon phi chi psi omega aspirin heart attack risk scurvy vitamin"
).split()


def _corpus(n: int = 12) -> list[Document]:
    rng = np.random.default_rng(3)
    docs = []
    for i in range(n):
        title = " ".join(rng.choice(_WORDS, 3))
        body = ". ".join(" ".join(rng.choice(_WORDS, 6)) for _ in range(3)) + "."
        docs.append(Document(id=f"d{i}", content=f"{title}\n{body}", meta={"title": title}))
    return docs


def _config(**kw) -> ClusterHeadConfig:
    base = dict(
        n_clusters=8, max_steps=40, batch_size=4, negatives=2, teacher_top_k=4, learning_rate=3e-3,
        calibration_passages=8, kmeans_iterations=5, max_length=32, query_max_length=16, checkpoint_every=0,
        warmup_ratio=0.0,
    )  # fmt: skip
    return ClusterHeadConfig(**(base | kw))


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A tiny random BERT MLM whose head gives spread-out logits (the default init gives near-uniform scores)."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    torch.manual_seed(5)
    d = tmp_path_factory.mktemp("teacher")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *sorted(set(_WORDS))]
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=64, initializer_range=0.3,
    )  # fmt: skip
    model = BertForMaskedLM(config)
    with torch.no_grad():  # words, not positions, should decide the vectors
        model.bert.embeddings.position_embeddings.weight.mul_(0.01)
        model.bert.embeddings.token_type_embeddings.weight.mul_(0.01)
    model.save_pretrained(d)
    # transformers 5 ignores `vocab_file=` here (every word became [UNK]); pass the vocabulary itself.
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    assert "[UNK]" not in tokenizer.tokenize(" ".join(_WORDS))
    tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def trained(teacher_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster_head")
    kwargs = dict(work_dir=tmp / "work", embedding_cache=tmp / "emb", progress=False)
    report = train_cluster_head(str(teacher_dir), _corpus(), tmp / "model", _config(), **kwargs)
    return report, tmp, kwargs


def test_distillation_loss_falls(trained):
    report, _, _ = trained
    assert report.steps == 40 and report.stopped_by == "steps" and len(report.losses) == 40
    assert report.n_queries >= 12 and report.n_passages == 12
    first, last = np.mean(report.losses[:8]), np.mean(report.losses[-8:])
    assert last < 0.7 * first, (first, last)


def test_saved_model_loads_with_dimension_k(trained):
    report, _, _ = trained
    out = str(report.out)
    enc = MLMSparseEncoder(out, progress=False)
    assert enc.is_clustered and enc.dimension == 8
    vecs = enc.encode_documents([d.content for d in _corpus()])
    assert all(len(v) > 0 and v.indices.max() < 8 for v in vecs)
    assert enc.encode_dense(["alpha beta"]).shape == (1, 8)
    provenance = json.loads((report.out / "lens_rag_encoder.json").read_text())
    assert provenance["cluster_head"]["n_clusters"] == 8 and provenance["cluster_head"]["trained"] is True
    assert provenance["training"]["config"]["n_clusters"] == 8
    assert provenance["training"]["steps"] == 40

    from lens_rag.components import _sparse_for

    assert isinstance(_sparse_for(out, progress=False), MLMSparseEncoder)  # not the causal LENS encoder


def test_identity_names_the_trained_weights(trained, teacher_dir, tmp_path):
    from lens_rag.identity import encoder_identity

    report, _, _ = trained
    trained_enc = MLMSparseEncoder(str(report.out), progress=False)
    config = trained_enc.to_config()
    assert config["cluster_head_fingerprint"]
    assert MLMSparseEncoder.from_config(config).to_config() == config  # round trip
    full = encoder_identity(MLMSparseEncoder(str(teacher_dir)), "sparse")
    mine = encoder_identity(trained_enc, "sparse")
    assert mine["config_hash"] != full["config_hash"]
    # The same directory with other weights (trained again in place) is another encoder.
    info = json.loads((report.out / "lens_rag_encoder.json").read_text())
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(report.out, copy)
    same = encoder_identity(MLMSparseEncoder(str(copy)), "sparse")
    info["cluster_head"]["fingerprint"] = "0123456789abcdef"
    (copy / "lens_rag_encoder.json").write_text(json.dumps(info))
    changed = encoder_identity(MLMSparseEncoder(str(copy)), "sparse")
    assert same["config_hash"] != changed["config_hash"]


def test_rerun_resumes_from_the_checkpoint_and_caches(trained, teacher_dir):
    report, tmp, kwargs = trained
    again = train_cluster_head(str(teacher_dir), _corpus(), tmp / "model2", _config(), **kwargs)
    assert again.resumed_from == 40 and again.steps == 40 and again.losses == []
    a = MLMSparseEncoder(str(report.out), progress=False).encode_dense(["alpha beta gamma"])
    b = MLMSparseEncoder(str(again.out), progress=False).encode_dense(["alpha beta gamma"])
    np.testing.assert_allclose(a, b, atol=1e-6)
    cached = {p.name.split("-")[0] for p in (tmp / "work").iterdir()}
    assert {"queries", "teacher", "kmeans", "checkpoint"} <= cached


def test_untrained_export_is_the_mean_of_member_logits(tiny_mlm_dir, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    out = export_clustered_mlm(str(tiny_mlm_dir), 6, tmp_path / "untrained", seed=1, progress=False)
    assert (out / CLUSTER_HEAD_FILE).is_file()
    enc = MLMSparseEncoder(str(out), progress=False)
    got = enc.encode_dense(["alpha beta gamma", "aspirin lowers heart risk"])
    from safetensors.torch import load_file

    members = load_file(str(out / CLUSTER_HEAD_FILE))["token_to_cluster"]
    tok = AutoTokenizer.from_pretrained(tiny_mlm_dir)
    mlm = AutoModelForMaskedLM.from_pretrained(tiny_mlm_dir).eval()
    batch = tok(["alpha beta gamma", "aspirin lowers heart risk"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = mlm(**batch).logits  # [B, L, V]
    mean = torch.zeros(*logits.shape[:2], 6).index_add_(2, members, logits) / torch.bincount(members, minlength=6)
    mean = mean.masked_fill(~batch["attention_mask"].bool()[..., None], float("-inf")).amax(dim=1)
    np.testing.assert_allclose(got, torch.log1p(torch.relu(mean)).numpy(), atol=1e-5)
    info = json.loads((out / "lens_rag_encoder.json").read_text())
    assert info["cluster_head"]["trained"] is False and "UNTRAINED" in info["cluster_head"]["warning"]


def test_too_many_clusters_is_refused(tiny_mlm_dir, tmp_path):
    vocab = len((tiny_mlm_dir / "vocab.txt").read_text().split())
    with pytest.raises(ConfigurationError, match=rf"n_clusters must be between 1 and the vocabulary size \({vocab}\)"):
        train_cluster_head(
            str(tiny_mlm_dir), _corpus(), tmp_path / "m", _config(n_clusters=vocab + 1),
            work_dir=tmp_path / "w", embedding_cache=tmp_path / "e", progress=False,
        )  # fmt: skip
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_clusters": 0}, "n_clusters must be a positive integer, got 0"),
        ({"negatives": 4, "teacher_top_k": 4}, "negatives=4 must be smaller than teacher_top_k=4"),
        ({"loss": "mse"}, "loss must be one of kl, margin_mse, kl\\+margin_mse; got 'mse'"),
        ({"budget_minutes": 0}, "budget_minutes must be a number > 0, got 0"),
        ({"bias_init": "zero"}, "bias_init must be 'calibrated' or 'mean', got 'zero'"),
        ({"dropout": 1.5}, "dropout must be in \\[0, 1\\) or None, got 1.5"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        ClusterHeadConfig(**kwargs)


def test_command_argument_errors(tiny_mlm_dir, tiny_causal_lm_dir, tmp_path):
    with pytest.raises(ConfigurationError, match="--train needs --corpus PATH"):
        train_head_command(str(tiny_mlm_dir), 4, str(tmp_path / "o"), corpus=None, train=True)
    with pytest.raises(ConfigurationError, match="only read with --train"):
        train_head_command(str(tiny_mlm_dir), 4, str(tmp_path / "o"), corpus=str(tmp_path), train=False)
    with pytest.raises(ConfigurationError, match="--train needs a masked LM"):
        train_head_command(str(tiny_causal_lm_dir), 4, str(tmp_path / "o"), corpus=str(tmp_path), train=True)
    with pytest.raises(ConfigurationError, match="corpus must hold at least 2 passages"):
        train_cluster_head(str(tiny_mlm_dir), _corpus(1), tmp_path / "o", _config(), progress=False)


def test_cli_build_head_train_errors(tiny_mlm_dir, tmp_path, capsys):
    from lens_rag.cli import main

    code = main(
        ["build-head", "--model", str(tiny_mlm_dir), "--clusters", "4", "--out", str(tmp_path / "o"), "--train"]
    )
    assert code == 2 and "--train needs --corpus PATH" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_build_head_train_end_to_end(tiny_mlm_dir, tmp_path, capsys, monkeypatch):
    from lens_rag.cli import main

    monkeypatch.setenv("LENS_RAG_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"_id": d.id, "title": d.meta["title"], "text": d.content}) for d in _corpus(8)) + "\n"
    )
    out = tmp_path / "model"
    argv = ["build-head", "--model", str(tiny_mlm_dir), "--clusters", "5", "--out", str(out), "--train",
            "--corpus", str(corpus), "--max-steps", "3", "--batch-size", "2", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "trained 5-cluster model written to" in capsys.readouterr().out
    assert MLMSparseEncoder(str(out), progress=False).dimension == 5


def test_query_word_dropout_keeps_special_tokens_and_one_word():
    from lens_rag.training.cluster_head import _drop_tokens

    rng = np.random.default_rng(0)
    ids = [101, 5, 6, 7, 8, 9, 102]
    for _ in range(20):
        got = _drop_tokens(ids, 0.99, rng)
        assert got[0] == 101 and got[-1] == 102 and 3 <= len(got) <= len(ids)
        assert set(got[1:-1]) <= {5, 6, 7, 8, 9}
    assert _drop_tokens(ids, 0.0, rng) == ids
    assert _drop_tokens([101, 5, 102], 0.99, rng) == [101, 5, 102]  # one word: nothing to drop
    with pytest.raises(ConfigurationError, match=r"query_word_dropout must be in \[0, 1\), got 1.0"):
        ClusterHeadConfig(query_word_dropout=1.0)


def test_training_with_query_word_dropout_runs(teacher_dir, tmp_path):
    report = train_cluster_head(
        str(teacher_dir), _corpus(), tmp_path / "m", _config(max_steps=3, query_word_dropout=0.5),
        work_dir=tmp_path / "w", embedding_cache=tmp_path / "e", progress=False,
    )  # fmt: skip
    assert report.steps == 3 and all(np.isfinite(report.losses))


def test_an_already_clustered_model_is_refused_as_teacher(trained, tmp_path):
    report, _, _ = trained
    with pytest.raises(ConfigurationError, match="already has a clustered head"):
        train_cluster_head(str(report.out), _corpus(), tmp_path / "again", _config(), progress=False)
