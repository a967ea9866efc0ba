"""Trained LENS cluster head vs full SPLADE-tiny on SciFact: encoding speed, nDCG@10, index sizes, training cost.

    python benchmarks/cluster_head.py --model DIR [--model DIR2 ...] [--es] [--threads 1]

DIR is a model written by `lens-rag build-head --model splade-tiny --clusters K --train --corpus …`
(:func:`lens_rag.training.cluster_head.train_cluster_head`). For full SPLADE-tiny and every DIR, in one
process with the same thread count:

- **throughput**: the same seeded sample of corpus passages encoded by each model (max length 256,
  batch 32), in interleaved rounds (model order rotated each round); the median docs/s is reported,
  and the ratio to full SPLADE-tiny;
- **nDCG@10** on SciFact test, as `lens-rag eval` computes it (top 101, every judged query): sparse
  alone and the default hybrid (BM25 + sparse + MiniLM, min–max fusion, 100 candidates each), from an
  embedded store on disk; passage vectors come from the shared embedding cache when present;
- **index size**: the embedded store directory (content + BM25 + sparse + dense) and, with `--es`, the
  Elasticsearch index holding content + sparse vectors after `_forcemerge?max_num_segments=1`
  (`_stats` primaries store size), each with a no-sparse baseline so the sparse part is the difference;
  with `--es` also sparse nDCG@10 retrieved from Elasticsearch;
- **training**: time and peak RSS recorded in each DIR's `lens_rag_encoder.json`.

Test queries and qrels are used here only, for evaluation; training never reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _ndcg(retriever: Any, queries: dict[str, str], qrels: dict[str, dict[str, int]]) -> float:
    from lens_rag.evaluation import evaluate_run

    run = {q: {h.id: h.score for h in retriever.retrieve(t, top_k=101)} for q, t in queries.items()}
    return float(evaluate_run(run, qrels)["ndcg@10"])


def _throughput(encoders: dict[str, Any], texts: list[str], rounds: int) -> dict[str, float]:
    for enc in encoders.values():
        enc.warm_up()
        enc.encode_documents(texts[:8])  # first-call overheads out of the timing
    timings: dict[str, list[float]] = {name: [] for name in encoders}
    names = list(encoders)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            encoders[name].encode_documents(texts)
            timings[name].append(len(texts) / (time.perf_counter() - start))
    return {name: statistics.median(v) for name, v in timings.items()}


def _es_size(es_url: str, corpus: list[Any], enc: Any, cache: Any, queries: dict, qrels: dict) -> tuple[int, float]:
    from lens_rag.components import Encoders, build_retriever
    from lens_rag.indexing import index_documents
    from lens_rag.stores.elasticsearch import ElasticsearchStore

    store = ElasticsearchStore(es_url, index=f"lens-rag-bench-ch-{uuid.uuid4().hex[:8]}", progress=False)
    try:
        index_documents(store, corpus, sparse_encoder=enc, cache=cache, progress=False)
        client = store.client
        client.indices.refresh(index=store.index)
        client.indices.forcemerge(index=store.index, max_num_segments=1)
        client.indices.refresh(index=store.index)
        stats = client.indices.stats(index=store.index, metric="store")
        size = int(stats["_all"]["primaries"]["store"]["size_in_bytes"])
        ndcg = float("nan")
        if enc is not None:
            encoders = Encoders(progress=False)
            encoders._sparse = enc
            ndcg = _ndcg(build_retriever("sparse", store, encoders), queries, qrels)
    finally:
        store.delete_index()
        store.close()
    return size, ndcg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="trained cluster-head model directory")
    ap.add_argument("--dataset", default="/work/shared/datasets/scifact")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--throughput-passages", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--es", action="store_true", help="also index into Elasticsearch ($ES_URL)")
    ap.add_argument("--json", default=None, help="write the results to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from lens_rag.components import Encoders, build_retriever
    from lens_rag.encoders.mlm import MLMSparseEncoder
    from lens_rag.evaluation import load_beir
    from lens_rag.indexing import EmbeddingCache, default_cache_dir, index_documents
    from lens_rag.stores.embedded import EmbeddedStore

    ds = load_beir(args.dataset)
    corpus = [d.without_embeddings() for d in ds.corpus]
    queries, qrels = ds.queries, ds.qrels
    cache = EmbeddingCache(default_cache_dir() / "embeddings")
    models = {"SPLADE-tiny (full)": "splade-tiny"} | {Path(m).name: m for m in args.model}
    encoders = {name: MLMSparseEncoder(path, progress=False) for name, path in models.items()}
    rng = np.random.default_rng(args.seed)
    sample = [corpus[i].content for i in sorted(rng.choice(len(corpus), args.throughput_passages, replace=False))]

    print(f"throughput: {len(sample)} passages, {args.rounds} rounds, torch threads {torch.get_num_threads()}")
    speed = _throughput(encoders, sample, args.rounds)
    results: dict[str, dict[str, Any]] = {}
    dense = Encoders(progress=False).dense
    tmp = Path(tempfile.mkdtemp(prefix="lens_ch_bench_"))
    try:
        base_dir = tmp / "no-sparse"
        store = EmbeddedStore(str(base_dir), progress=False)
        index_documents(store, corpus, dense_encoder=dense, cache=cache, progress=False)
        store.close()
        base_size = _dir_size(base_dir)
        base_es = _es_size(os.environ["ES_URL"], corpus, None, cache, queries, qrels)[0] if args.es else 0
        for name, enc in encoders.items():
            start = time.perf_counter()
            sdir = tmp / uuid.uuid4().hex[:8]
            store = EmbeddedStore(str(sdir), progress=False)
            index_documents(store, corpus, sparse_encoder=enc, dense_encoder=dense, cache=cache, progress=False)
            index_s = time.perf_counter() - start
            encs = Encoders(progress=False)
            encs._sparse, encs._dense = enc, dense
            sparse = _ndcg(build_retriever("sparse", store, encs), queries, qrels)
            hybrid = _ndcg(build_retriever("hybrid", store, encs), queries, qrels)
            docs_nnz = float(np.mean([len(v) for v in enc.encode_documents([d.content for d in corpus[:500]])]))
            q_nnz = float(np.mean([len(v) for v in enc.encode_queries(list(queries.values()))]))
            store.close()
            size = _dir_size(sdir)
            row: dict[str, Any] = {
                "model": models[name],
                "dimension": enc.dimension,
                "docs_per_s": speed[name],
                "speedup": speed[name] / speed["SPLADE-tiny (full)"],
                "ndcg_sparse": sparse,
                "ndcg_hybrid": hybrid,
                "doc_nnz": docs_nnz,
                "query_nnz": q_nnz,
                "store_mib": size / 2**20,
                "store_sparse_mib": (size - base_size) / 2**20,
                "index_s": index_s,
            }
            if args.es:
                es_size, es_ndcg = _es_size(os.environ["ES_URL"], corpus, enc, cache, queries, qrels)
                row |= {"es_mib": es_size / 2**20, "es_sparse_mib": (es_size - base_es) / 2**20, "es_ndcg": es_ndcg}
            cfg_file = Path(models[name]) / "lens_rag_encoder.json"
            if cfg_file.is_file():
                training = json.loads(cfg_file.read_text()).get("training", {})
                row["train_s"] = training.get("seconds", {}).get("train")
                row["prep_s"] = sum(v for k, v in training.get("seconds", {}).items() if k != "train")
                row["train_peak_rss_mib"] = training.get("peak_rss_mib")
                row["train_steps"] = training.get("steps")
                row["train_config"] = training.get("config")
            results[name] = row
            print(f"  {name}: done in {time.perf_counter() - start:.0f}s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\nSciFact test ({len(qrels)} queries, {len(corpus)} passages); hybrid = BM25 + sparse + MiniLM (min-max); "
        f"torch threads {torch.get_num_threads()}; no-sparse store {base_size / 2**20:.1f} MiB"
        + (f", no-sparse ES index {base_es / 2**20:.1f} MiB" if args.es else "")
    )
    head = (
        f"{'model':<26} {'dim':>6} {'docs/s':>7} {'x':>5} {'sparse':>7} {'hybrid':>7} {'nnz d/q':>9} {'store MiB':>12}"
    )
    if args.es:
        head += f" {'ES MiB':>12} {'ES sparse':>9}"
    head += f" {'train s':>8} {'peak RSS':>9}"
    print(head)
    for name, r in results.items():
        line = (
            f"{name:<26} {r['dimension']:>6} {r['docs_per_s']:>7.1f} {r['speedup']:>5.2f} {r['ndcg_sparse']:>7.4f} "
            f"{r['ndcg_hybrid']:>7.4f} {r['doc_nnz']:>4.0f}/{r['query_nnz']:<4.0f} "
            f"{r['store_mib']:>5.1f} ({r['store_sparse_mib']:>4.1f})"
        )
        if args.es:
            line += f" {r['es_mib']:>5.1f} ({r['es_sparse_mib']:>4.1f}) {r['es_ndcg']:>9.4f}"
        train = r.get("train_s")
        rss = r.get("train_peak_rss_mib")
        line += f" {train:>8.0f} {rss:>6.0f} MiB" if train is not None and rss is not None else f" {'-':>8} {'-':>9}"
        print(line)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"benchmark peak RSS {peak:.0f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
