"""Adaptation without labels: mining, losses, the trainable students and a seconds-long end-to-end run."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lens_rag.documents import Document
from lens_rag.errors import ConfigurationError
from lens_rag.training import (
    flops_regularizer,
    info_nce_loss,
    listwise_kl_loss,
    margin_mse_loss,
    mine_hard_negatives,
)

pytestmark = pytest.mark.unit

WORDS = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
    "upsilon phi chi psi omega"
).split()


# ---------------------------------------------------------------------------------------------- mining
def test_topk_percpos_drops_a_hard_negative_above_95_percent_of_the_positive() -> None:
    cands = [("pos", 10.0), ("near", 9.6), ("hard", 9.4), ("mid", 5.0), ("low", 1.0)]
    ex = mine_hard_negatives("q", "pos", cands, k=2)
    assert ex is not None
    assert ex.dropped == ("near",)  # 9.6 >= 0.95 * 10: a likely unlabelled positive
    assert ex.negatives == ("hard", "mid")  # the best two below the threshold, best first
    assert ex.negative_scores == (9.4, 5.0)
    assert ex.positive_score == 10.0


def test_mining_threshold_follows_perc_and_positive_score_override() -> None:
    cands = [("a", 8.0), ("b", 7.0), ("pos", 10.0)]
    assert mine_hard_negatives("q", "pos", cands, perc=0.75).negatives == ("b",)  # type: ignore[union-attr]
    # The positive's score may come from elsewhere (it need not be among the candidates).
    ex = mine_hard_negatives("q", "pos", [("a", 8.0), ("b", 7.0)], positive_score=20.0)
    assert ex is not None and ex.negatives == ("a", "b") and ex.dropped == ()


def test_mining_skips_queries_the_teacher_cannot_place() -> None:
    assert mine_hard_negatives("q", "pos", [("a", 1.0)]) is None  # positive not retrieved
    assert mine_hard_negatives("q", "pos", [("pos", 0.0), ("a", 0.0)]) is None  # zero score: no threshold
    assert mine_hard_negatives("q", "pos", [("pos", 1.0), ("a", 0.99)]) is None  # every candidate dropped


@pytest.mark.parametrize(("k", "perc"), [(0, 0.95), (2, 0.0), (2, 1.5), (True, 0.95)])
def test_mining_rejects_bad_arguments(k: int, perc: float) -> None:
    with pytest.raises(ConfigurationError):
        mine_hard_negatives("q", "pos", [("pos", 1.0)], k=k, perc=perc)


# ---------------------------------------------------------------------------------------------- losses
def test_margin_mse_is_zero_for_equal_margins_and_positive_otherwise() -> None:
    teacher = torch.tensor([[3.0, 1.0, 0.0]])
    assert float(margin_mse_loss(teacher + 5, teacher)) == pytest.approx(0.0)  # shifts do not matter
    assert float(margin_mse_loss(torch.tensor([[1.0, 1.0, 1.0]]), teacher)) == pytest.approx((4 + 9) / 2)


def test_listwise_kl_is_zero_for_the_same_distribution_and_ignores_masked_columns() -> None:
    s = torch.tensor([[2.0, 1.0, -1.0]])
    assert float(listwise_kl_loss(s, s.clone())) == pytest.approx(0.0, abs=1e-6)
    mask = torch.tensor([[True, True, False]])
    other = torch.tensor([[2.0, 1.0, 50.0]])  # differs only where masked
    assert float(listwise_kl_loss(s, other, mask=mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(listwise_kl_loss(s, torch.tensor([[0.0, 3.0, 0.0]]))) > 0.1


def test_info_nce_falls_when_training_a_toy_problem() -> None:
    torch.manual_seed(0)
    queries, docs = torch.randn(8, 8), torch.randn(8, 8)
    # Row i: its positive doc i in column 0, the seven other docs as in-batch negatives after it.
    columns = torch.tensor([[i, *(j for j in range(8) if j != i)] for i in range(8)])
    proj = torch.nn.Linear(8, 8)
    opt = torch.optim.SGD(proj.parameters(), lr=0.1)
    losses = []
    for _ in range(100):
        loss = info_nce_loss(torch.gather(proj(queries) @ docs.T, 1, columns), temperature=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    # info_nce_loss with the positive in column 0 equals cross-entropy on that column
    s = torch.tensor([[2.0, 0.5, 0.1], [0.3, 0.2, 0.9]])
    expected = torch.nn.functional.cross_entropy(s / 0.1, torch.zeros(2, dtype=torch.long))
    assert float(info_nce_loss(s, temperature=0.1)) == pytest.approx(float(expected))


def test_losses_reject_bad_shapes() -> None:
    with pytest.raises(ConfigurationError, match="at least 2 candidates"):
        info_nce_loss(torch.zeros(3, 1))
    with pytest.raises(ConfigurationError, match="same candidates"):
        margin_mse_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ConfigurationError, match="temperature"):
        info_nce_loss(torch.zeros(2, 2), temperature=0)
    assert float(flops_regularizer(torch.tensor([[1.0, 0.0], [3.0, 0.0]]))) == pytest.approx(4.0)


# ---------------------------------------------------------------------------------------------- students
def test_sparse_student_matches_the_encoder_and_its_gradient_is_the_naive_one(tiny_mlm_dir: Path) -> None:
    from lens_rag.encoders.mlm import MLMSparseEncoder
    from lens_rag.training.students import SparseStudent

    texts = ["alpha beta gamma delta", "aspirin heart attack risk lowers", "one two three"]
    student = SparseStudent(str(tiny_mlm_dir), max_length=32)
    with torch.no_grad():
        got = student.encode_documents(texts).numpy()
    ref = MLMSparseEncoder(str(tiny_mlm_dir), max_length=32, progress=False).encode_dense(texts)
    np.testing.assert_allclose(got, ref, atol=1e-5)

    # The sparse recomputation must give autograd's gradient of the naive dense formula.
    target = torch.randn(got.shape[1])
    student.zero_grad()
    (student.encode_documents(texts) @ target).sum().backward()
    fast = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    student.zero_grad()
    features = student.tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    hidden = student.mlm(**features).logits
    logits = hidden @ student.head.weight.T + student.head.bias
    logits = logits.masked_fill(~features["attention_mask"].bool()[..., None], -1e9)
    naive = torch.log1p(torch.relu(logits.amax(dim=1)))
    (naive @ target).sum().backward()
    assert fast, "no gradient reached the body"
    for name, grad in fast.items():
        torch.testing.assert_close(grad, dict(student.named_parameters())[name].grad, atol=1e-5, rtol=1e-4)


def _tiny_dense_dir(tiny_mlm_dir: Path, out: Path) -> Path:
    """A sentence-transformers layout (Transformer → mean Pooling → Normalize) around the tiny BERT."""
    from transformers import AutoModel, AutoTokenizer

    AutoModel.from_pretrained(str(tiny_mlm_dir)).save_pretrained(out)
    AutoTokenizer.from_pretrained(str(tiny_mlm_dir)).save_pretrained(out)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (out / "modules.json").write_text(json.dumps(modules))
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True})
    )
    (out / "2_Normalize").mkdir()
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32, "do_lower_case": False}))
    return out


@pytest.fixture(scope="module")
def tiny_dense_dir(tiny_mlm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_dense_dir(tiny_mlm_dir, tmp_path_factory.mktemp("tiny_dense"))


def test_dense_student_matches_the_encoder_and_saves_a_drop_in_model(tiny_dense_dir: Path, tmp_path: Path) -> None:
    from lens_rag.encoders.dense import SentenceTransformerDenseEncoder
    from lens_rag.training.students import DenseStudent

    texts = ["alpha beta gamma delta", "one two three four five"]
    student = DenseStudent(str(tiny_dense_dir))
    with torch.no_grad():
        got = student.encode_documents(texts).numpy()
    enc = SentenceTransformerDenseEncoder(str(tiny_dense_dir), progress=False)
    np.testing.assert_allclose(got, enc.encode_documents_array(texts), atol=1e-5)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.01)
        changed = student.encode_documents(texts).numpy()
    saved = student.save(tmp_path / "student", {"note": "test"})
    reloaded = SentenceTransformerDenseEncoder(str(saved), progress=False)
    assert reloaded.backend is None  # lazy
    np.testing.assert_allclose(reloaded.encode_documents_array(texts), changed, atol=1e-5)
    assert json.loads((saved / "lens_rag_training.json").read_text())["note"] == "test"
    with pytest.raises(ConfigurationError, match="source model's directory"):
        student.save(tiny_dense_dir)


def test_dense_query_model_encodes_queries_only(tiny_dense_dir: Path, tmp_path: Path) -> None:
    from lens_rag.encoders.dense import SentenceTransformerDenseEncoder
    from lens_rag.identity import encoder_identity
    from lens_rag.training.students import DenseStudent

    student = DenseStudent(str(tiny_dense_dir))
    with torch.no_grad():
        for p in student.parameters():
            p.mul_(1.1)
    qdir = student.save(tmp_path / "q")
    base = SentenceTransformerDenseEncoder(str(tiny_dense_dir), progress=False)
    split = SentenceTransformerDenseEncoder(str(tiny_dense_dir), progress=False, query_model=str(qdir))
    texts = ["alpha beta gamma"]
    np.testing.assert_allclose(split.encode_documents_array(texts), base.encode_documents_array(texts), atol=1e-6)
    assert not np.allclose(split.encode_queries_array(texts), base.encode_queries_array(texts), atol=1e-4)
    assert encoder_identity(split, "dense") == encoder_identity(base, "dense")  # the store's vectors stay valid
    again = SentenceTransformerDenseEncoder.from_config(split.to_config())
    assert again.query_model == str(qdir)


# ---------------------------------------------------------------------------------------------- end to end
def _tiny_corpus(n: int = 24) -> list[Document]:
    rng = random.Random(0)
    docs = []
    for i in range(n):
        words = rng.sample(WORDS, 6)
        title = " ".join(words[:2])
        body = f"{' '.join(words[:4])} one two. {' '.join(words[2:6])} three four. {' '.join(words[1:5])} five six."
        docs.append(Document(id=f"d{i:02d}", content=f"{title}\n{body}", meta={"title": title}))
    return docs


def test_adapt_store_end_to_end_on_a_tiny_corpus(
    tiny_mlm_dir: Path, tiny_dense_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lens_rag.encoders.dense import SentenceTransformerDenseEncoder
    from lens_rag.encoders.mlm import MLMSparseEncoder
    from lens_rag.errors import EncoderMismatchError
    from lens_rag.indexing import index_documents
    from lens_rag.stores.embedded import EmbeddedStore
    from lens_rag.training.adapt import AdaptOptions, adapt_store

    monkeypatch.setenv("LENS_RAG_CACHE", str(tmp_path / "cache"))
    store = EmbeddedStore(tmp_path / "store")
    sparse = MLMSparseEncoder(str(tiny_mlm_dir), max_length=32, progress=False)
    dense = SentenceTransformerDenseEncoder(str(tiny_dense_dir), progress=False)
    index_documents(store, _tiny_corpus(), sparse_encoder=sparse, dense_encoder=dense, progress=False)
    opts = AdaptOptions(members=("sparse", "dense"), batch_size=8, epochs=3, negatives=3, candidate_k=10,
                        progress=False, threads=1, lr={"dense": 1e-3, "sparse": 1e-3})  # fmt: skip
    out = tmp_path / "adapted"
    report = adapt_store(
        store, out, sparse_encoder=sparse, dense_encoder=dense, options=opts, embedding_cache=tmp_path / "emb",
    )  # fmt: skip
    assert report.passages == 24 and report.queries >= 24 and report.examples > 0
    assert set(report.stages) >= {"queries", "teacher", "mine", "train:sparse", "train:dense"}
    assert report.stages["teacher"]["cached"] is False
    for member in report.members:
        assert member.steps == -(-report.examples // 8) * 3
        assert member.last_loss < member.first_loss, member
        provenance = json.loads((Path(member.out) / "lens_rag_training.json").read_text())
        assert provenance["side"] == "query" and provenance["examples"] == report.examples
    saved = json.loads((out / "adapt_report.json").read_text())
    assert saved["examples"] == report.examples

    # The adapted query encoders search the same store; the document side is untouched.
    dense_q = SentenceTransformerDenseEncoder(str(tiny_dense_dir), query_model=str(out / "dense-query"), progress=False)
    hits = store.search_dense(dense_q.encode_queries(["alpha beta"])[0], top_k=3)
    assert len(hits) == 3

    # A re-run reuses the cached queries and teacher candidates; only training runs again.
    # (no encoders passed: the ones the store recorded are used)
    rerun = AdaptOptions(**{**opts.__dict__, "members": ("dense",), "epochs": 1, "kl_weight": 0.5})
    again = adapt_store(store, out, options=rerun, embedding_cache=tmp_path / "emb")
    assert again.stages["queries"]["cached"] is True and again.stages["teacher"]["cached"] is True
    shutil.rmtree(out / "work")

    # The teacher and the document vectors must be the store's own encoders.
    with pytest.raises(EncoderMismatchError):
        adapt_store(store, out, sparse_encoder=MLMSparseEncoder(str(tiny_mlm_dir)), dense_encoder=dense, options=opts)


def test_adapt_store_refuses_bad_options_and_an_empty_store(tiny_mlm_dir: Path, tmp_path: Path) -> None:
    from lens_rag.stores.embedded import EmbeddedStore
    from lens_rag.training.adapt import AdaptOptions, adapt_store

    with pytest.raises(ConfigurationError, match="members"):
        AdaptOptions(members=("colbert",)).validate()  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="perc"):
        AdaptOptions(perc=0).validate()
    store = EmbeddedStore(tmp_path / "empty")
    with pytest.raises(ConfigurationError, match="no documents"):
        adapt_store(store, tmp_path / "out")


def test_sparse_query_model_encodes_queries_only(tiny_mlm_dir: Path, tmp_path: Path) -> None:
    from lens_rag.encoders.mlm import MLMSparseEncoder
    from lens_rag.identity import encoder_identity
    from lens_rag.indexing import _encoder_key
    from lens_rag.training.students import SparseStudent

    student = SparseStudent(str(tiny_mlm_dir), max_length=32)
    with torch.no_grad():
        for p in student.mlm.parameters():
            p.mul_(1.2)
    qdir = student.save(tmp_path / "q")
    base = MLMSparseEncoder(str(tiny_mlm_dir), max_length=32, progress=False)
    split = MLMSparseEncoder(str(tiny_mlm_dir), max_length=32, progress=False, query_model=str(qdir))
    texts = ["alpha beta gamma delta"]
    np.testing.assert_allclose(split.encode_dense(texts), base.encode_dense(texts))
    assert split.encode_queries(texts)[0] != base.encode_queries(texts)[0]
    # Same document vectors: the store's identity and the embedding cache key are unchanged.
    assert encoder_identity(split, "sparse") == encoder_identity(base, "sparse")
    assert _encoder_key(split) == _encoder_key(base)
    assert MLMSparseEncoder.from_config(split.to_config()).query_model == str(qdir)
    with pytest.raises(ConfigurationError, match="query_model"):
        MLMSparseEncoder(str(tiny_mlm_dir), query_model="")


def _cli_indexed_store(tmp_path: Path, sparse_dir: Path, dense_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The tiny corpus indexed by `lens-rag index` with the tiny models, in a private cache."""
    from lens_rag.cli import main

    monkeypatch.setenv("LENS_RAG_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "corpus.jsonl"
    src.write_text(
        "\n".join(json.dumps({"_id": d.id, "title": d.meta["title"], "text": d.content}) for d in _tiny_corpus())
    )
    store = str(tmp_path / "store")
    models = ["--sparse-model", str(sparse_dir), "--dense-model", str(dense_dir)]
    assert main(["index", str(src), "--store", store, *models, "--no-progress"]) == 0
    return store


def test_cli_adapt_then_search_with_the_adapted_query_models(
    tiny_mlm_dir: Path,
    tiny_dense_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lens_rag.cli import main

    store = _cli_indexed_store(tmp_path, tiny_mlm_dir, tiny_dense_dir, monkeypatch)
    out = tmp_path / "adapted"
    args = ["--members", "sparse,dense", "--batch-size", "8", "--threads", "1", "--no-progress"]
    code = main(["adapt", "--store", store, "--out", str(out), *args])
    assert code == 0
    printed = capsys.readouterr().out
    assert "pseudo-queries" in printed and f"--sparse-query-model {out / 'sparse-query'}" in printed
    assert (out / "sparse-query" / "lens_rag_training.json").is_file() and (
        out / "dense-query" / "modules.json"
    ).is_file()
    flags = ["--sparse-query-model", str(out / "sparse-query"), "--dense-query-model", str(out / "dense-query")]
    assert main(["search", "alpha beta", "--store", store, *flags, "--json", "--top-k", "3"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert len(hits) == 3 and {h["id"] for h in hits} <= {d.id for d in _tiny_corpus()}
    # Another document model is refused, with both names.
    assert main(["adapt", "--store", store, "--out", str(out), "--sparse-model", "splade-tiny", "--no-progress"]) == 2


def test_pseudo_queries_drop_words_deterministically_and_skip_ambiguous_ones() -> None:
    from lens_rag.expansion import HeuristicQueryGenerator
    from lens_rag.training.adapt import generate_pseudo_queries

    docs = _tiny_corpus(6)
    docs.append(Document(id="dup", content=docs[0].content, meta=dict(docs[0].meta)))  # same title as d00
    gen = HeuristicQueryGenerator(sentences=1)
    plain = generate_pseudo_queries(docs, gen)
    assert all(q.positive != "dup" and not q.qid.startswith("d00#0") for q in plain if q.text == docs[0].meta["title"])
    assert {q.positive for q in plain} >= {"d01", "d02"}
    dropped = generate_pseudo_queries(docs, gen, word_dropout=0.5, seed=3)
    assert dropped == generate_pseudo_queries(docs, gen, word_dropout=0.5, seed=3)  # seeded
    by_id = {q.qid: q.text for q in plain}
    for q in dropped:
        words = q.text.split()
        full = by_id[q.qid].split()
        assert len(words) >= min(3, len(full))
        it = iter(full)
        assert all(w in it for w in words)  # a subsequence: words are dropped, never reordered or invented
    assert any(q.text != by_id[q.qid] for q in dropped)
    with pytest.raises(ConfigurationError, match="word_dropout"):
        generate_pseudo_queries(docs, gen, word_dropout=1.0)


def test_training_masks_likely_false_negatives_out_of_the_in_batch_negatives() -> None:
    """A duplicate of the positive, dropped by mining, must not count as a negative (else loss >= log 2)."""
    from lens_rag.training.adapt import train_query_encoder
    from lens_rag.training.mining import MinedExample

    class Student(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(2, 4)

        def encode_queries(self, texts: list[str]) -> torch.Tensor:
            return self.emb(torch.tensor([int(t) for t in texts]))

    docs = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=np.float32)  # a, a-copy, b, c
    rows = {"a": 0, "a2": 1, "b": 2, "c": 3}
    examples = [
        MinedExample("0", "a", 1.0, ("c",), (0.2,), dropped=("a2",)),
        MinedExample("1", "a2", 1.0, ("b",), (0.2,), dropped=("a",)),
    ]
    torch.manual_seed(0)
    student = Student()
    steps, losses, stopped = train_query_encoder(
        student, docs, rows, examples, lr=0.5, temperature=0.1, epochs=60, batch_size=2
    )
    assert steps == 60 and not stopped
    assert losses[-1] < 0.05 < np.log(2)


def test_adapt_both_sides_then_reindex_from_the_cli(
    tiny_mlm_dir: Path,
    tiny_dense_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """GPL proper: the whole sparse model trains; its vectors change, so the store is re-indexed with it."""
    from lens_rag.cli import main
    from lens_rag.encoders.mlm import MLMSparseEncoder
    from lens_rag.stores.embedded import EmbeddedStore

    store = _cli_indexed_store(tmp_path, tiny_mlm_dir, tiny_dense_dir, monkeypatch)
    new, out = str(tmp_path / "new"), tmp_path / "adapted"
    capsys.readouterr()
    args = ["--side", "both", "--batch-size", "8", "--epochs", "2", "--threads", "1", "--no-progress"]
    assert main(["adapt", "--store", store, "--out", str(out), *args]) == 0
    printed = capsys.readouterr().out
    provenance = json.loads((out / "sparse" / "lens_rag_training.json").read_text())
    assert provenance["side"] == "both" and provenance["adapted_from"] == str(tiny_mlm_dir)
    # The document side changed: the adapted model encodes passages differently.
    text = _tiny_corpus()[0].content
    before = MLMSparseEncoder(str(tiny_mlm_dir), progress=False).encode_documents([text])[0]
    after = MLMSparseEncoder(str(out / "sparse"), progress=False).encode_documents([text])[0]
    assert before != after
    # The printed command re-indexes (the dense member keeps its model), and the new store searches.
    command = printed.split("lens-rag reindex ", 1)[1].split("\n", 1)[0].replace("NEW_STORE", new).split()
    assert command[:4] == ["--from", store, "--store", new]
    assert main(["reindex", *command, "--no-progress"]) == 0
    assert EmbeddedStore(new).info["encoders"]["sparse"]["name"] == str((out / "sparse").resolve())
    assert EmbeddedStore(new).info["encoders"]["dense"]["name"] == str(tiny_dense_dir.resolve())
    assert main(["search", "alpha beta", "--store", new, "--json"]) == 0
    # The old store refuses the adapted model: its vectors were made by the original one.
    assert main(["search", "alpha beta", "--store", store, "--sparse-model", str(out / "sparse")]) == 2


def test_a_sparse_query_model_is_refused_for_a_lens_encoder() -> None:
    from lens_rag.components import Encoders

    encoders = Encoders(sparse_config={"type": "lens", "model": "/nowhere"}, sparse_query_model="/adapted")
    with pytest.raises(ConfigurationError, match="masked-LM"):
        _ = encoders.sparse
