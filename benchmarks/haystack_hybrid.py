"""Haystack hybrid pipeline on BEIR SciFact: quality and latency against the core and against elasticsearch-haystack.

Rows (same data, same process, queries encoded inside every timed call, p50 over the queries):

- ``core hybrid`` — `lens_rag.HybridRetriever` (BM25 + SPLADE-tiny + MiniLM, min–max fusion) called directly;
- ``haystack LensRagHybridRetriever`` — the same through a Haystack `Pipeline` (embedders, three retrievers,
  `LensRagDocumentJoiner`); its overhead over the core row is the pipeline's cost;
- on Elasticsearch (``--es-url`` or ``ES_URL``) the two rows again over lens-rag's ES store, then on
  elasticsearch-haystack's own `ElasticsearchDocumentStore`: its `ElasticsearchHybridRetriever` (BM25 +
  kNN, RRF, its defaults incl. ``fuzziness="AUTO"``, with our MiniLM query embedder), our
  `LensRagHybridRetriever` on that store, and its `ElasticsearchSparseEmbeddingRetriever` (which needs
  Elasticsearch 8.15+; on older servers the row records its error).

Document vectors come from lens-rag's embedding cache (`$LENS_RAG_CACHE/embeddings`), filled on first use.
Every run uses fresh indices and deletes them. Usage::

    python benchmarks/haystack_hybrid.py [--data /work/shared/datasets/scifact] [--queries 300] [--es-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no network calls inside timed runs

from haystack import Document, Pipeline
from haystack_integrations.components.embedders.lens_rag import (
    LensRagDenseDocumentEmbedder,
    LensRagDenseTextEmbedder,
    LensRagSparseDocumentEmbedder,
)
from haystack_integrations.components.retrievers.lens_rag import LensRagHybridRetriever
from haystack_integrations.document_stores.lens_rag import LensRagDocumentStore

from lens_rag import BM25Retriever, DenseRetriever, HybridRetriever, SparseRetriever
from lens_rag.components import Encoders
from lens_rag.evaluation import evaluate_run, load_beir
from lens_rag.indexing import default_cache_dir

RESULTS = Path(__file__).parent / "results" / "haystack_hybrid.json"


def _score(run: dict, qrels: Any, queries: dict[str, str]) -> float:
    return round(evaluate_run(run, {q: qrels[q] for q in queries}, metrics=("ndcg@10",))["ndcg@10"], 4)


def measure(name: str, search: Callable[[str], list[tuple[str, float]]], queries: dict[str, str], qrels: Any) -> dict:
    for q in list(queries.values())[:5]:  # warm-up: models, caches, connections
        search(q)
    run, times = {}, []
    for qid, text in queries.items():
        start = time.perf_counter()
        hits = search(text)
        times.append((time.perf_counter() - start) * 1000)
        run[qid] = {doc_id: score for doc_id, score in hits}
    row = {"name": name, "ndcg@10": _score(run, qrels, queries), "p50_ms": round(statistics.median(times), 1)}
    print(f"{name:<62} nDCG@10 {row['ndcg@10']:.4f}   p50 {row['p50_ms']:7.1f} ms", flush=True)
    return row


def measure_pair(label: str, a: Callable, b: Callable, queries: dict[str, str], qrels: Any) -> list[dict]:
    """Core (`a`) and Haystack (`b`) alternately on every query, so load on a shared machine hits both alike;
    the overhead is the median of the per-query time ratios."""
    for q in list(queries.values())[:5]:
        a(q), b(q)
    runs: list[dict] = [{}, {}]
    times: list[list[float]] = [[], []]
    for i, (qid, text) in enumerate(queries.items()):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for k in order:
            start = time.perf_counter()
            hits = (a, b)[k](text)
            times[k].append((time.perf_counter() - start) * 1000)
            runs[k][qid] = {doc_id: score for doc_id, score in hits}
    rows = []
    for k, name in enumerate((f"{label}: core hybrid", f"{label}: haystack LensRagHybridRetriever")):
        row = {
            "name": name,
            "ndcg@10": _score(runs[k], qrels, queries),
            "p50_ms": round(statistics.median(times[k]), 1),
        }
        print(f"{name:<62} nDCG@10 {row['ndcg@10']:.4f}   p50 {row['p50_ms']:7.1f} ms", flush=True)
        rows.append(row)
    ratio = statistics.median(h / c for c, h in zip(times[0], times[1], strict=True)) - 1
    rows[1]["overhead_vs_core"] = round(ratio, 3)
    same = sum(list(runs[0][q]) == list(runs[1][q]) for q in queries)
    rows[1]["same_top10_as_core"] = f"{same}/{len(queries)}"
    print(f"{'':<62} overhead over the core (median per-query ratio): {ratio:+.1%}; same top-10 {same}/{len(queries)}")
    return rows


def _docs(dataset: Any) -> list[Document]:
    docs = [Document(id=d.id, content=d.content, meta=d.meta) for d in dataset.corpus]
    cache = str(default_cache_dir() / "embeddings")
    for embedder in (
        LensRagSparseDocumentEmbedder(cache_dir=cache, progress_bar=False),
        LensRagDenseDocumentEmbedder(cache_dir=cache, progress_bar=False),
    ):
        embedder.warm_up()
        docs = embedder.run(docs)["documents"]
    return docs


def _pair(label: str, store: LensRagDocumentStore, encoders: Encoders, queries: Any, qrels: Any) -> list[dict]:
    s = store.store
    parts = [BM25Retriever(s), SparseRetriever(s, encoders.sparse), DenseRetriever(s, encoders.dense)]
    core = HybridRetriever(parts, fusion="minmax", candidate_k=100)
    pipeline = Pipeline()
    pipeline.add_component("retriever", LensRagHybridRetriever(document_store=store, top_k=10, candidate_k=100))
    pipeline.warm_up()

    def via_core(q: str) -> list[tuple[str, float]]:
        return [(h.id, h.score) for h in core.retrieve(q, top_k=10)]

    def via_haystack(q: str) -> list[tuple[str, float]]:
        return [(d.id, d.score) for d in pipeline.run({"retriever": {"query": q}})["retriever"]["documents"]]

    return measure_pair(label, via_core, via_haystack, queries, qrels)


def _elasticsearch_haystack(es_url: str, docs: list[Document], queries: Any, qrels: Any) -> list[dict]:
    from haystack.dataclasses import SparseEmbedding
    from haystack.document_stores.types import DuplicatePolicy
    from haystack_integrations.components.retrievers.elasticsearch import (
        ElasticsearchHybridRetriever,
        ElasticsearchSparseEmbeddingRetriever,
    )
    from haystack_integrations.document_stores.elasticsearch import ElasticsearchDocumentStore

    index = f"lens-rag-bench-hs-{uuid.uuid4().hex[:8]}"
    store = ElasticsearchDocumentStore(hosts=es_url, index=index, sparse_vector_field="sparse_vec")
    rows = []
    try:
        store.write_documents(docs, policy=DuplicatePolicy.OVERWRITE, refresh=True)
        theirs = ElasticsearchHybridRetriever(document_store=store, embedder=LensRagDenseTextEmbedder(), top_k=10)
        theirs.warm_up()
        rows.append(
            measure(
                "elasticsearch-haystack ElasticsearchHybridRetriever (defaults)",
                lambda q: [(d.id, d.score) for d in theirs.run(query=q)["documents"]],
                queries,
                qrels,
            )
        )
        ours = LensRagHybridRetriever(document_store=store, top_k=10)
        ours.warm_up()
        rows.append(
            measure(
                "LensRagHybridRetriever on ElasticsearchDocumentStore",
                lambda q: [(d.id, d.score) for d in ours.run(query=q)["documents"]],
                queries,
                qrels,
            )
        )
        try:
            ElasticsearchSparseEmbeddingRetriever(document_store=store).run(
                query_sparse_embedding=SparseEmbedding(indices=[1000], values=[1.0])
            )
            rows.append({"name": "ElasticsearchSparseEmbeddingRetriever", "error": None})
        except Exception as e:  # the point of the row: what a user of that retriever sees on this server
            message = f"{type(e).__name__}: {str(e)[:160]}"
            print(f"{'ElasticsearchSparseEmbeddingRetriever':<62} fails: {message}")
            rows.append({"name": "ElasticsearchSparseEmbeddingRetriever", "error": message})
    finally:
        store.client.indices.delete(index=index, ignore_unavailable=True)
        store.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/datasets/scifact")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--es-url", default=os.environ.get("ES_URL"))
    ap.add_argument("--skip-peer", action="store_true", help="skip the elasticsearch-haystack store rows")
    args = ap.parse_args()

    dataset = load_beir(args.data)
    queries = dict(list(dataset.queries.items())[: args.queries])
    docs = _docs(dataset)
    encoders = Encoders(progress=False)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = LensRagDocumentStore(str(Path(tmp) / "store"))
        store.write_documents(docs)
        rows += _pair("embedded", store, encoders, queries, dataset.qrels)
        store.close()
    if args.es_url:
        index = f"lens-rag-bench-{uuid.uuid4().hex[:8]}"
        es = LensRagDocumentStore(store_config={"type": "elasticsearch_store", "url": args.es_url, "index": index})
        try:
            es.write_documents(docs)
            rows += _pair("elasticsearch (lens-rag store)", es, encoders, queries, dataset.qrels)
        finally:
            es.store.delete_index()
            es.close()
        if not args.skip_peer:
            rows += _elasticsearch_haystack(args.es_url, docs, queries, dataset.qrels)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"queries": len(queries), "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
