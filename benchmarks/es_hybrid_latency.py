"""Elasticsearch hybrid latency on SciFact: BM25 alone vs the three-way hybrid, one search at a time vs one `_msearch`.

Latency is end to end per query, as `HybridRetriever.retrieve` runs it: query encoding (SPLADE-tiny
and MiniLM), the Elasticsearch round trips, and fusion. Every case runs in the same process against
the same index, one query at a time, with the cases interleaved per query (their order rotating) so
background load on a shared machine hits them alike. Cases:

- ``bm25``: `BM25Retriever` alone (one `_search`).
- ``hybrid, sequential (before)``: each member retriever on its own, one after another (encode
  sparse, `_search`; encode dense, `_search`; `_search` BM25), then min–max fusion — what
  `HybridRetriever.retrieve` did before the fast path.
- ``hybrid, one _msearch, encode one after another``: the fast path with
  ``lens_rag.retrieval.PARALLEL_QUERY_ENCODING = False``.
- ``hybrid, one _msearch, encode side by side``: the fast path as shipped (two encoder threads).
- ``hybrid async (retrieve_async)``: the async fast path (`search_many_async`) on one event loop.
- ``encode only, ...``: the two query encoders without Elasticsearch, one after another vs side by side.

Document vectors come from the shared embedding cache (`$LENS_RAG_CACHE/embeddings`, filled by
`lens-rag eval` or `benchmarks/es_benchmark.py`); only missing documents are encoded. The index is
fresh, uniquely named, and deleted at the end.

Usage::

    eval "$(scripts/elasticsearch.sh start)"
    python benchmarks/es_hybrid_latency.py [--data /work/shared/datasets/scifact] [--queries 300]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import lens_rag.retrieval as retrieval
from lens_rag.components import Encoders, build_retriever
from lens_rag.documents import ScoredDocument
from lens_rag.evaluation import evaluate_run, load_beir
from lens_rag.fusion import fuse
from lens_rag.indexing import EmbeddingCache, default_cache_dir
from lens_rag.retrieval import HybridRetriever
from lens_rag.stores.elasticsearch import ElasticsearchStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from es_benchmark import cached_document_vectors

TOP_K = 100  # as `lens-rag eval`: nDCG@10 and R@100 from the top 100
METRICS = ("ndcg_cut_10", "recall_100")
WARMUP = 5


@dataclasses.dataclass
class Case:
    name: str
    run: Callable[[str], list[ScoredDocument] | None]  # None: a timing-only case (no results to score)


def sequential_hybrid(hybrid: HybridRetriever, query: str, top_k: int) -> list[ScoredDocument]:
    """The hybrid as it ran before the fast path: every member on its own, one after another, then fusion."""
    depth = max(hybrid.candidate_k, top_k)
    lists = {r.name: r.retrieve(query, top_k=depth) for r in hybrid.retrievers}
    return fuse(lists, hybrid.fusion, weights=hybrid.weights, rrf_k=hybrid.rrf_k, top_k=top_k)


def with_parallel_encoding(parallel: bool, fn: Callable[[str], Any]) -> Callable[[str], Any]:
    def run(query: str) -> Any:
        retrieval.PARALLEL_QUERY_ENCODING = parallel
        try:
            return fn(query)
        finally:
            retrieval.PARALLEL_QUERY_ENCODING = True

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="/work/shared/datasets/scifact")
    parser.add_argument("--url", default=os.environ.get("ES_URL", "http://localhost:9200"))
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--index", help="use this index (written only if it does not hold the corpus yet) and keep it")
    args = parser.parse_args()

    data = load_beir(args.data)
    qids = list(data.queries)[: args.queries]
    qrels = {q: data.qrels[q] for q in qids}
    encoders = Encoders(progress=False)
    cache = EmbeddingCache(default_cache_dir() / "embeddings")
    t0 = time.perf_counter()
    sparse, sparse_missing = cached_document_vectors(encoders.sparse, data.corpus, cache)
    dense, dense_missing = cached_document_vectors(encoders.dense, data.corpus, cache)
    print(
        f"vectors: SPLADE-tiny + MiniLM from {cache.directory} in {time.perf_counter() - t0:.1f}s "
        f"(encoded now: sparse {sparse_missing}, dense {dense_missing})"
    )
    docs = [
        dataclasses.replace(d, embedding=[float(x) for x in e], sparse_embedding=s)
        for d, e, s in zip(data.corpus, dense, sparse)
    ]

    index = args.index or f"bench-hybrid-{os.getpid()}-{int(time.time())}"
    store = ElasticsearchStore(args.url, index=index, progress=False)
    loop = asyncio.new_event_loop()
    try:
        version = ".".join(map(str, store.server_version()))
        if store.count_documents() == len(docs):
            print(f"reusing index {index!r} ({len(docs):,} passages) on Elasticsearch {version}")
        else:
            t0 = time.perf_counter()
            store.write_documents(docs)
            print(f"indexed {len(docs):,} passages in {time.perf_counter() - t0:.1f}s on Elasticsearch {version}")

        bm25 = build_retriever("bm25", store, encoders)
        hybrid = build_retriever("hybrid", store, encoders)
        assert isinstance(hybrid, HybridRetriever)
        members = {type(r).__name__: r for r in hybrid.retrievers}
        sparse_r, dense_r = members["SparseRetriever"], members["DenseRetriever"]

        def encode_both(query: str) -> None:
            retrieval._encode_side_by_side([sparse_r, dense_r], query)

        cases = [
            Case("bm25", lambda q: bm25.retrieve(q, top_k=TOP_K)),
            Case("hybrid, sequential (before)", lambda q: sequential_hybrid(hybrid, q, TOP_K)),
            Case(
                "hybrid, one _msearch, encode one after another",
                with_parallel_encoding(False, lambda q: hybrid.retrieve(q, top_k=TOP_K)),
            ),
            Case("hybrid, one _msearch, encode side by side", lambda q: hybrid.retrieve(q, top_k=TOP_K)),
            Case(
                "hybrid async (retrieve_async, one _msearch)",
                lambda q: loop.run_until_complete(hybrid.retrieve_async(q, top_k=TOP_K)),
            ),
            Case("encode only, one after another", with_parallel_encoding(False, encode_both)),
            Case("encode only, side by side", with_parallel_encoding(True, encode_both)),
        ]
        for case in cases:  # warm every case (models, client, caches) before timing any
            for qid in qids[:WARMUP]:
                case.run(data.queries[qid])

        load_before = os.getloadavg()[0]
        runs: list[dict[str, dict[str, float]]] = [{} for _ in cases]
        ms = np.zeros((len(cases), len(qids)))
        for j, qid in enumerate(qids):
            text = data.queries[qid]
            for k in range(len(cases)):
                i = (j + k) % len(cases)  # rotate the order so no case always runs first or last
                t = time.perf_counter()
                hits = cases[i].run(text)
                ms[i, j] = (time.perf_counter() - t) * 1000
                if hits is not None:
                    runs[i][qid] = {h.id: float(h.score) for h in hits}
        load_after = os.getloadavg()[0]

        print(
            f"\n{len(qids)} SciFact queries, one at a time, end to end (query encoding + Elasticsearch + fusion), "
            f"top-{TOP_K}; cases interleaved per query; load average {load_before:.1f} -> {load_after:.1f} "
            f"on {os.cpu_count()} cores"
        )
        header = f"{'case':<46} {'mean ms':>8} {'p50 ms':>7} {'p95 ms':>7} {'nDCG@10':>8} {'R@100':>6}"
        print(header + "\n" + "-" * len(header))
        for case, run, lat in zip(cases, runs, ms):
            scores = evaluate_run(run, qrels, METRICS) if run else None
            quality = f"{scores['ndcg@10']:8.3f} {scores['recall@100']:6.3f}" if scores else f"{'':>8} {'':>6}"
            print(
                f"{case.name:<46} {lat.mean():8.1f} {np.percentile(lat, 50):7.1f} {np.percentile(lat, 95):7.1f} "
                f"{quality}"
            )
        same = sum(runs[1][q] == runs[3][q] for q in qids)
        close = sum(
            runs[1][q].keys() == runs[3][q].keys()
            and all(abs(runs[1][q][d] - runs[3][q][d]) < 1e-9 for d in runs[1][q])
            for q in qids
        )
        print(
            f"\nsequential vs one _msearch: identical results for {same}/{len(qids)} queries "
            f"(same ids and scores within 1e-9 for {close})"
        )
    finally:
        if not args.index:
            store.delete_index()
        store.close()
        loop.run_until_complete(store.close_async())
        loop.close()


if __name__ == "__main__":
    main()
