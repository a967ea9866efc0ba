"""Embedded-store query latency per method on SciFact, beside Haystack's in-memory store on the same data.

Latency is end to end per query (query encoding included), one query at a time, on this machine.
Document vectors come from the shared embedding cache (`lens-rag eval` fills it), so only the first
run encodes the corpus. The peer (Haystack `InMemoryDocumentStore` with `InMemoryBM25Retriever` and
`InMemoryEmbeddingRetriever`, given the very same MiniLM vectors) runs when `haystack-ai` is installed.

    python benchmarks/embedded_latency.py --dataset ../shared/datasets/scifact [--queries 300]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from lens_rag.components import Encoders, build_retriever
from lens_rag.evaluation import evaluate_run, load_beir
from lens_rag.indexing import EmbeddingCache, default_cache_dir, index_documents
from lens_rag.stores.embedded import EmbeddedStore

METHODS = ["bm25", "sparse", "dense", "hybrid:bm25+dense", "hybrid"]


def measure(fn: Callable[[str], dict[str, float]], queries: dict[str, str]) -> tuple[dict, list[float]]:
    run, ms = {}, []
    for qid, text in queries.items():
        t = time.perf_counter()
        run[qid] = fn(text)
        ms.append((time.perf_counter() - t) * 1000)
    return run, ms


def haystack_rows(dataset, queries, qrels, encoders) -> list[tuple]:
    try:
        from haystack import Document as HDoc
        from haystack.components.retrievers.in_memory import InMemoryBM25Retriever, InMemoryEmbeddingRetriever
        from haystack.document_stores.in_memory import InMemoryDocumentStore
    except ImportError:
        print("(haystack-ai not installed: peer rows skipped; pip install 'haystack-ai>=3.3,<3.4.1')")
        return []
    cache = EmbeddingCache(default_cache_dir() / "embeddings")
    vectors = cache.lookup(encoders.dense, dataset.corpus)
    store = InMemoryDocumentStore(embedding_similarity_function="cosine")
    store.write_documents(
        [HDoc(id=d.id, content=d.content, embedding=list(vectors[i])) for i, d in enumerate(dataset.corpus)]
    )
    bm25, emb = InMemoryBM25Retriever(store, top_k=101), InMemoryEmbeddingRetriever(store, top_k=101)
    rows = []
    run, ms = measure(lambda q: {d.id: d.score for d in bm25.run(query=q)["documents"]}, queries)
    rows.append(("haystack in-memory bm25", evaluate_run(run, qrels), ms))

    def dense(q: str) -> dict[str, float]:
        vec = encoders.dense.encode_queries([q])[0]
        return {d.id: d.score for d in emb.run(query_embedding=list(vec))["documents"]}

    run, ms = measure(dense, queries)
    rows.append(("haystack in-memory dense", evaluate_run(run, qrels), ms))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="../shared/datasets/scifact")
    ap.add_argument("--queries", type=int, default=None, help="first N judged queries (default all)")
    args = ap.parse_args()
    dataset = load_beir(args.dataset)
    qids = sorted(dataset.queries)[: args.queries]
    queries = {q: dataset.queries[q] for q in qids}
    qrels = {q: dataset.qrels[q] for q in qids}
    encoders = Encoders(progress=False)
    store = EmbeddedStore(None, progress=False)
    t = time.perf_counter()
    index_documents(
        store, [d.without_embeddings() for d in dataset.corpus], sparse_encoder=encoders.sparse,
        dense_encoder=encoders.dense, cache=EmbeddingCache(default_cache_dir() / "embeddings"), progress=True,
    )  # fmt: skip
    print(f"indexed {store.count_documents()} passages in {time.perf_counter() - t:.1f}s (vectors from cache if warm)")
    rows = []
    for method in METHODS:
        retriever = build_retriever(method, store, encoders)
        retriever.retrieve("warm up", top_k=10)
        run, ms = measure(lambda q, r=retriever: {h.id: h.score for h in r.retrieve(q, top_k=101)}, queries)
        rows.append((f"lens-rag embedded {method}", evaluate_run(run, qrels), ms))
    rows += haystack_rows(dataset, queries, qrels, encoders)
    base = {name.split()[-1]: np.median(ms) for name, _, ms in rows if name.startswith("lens-rag")}
    print(f"\n{'system':<34} {'nDCG@10':>8} {'R@100':>7} {'p50 ms':>8} {'p95 ms':>8} {'peer/ours p50':>14}")
    for name, scores, ms in rows:
        ratio = ""
        if name.startswith("haystack"):
            ours = base.get(name.split()[-1])
            ratio = f"{np.median(ms) / ours:>13.1f}x" if ours else ""
        print(
            f"{name:<34} {scores['ndcg@10']:>8.4f} {scores['recall@100']:>7.4f} {np.median(ms):>8.2f} "
            f"{np.percentile(ms, 95):>8.2f} {ratio:>14}"
        )
    print(f"{len(queries)} queries, one at a time, end to end (query encoding included)")


if __name__ == "__main__":
    main()
