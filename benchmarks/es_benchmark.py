"""Elasticsearch benchmark on BEIR SciFact: our bulk path vs elasticsearch-haystack, and query latency/nDCG.

Needs a running server (ES_URL, e.g. ``eval "$(scripts/elasticsearch.sh start)"``) and, for the
indexing comparison, the benchmark-only peer::

    pip install "haystack-ai>=3.3,<3.4.1" elasticsearch-haystack==7.1.0 "certifi<=2026.10.18"

Vectors: by default cheap but meaningful stand-ins, so the benchmark runs in a minute on 2 cores —
sparse = TF-IDF over lowercased word tokens (log tf × idf, strictly positive, like a lexicon
vector), dense = a fixed Gaussian random projection of that TF-IDF to 384 dims. Both are the same
for both systems, so throughput and latency ratios are fair; their absolute nDCG is not LENS's.

Usage::

    python benchmarks/es_benchmark.py [--data /work/shared/datasets/scifact] [--queries 300]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytrec_eval
import scipy.sparse as sp

from lens_rag.documents import Document, ScoredDocument
from lens_rag.sparse import SparseVector
from lens_rag.stores.elasticsearch import ElasticsearchStore

TOKEN = re.compile(r"[a-z0-9]+")
DENSE_DIMS = 384


def load(data: Path) -> tuple[list[dict], dict[str, str], dict[str, dict[str, int]]]:
    corpus = [json.loads(line) for line in (data / "corpus.jsonl").open()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (data / "queries.jsonl").open())}
    qrels: dict[str, dict[str, int]] = {}
    for line in list((data / "qrels" / "test.tsv").open())[1:]:
        qid, did, score = line.split()
        qrels.setdefault(qid, {})[did] = int(score)
    return corpus, {q: queries[q] for q in qrels}, qrels


class TfIdf:
    """Lexicon-style sparse vectors (log(1+tf)·idf) and a random-projection dense twin."""

    def __init__(self, texts: list[str]) -> None:
        counts = [Counter(TOKEN.findall(t.lower())) for t in texts]
        df = Counter(w for c in counts for w in c)
        self.vocab = {w: i for i, w in enumerate(sorted(df))}
        self.idf = np.log(1 + len(texts) / np.array([df[w] for w in sorted(df)], dtype=np.float64))
        rng = np.random.default_rng(0)
        self.projection = rng.normal(size=(len(self.vocab), DENSE_DIMS)).astype(np.float32) / np.sqrt(DENSE_DIMS)

    def sparse(self, text: str) -> SparseVector:
        c = Counter(w for w in TOKEN.findall(text.lower()) if w in self.vocab)
        idx = [self.vocab[w] for w in c]
        return SparseVector.from_arrays(idx, [np.log1p(n) * self.idf[i] for i, n in zip(idx, c.values())])

    def dense(self, vectors: list[SparseVector]) -> np.ndarray:
        rows = np.repeat(np.arange(len(vectors)), [len(v) for v in vectors])
        cols = np.concatenate([v.indices for v in vectors])
        vals = np.concatenate([v.values for v in vectors])
        m = sp.csr_matrix((vals, (rows, cols)), shape=(len(vectors), len(self.vocab)))
        return np.asarray(m @ self.projection, dtype=np.float32)


def ndcg10(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> float:
    scores = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    return float(np.mean([s["ndcg_cut_10"] for s in scores.values()]))


def timed_queries(search, queries: dict[str, object]) -> tuple[dict[str, dict[str, float]], np.ndarray]:
    run: dict[str, dict[str, float]] = {}
    latencies = []
    for qid, q in queries.items():
        t0 = time.perf_counter()
        hits = search(q)
        latencies.append((time.perf_counter() - t0) * 1000)
        run[qid] = {h.id: h.score for h in hits if h.id != qid}  # drop query-id self-hits
    return run, np.asarray(latencies)


def haystack_index(url: str, docs: list[Document], refresh) -> tuple[float, object]:
    from haystack import Document as HDocument
    from haystack.dataclasses import SparseEmbedding
    from haystack_integrations.document_stores.elasticsearch import ElasticsearchDocumentStore

    index = f"bench-haystack-{refresh}".lower()
    store = ElasticsearchDocumentStore(hosts=url, index=index, sparse_vector_field="sparse_vec")
    store.client.indices.delete(index=index, ignore_unavailable=True)
    store = ElasticsearchDocumentStore(hosts=url, index=index, sparse_vector_field="sparse_vec")
    hdocs = [
        HDocument(
            id=d.id,
            content=d.content,
            meta=d.meta,
            embedding=d.embedding,
            sparse_embedding=SparseEmbedding(
                indices=d.sparse_embedding.indices.tolist(), values=d.sparse_embedding.values.tolist()
            ),
        )
        for d in docs
    ]
    t0 = time.perf_counter()
    store.write_documents(hdocs, refresh=refresh)
    if refresh is False:
        store.client.indices.refresh(index=index)
    return len(docs) / (time.perf_counter() - t0), store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/datasets/scifact"))
    parser.add_argument("--url", default=os.environ.get("ES_URL", "http://localhost:9200"))
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--skip-haystack", action="store_true")
    args = parser.parse_args()

    corpus, queries, qrels = load(args.data)
    qids = list(queries)[: args.queries]
    qrels = {q: qrels[q] for q in qids}
    texts = [f"{d['title']} {d['text']}".strip() for d in corpus]
    t0 = time.perf_counter()
    enc = TfIdf(texts)
    sparse = [enc.sparse(t) for t in texts]
    dense = enc.dense(sparse)
    qsparse = {q: enc.sparse(queries[q]) for q in qids}
    qdense = dict(zip(qids, enc.dense([qsparse[q] for q in qids]).tolist()))
    print(f"vectors: {len(texts)} docs in {time.perf_counter() - t0:.1f}s (tf-idf sparse, {DENSE_DIMS}-d projection)")
    docs = [
        Document(id=d["_id"], content=t, meta={"title": d["title"]}, embedding=e.tolist(), sparse_embedding=s)
        for d, t, e, s in zip(corpus, texts, dense, sparse)
    ]

    rows: list[tuple[str, str]] = []
    store = ElasticsearchStore(args.url, index="bench-lens-rag", progress=False)
    store.delete_index()
    t0 = time.perf_counter()
    store.write_documents(docs)
    ours = len(docs) / (time.perf_counter() - t0)
    rows.append(("index: lens-rag write_documents (refresh once at end)", f"{ours:,.0f} docs/s"))
    hay = None
    if not args.skip_haystack:
        for refresh in ("wait_for", False):
            rate, hay_store = haystack_index(args.url, docs, refresh)
            if refresh == "wait_for":
                hay = hay_store
            rows.append(
                (
                    f"index: haystack write_documents(refresh={refresh!r})",
                    f"{rate:,.0f} docs/s  (ours {ours / rate:.1f}x)",
                )
            )

    print(f"\nindexing {len(docs)} SciFact docs with vectors, server {'.'.join(map(str, store.server_version()))}")
    for name, value in rows:
        print(f"  {name:<58} {value}")

    text_q = {q: queries[q] for q in qids}
    pruned = {k: ElasticsearchStore(args.url, index="bench-lens-rag", sparse_top_k=k) for k in (8, 32, 64)}
    full_len = np.mean([len(v) for v in qsparse.values()])
    cases = [
        ("bm25 (match, english, no fuzziness)", lambda q: store.search_bm25(q, 11), text_q),
        (f"sparse full (~{full_len:.0f} terms/query)", lambda q: store.search_sparse(q, 11), qsparse),
        ("sparse pruned top-64", lambda q: pruned[64].search_sparse(q, 11), qsparse),
        ("sparse pruned top-32", lambda q: pruned[32].search_sparse(q, 11), qsparse),
        ("sparse pruned top-8", lambda q: pruned[8].search_sparse(q, 11), qsparse),
        ("dense kNN (num_candidates 110)", lambda q: store.search_dense(q, 11), qdense),
    ]
    if hay is not None:

        def wrap(hits):
            return [ScoredDocument(document=Document(id=h.id, content=""), score=h.score or 0.0) for h in hits]

        cases += [
            ("haystack bm25 (fuzziness AUTO default)", lambda q: wrap(hay._bm25_retrieval(q, top_k=11)), text_q),
            ("haystack bm25 fuzziness=0", lambda q: wrap(hay._bm25_retrieval(q, top_k=11, fuzziness="0")), text_q),
            ("haystack dense kNN", lambda q: wrap(hay._embedding_retrieval(q, top_k=11)), qdense),
        ]
    for _name, search, qs in cases:  # warm up caches once per case
        search(next(iter(qs.values())))
    print(f"\n{'query type':<42} {'nDCG@10':>8} {'p50 ms':>8} {'p95 ms':>8}   ({len(qids)} queries, one at a time)")
    base = None
    for name, search, qs in cases:
        run, lat = timed_queries(search, qs)
        run = {q: dict(sorted(r.items(), key=lambda kv: -kv[1])[:10]) for q, r in run.items()}
        score = ndcg10(run, qrels)
        base = score if name.startswith("sparse full") else base
        cost = f"  (pruning cost {score - base:+.3f})" if "pruned" in name and base is not None else ""
        print(f"{name:<42} {score:8.3f} {np.percentile(lat, 50):8.1f} {np.percentile(lat, 95):8.1f}{cost}")
    for s in (store, *pruned.values()):
        s.close()


if __name__ == "__main__":
    main()
