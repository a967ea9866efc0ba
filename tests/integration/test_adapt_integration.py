"""`lens-rag adapt` with the real packaged models, on a real Elasticsearch index and on the embedded store.

A short run (24 SciFact passages, a few training steps) proves the pipeline end to end on both stores;
the quality runs live in `benchmarks/adapt_scifact.py`.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def passages(scifact):  # type: ignore[no-untyped-def]
    return sorted(scifact.corpus, key=lambda d: d.id)[:24]


def _adapt_and_check(store, passages, out: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from lens_rag.encoders.dense import SentenceTransformerDenseEncoder
    from lens_rag.encoders.mlm import MLMSparseEncoder
    from lens_rag.indexing import index_documents
    from lens_rag.training.adapt import AdaptOptions, adapt_store

    sparse, dense = MLMSparseEncoder(progress=False), SentenceTransformerDenseEncoder(progress=False)
    index_documents(store, [d.without_embeddings() for d in passages], sparse_encoder=sparse, dense_encoder=dense,
                    progress=False)  # fmt: skip
    options = AdaptOptions(
        members=("sparse", "dense"), batch_size=16, negatives=4, progress=False, lr={"dense": 1e-4, "sparse": 1e-4}
    )
    report = adapt_store(store, out, options=options)
    assert report.passages == 24 and report.queries >= 24 and report.examples > 0
    assert [m.member for m in report.members] == ["sparse", "dense"]
    for m in report.members:
        assert m.steps > 0 and np.isfinite(m.last_loss)
        provenance = json.loads((Path(m.out) / "lens_rag_training.json").read_text())
        assert provenance["document_model"] in ("splade-tiny", "all-MiniLM-L6-v2")

    # The adapted query encoders search the same index: the store's document vectors stay valid.
    q = "Structural adjustments of dendritic arbors in response to synaptic input"
    sparse_q = MLMSparseEncoder(query_model=str(out / "sparse-query"), progress=False)
    dense_q = SentenceTransformerDenseEncoder(query_model=str(out / "dense-query"), progress=False)
    assert sparse_q.encode_queries([q])[0] != sparse.encode_queries([q])[0]
    assert not np.allclose(dense_q.encode_queries_array([q]), dense.encode_queries_array([q]))
    from lens_rag.retrieval import DenseRetriever, SparseRetriever

    assert len(SparseRetriever(store, sparse_q).retrieve(q, top_k=5)) == 5  # passes the identity check
    assert len(DenseRetriever(store, dense_q).retrieve(q, top_k=5)) == 5


def test_adapt_on_elasticsearch(es_url: str, passages, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from lens_rag.stores.elasticsearch import ElasticsearchStore

    store = ElasticsearchStore(es_url, index=f"lens-rag-test-adapt-{uuid.uuid4().hex[:8]}", dense_dims=384,
                               progress=False)  # fmt: skip
    try:
        _adapt_and_check(store, passages, tmp_path / "adapted", capsys)
    finally:
        store.delete_index()
        store.close()


def test_adapt_from_the_cli_on_the_embedded_store(passages, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from lens_rag.cli import main

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"_id": d.id, "title": d.meta.get("title", ""), "text": d.content})
                                for d in passages[:12]))  # fmt: skip
    store, out = str(tmp_path / "store"), tmp_path / "adapted"
    assert main(["index", str(corpus), "--store", store, "--no-progress"]) == 0
    assert main(["adapt", "--store", store, "--out", str(out), "--members", "sparse", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"--sparse-query-model {out / 'sparse-query'}" in printed
    flags = ["--sparse-query-model", str(out / "sparse-query")]
    assert main(["search", "dendritic arbor growth", "--store", store, *flags, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 10 and set().union(*(r["sources"] for r in results)) == {"bm25", "sparse", "dense"}
    # Another dense model than the one that indexed the store is refused before any training.
    assert main(["adapt", "--store", store, "--out", str(out), "--dense-model", str(tmp_path), "--no-progress"]) == 2
