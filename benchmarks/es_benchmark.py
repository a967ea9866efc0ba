"""Elasticsearch benchmark on BEIR SciFact: our bulk path vs elasticsearch-haystack, and query latency/quality.

Needs a running server (ES_URL, e.g. ``eval "$(scripts/elasticsearch.sh start)"``) and, for the
comparison, the benchmark-only peer::

    pip install "haystack-ai>=3.3,<3.4.1" elasticsearch-haystack==7.1.0 "certifi<=2026.10.18"

Vectors (``--vectors``):

- ``real`` (default): the project's default encoders, sparse SPLADE-tiny and dense MiniLM
  (`lens_rag.components.Encoders`). Document vectors come from the shared embedding cache
  (`$LENS_RAG_CACHE/embeddings`); only documents missing from it are encoded (and then cached).
  Queries are encoded one at a time, and that time is reported apart from Elasticsearch latency.
- ``standin``: cheap stand-ins that run in a minute on 2 cores — sparse = TF-IDF over lowercased
  word tokens (log tf × idf, strictly positive, like a lexicon vector), dense = a fixed Gaussian
  random projection of that TF-IDF to 384 dims. Throughput and latency ratios stay fair (both
  systems get the same vectors); their nDCG is not LENS's.

Every run uses fresh indices under a unique prefix and deletes them at the end.

Usage::

    python benchmarks/es_benchmark.py [--vectors real|standin] [--data /work/shared/datasets/scifact] [--queries 300]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from lens_rag.documents import Document
from lens_rag.evaluation import evaluate_run, load_beir
from lens_rag.sparse import SparseVector
from lens_rag.stores.elasticsearch import ElasticsearchStore

TOKEN = re.compile(r"[a-z0-9]+")
DENSE_DIMS = 384
TOP_K = 100  # enough for R@100; nDCG@10 uses the first ten
PRUNE = (8, 16, 32, 64)
METRICS = ("ndcg_cut_10", "recall_100")
WARMUP = 5  # queries per case run before timing


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

    def dense(self, vectors: list[SparseVector]) -> list[list[float]]:
        rows = np.repeat(np.arange(len(vectors)), [len(v) for v in vectors])
        cols = np.concatenate([v.indices for v in vectors])
        vals = np.concatenate([v.values for v in vectors])
        m = sp.csr_matrix((vals, (rows, cols)), shape=(len(vectors), len(self.vocab)))
        return np.asarray(m @ self.projection, dtype=np.float32).tolist()


Vectors = tuple[list[SparseVector], list[list[float]], dict[str, SparseVector], dict[str, list[float]]]


def standin_vectors(corpus: list[Document], queries: dict[str, str]) -> Vectors:
    t0 = time.perf_counter()
    enc = TfIdf([d.content for d in corpus])
    sparse = [enc.sparse(d.content) for d in corpus]
    qsparse = {q: enc.sparse(text) for q, text in queries.items()}
    dense, qdense = enc.dense(sparse), enc.dense(list(qsparse.values()))
    print(f"vectors: stand-ins (tf-idf sparse, {DENSE_DIMS}-d projection) in {time.perf_counter() - t0:.1f}s")
    return sparse, dense, qsparse, dict(zip(queries, qdense))


def cached_document_vectors(encoder: Any, corpus: list[Document], cache: Any) -> tuple[list[Any], int]:
    """Vectors of every document: from the cache, encoding (and caching) only the missing ones."""
    found = cache.lookup(encoder, corpus)
    missing = [i for i in range(len(corpus)) if i not in found]
    if missing:
        docs = [corpus[i] for i in missing]
        vectors = encoder.encode_documents([d.content for d in docs])
        cache.store(encoder, docs, vectors)
        found.update(zip(missing, vectors))
    return [found[i] for i in range(len(corpus))], len(missing)


def timed_encode(
    encode: Callable[[list[str]], list[Any]], queries: dict[str, str]
) -> tuple[dict[str, Any], np.ndarray]:
    encode([next(iter(queries.values()))])  # warm-up (first call pays for lazy initialisation)
    out, ms = {}, []
    for qid, text in queries.items():
        t0 = time.perf_counter()
        out[qid] = encode([text])[0]
        ms.append((time.perf_counter() - t0) * 1000)
    return out, np.asarray(ms)


def real_vectors(corpus: list[Document], queries: dict[str, str]) -> Vectors:
    from lens_rag.components import Encoders
    from lens_rag.indexing import EmbeddingCache, default_cache_dir

    encoders = Encoders(progress=False)
    cache = EmbeddingCache(default_cache_dir() / "embeddings")
    t0 = time.perf_counter()
    sparse, sparse_missing = cached_document_vectors(encoders.sparse, corpus, cache)
    dense, dense_missing = cached_document_vectors(encoders.dense, corpus, cache)
    dense = [list(map(float, v)) for v in dense]
    print(
        f"vectors: SPLADE-tiny + MiniLM from {cache.directory} in {time.perf_counter() - t0:.1f}s "
        f"(encoded now, not cached before: sparse {sparse_missing}, dense {dense_missing})"
    )
    qsparse, sparse_ms = timed_encode(encoders.sparse.encode_queries, queries)
    qdense, dense_ms = timed_encode(encoders.dense.encode_queries, queries)
    for name, ms in (("sparse SPLADE-tiny", sparse_ms), ("dense MiniLM", dense_ms)):
        print(
            f"query encoding ({name}, one query at a time, CPU): "
            f"p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms — not in the ES latencies below"
        )
    return sparse, dense, qsparse, {q: list(map(float, v)) for q, v in qdense.items()}


def haystack_store(url: str, index: str, docs: list[Document], refresh: Any) -> tuple[float, Any]:
    """Index `docs` with elasticsearch-haystack; docs/s including the final refresh when `refresh` is False."""
    from haystack import Document as HDocument
    from haystack.dataclasses import SparseEmbedding
    from haystack_integrations.document_stores.elasticsearch import ElasticsearchDocumentStore

    store = ElasticsearchDocumentStore(hosts=url, index=index, sparse_vector_field="sparse_vec")
    store.client  # noqa: B018 — creates the index outside the timing, as ensure_index does for ours
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


def lens_index(url: str, index: str, docs: list[Document], **kwargs: Any) -> tuple[float, ElasticsearchStore]:
    store = ElasticsearchStore(url, index=index, progress=False, **kwargs)
    store.ensure_index(len(docs[0].embedding or []) or None)
    t0 = time.perf_counter()
    store.write_documents(docs)
    return len(docs) / (time.perf_counter() - t0), store


@dataclasses.dataclass
class Case:
    name: str
    search: Callable[[Any], Sequence[Any]]  # query -> hits with .id and .score
    queries: dict[str, Any]
    terms: float | None = None  # mean query terms (sparse cases)
    baseline: str | None = None  # for peers: the case of ours whose p50 they are compared with


def run_cases(
    cases: list[Case], qids: list[str], qrels: dict[str, dict[str, int]]
) -> list[tuple[dict[str, float], np.ndarray]]:
    """Scores and latencies (ms) per case; cases are interleaved per query so background load hits all alike."""
    for case in cases:  # warm up every case before timing any, so no case pays for cold caches
        for qid in qids[:WARMUP]:
            case.search(case.queries[qid])
    runs: list[dict[str, dict[str, float]]] = [{} for _ in cases]
    latencies = np.zeros((len(cases), len(qids)))
    for j, qid in enumerate(qids):
        for i, case in enumerate(cases):
            t0 = time.perf_counter()
            hits = case.search(case.queries[qid])
            latencies[i, j] = (time.perf_counter() - t0) * 1000
            runs[i][qid] = {h.id: float(h.score or 0.0) for h in hits}
    return [(evaluate_run(run, qrels, METRICS), lat) for run, lat in zip(runs, latencies)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="/work/shared/datasets/scifact")
    parser.add_argument("--url", default=os.environ.get("ES_URL", "http://localhost:9200"))
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--vectors", choices=("real", "standin"), default="real")
    parser.add_argument("--skip-haystack", action="store_true")
    args = parser.parse_args()

    data = load_beir(args.data)
    qids = list(data.queries)[: args.queries]
    queries = {q: data.queries[q] for q in qids}
    qrels = {q: data.qrels[q] for q in qids}
    make_vectors = real_vectors if args.vectors == "real" else standin_vectors
    sparse, dense, qsparse, qdense = make_vectors(data.corpus, queries)
    docs = [dataclasses.replace(d, embedding=e, sparse_embedding=s) for d, e, s in zip(data.corpus, dense, sparse)]

    prefix = f"bench-{os.getpid()}-{int(time.time())}"
    lens_stores: list[ElasticsearchStore] = []
    hay_stores: list[Any] = []
    try:
        rate, store = lens_index(args.url, f"{prefix}-lens", docs)
        lens_stores.append(store)
        rows = [("lens-rag write_documents (refresh once at end)", rate)]
        rate_src, store_src = lens_index(args.url, f"{prefix}-lens-src", docs, vectors_in_source=True)
        lens_stores.append(store_src)
        rows.append(("lens-rag write_documents, vectors_in_source=True", rate_src))
        if not args.skip_haystack:
            for refresh in ("wait_for", False):
                index = f"{prefix}-haystack-{str(refresh).replace('_', '')}".lower()
                hay_rate, hay = haystack_store(args.url, index, docs, refresh)
                hay_stores.append(hay)
                rows.append((f"haystack write_documents(refresh={refresh!r})", hay_rate))

        version = ".".join(map(str, store.server_version()))
        print(f"\nindexing {len(docs):,} SciFact docs with sparse + {len(docs[0].embedding)}-d vectors, ES {version}")
        print(f"  {'writer':<52} {'docs/s':>8}  {'ours/peer':>9}")
        for name, value in rows:
            ratio = f"{rate / value:8.2f}x" if name.startswith("haystack") else ""
            print(f"  {name:<52} {value:8,.0f}  {ratio:>9}")

        full_terms = float(np.mean([len(v) for v in qsparse.values()]))
        cases = [
            Case("bm25 (match, english, no fuzziness)", lambda q: store.search_bm25(q, TOP_K), queries),
            Case("sparse full", lambda q: store.search_sparse(q, TOP_K), qsparse, full_terms),
        ]
        for k in PRUNE:
            pruned = {q: v.top_k(k) for q, v in qsparse.items()}
            mean_terms = float(np.mean([len(v) for v in pruned.values()]))
            cases.append(Case(f"sparse pruned top-{k}", lambda q: store.search_sparse(q, TOP_K), pruned, mean_terms))
        cases.append(Case("dense kNN (num_candidates 1000)", lambda q: store.search_dense(q, TOP_K), qdense))
        if hay_stores:
            hay = hay_stores[0]
            bm25, knn = cases[0].name, cases[-1].name
            cases += [
                Case(
                    "haystack bm25 (fuzziness AUTO, default)",
                    lambda q: hay._bm25_retrieval(q, top_k=TOP_K),
                    queries,
                    baseline=bm25,
                ),
                Case(
                    "haystack bm25 fuzziness=0",
                    lambda q: hay._bm25_retrieval(q, top_k=TOP_K, fuzziness="0"),
                    queries,
                    baseline=bm25,
                ),
                Case(
                    "haystack dense kNN (num_candidates 1000)",
                    lambda q: hay._embedding_retrieval(q, top_k=TOP_K),
                    qdense,
                    baseline=knn,
                ),
            ]

        print(
            f"\n{len(qids)} queries, one at a time (cases interleaved per query), top-{TOP_K}; "
            "latency = ES round trip only (query encoding excluded); ratio = peer p50 / ours p50"
        )
        header = (
            f"{'query type':<42} {'terms':>6} {'nDCG@10':>8} {'Δ full':>7} {'R@100':>6} {'p50 ms':>7} {'p95 ms':>7}"
        )
        print(header + f" {'ratio':>6}\n" + "-" * (len(header) + 7))
        p50: dict[str, float] = {}
        full_ndcg = None
        for case, (scores, lat) in zip(cases, run_cases(cases, qids, qrels)):
            ndcg, p50[case.name] = scores["ndcg@10"], float(np.percentile(lat, 50))
            if case.name == "sparse full":
                full_ndcg = ndcg
            delta = f"{ndcg - full_ndcg:+7.3f}" if "pruned" in case.name and full_ndcg is not None else ""
            terms = f"{case.terms:6.1f}" if case.terms is not None else ""
            ratio = f"{p50[case.name] / p50[case.baseline]:5.2f}x" if case.baseline else ""
            print(
                f"{case.name:<42} {terms:>6} {ndcg:8.3f} {delta:>7} {scores['recall@100']:6.3f} "
                f"{p50[case.name]:7.1f} {np.percentile(lat, 95):7.1f} {ratio:>6}"
            )
    finally:
        for s in lens_stores:
            s.delete_index()
            s.close()
        for hay in hay_stores:
            hay.client.indices.delete(index=hay._index, ignore_unavailable=True)
            hay.client.close()


if __name__ == "__main__":
    main()
