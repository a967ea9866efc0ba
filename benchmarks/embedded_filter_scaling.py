"""Filtered dense and sparse search on many synthetic passages: a selective metadata filter (~1 % of rows).

Each passage gets `meta = {"shard": s, "year": y, "lang": ...}` with `s` uniform in 0..99, so the
filter `{"shard": 7}` keeps about 1 % of the rows. Vectors are shaped like the real ones (sparse:
~120 Zipf-distributed non-zeros over 30,522 terms, queries ~25; dense: 384-d), generated from a
seed per batch, so every code version gets the very same data. Latency is the store call, top 10.

Each (size, code version) runs in its own subprocess, one after another (memory is freed between
them); `--baseline-rev REV` adds the store code at that git revision (see `embedded_store_ops.py`).

    python benchmarks/embedded_filter_scaling.py --sizes 200000 1000000 --baseline-rev ebfacaa
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

VOCAB = 30_522
DIM = 384
BATCH = 10_000
FILTER = {"shard": 7}


def make_batch(version: Any, start: int, n: int, seed: int) -> list[Any]:
    rng = np.random.default_rng([seed, start])
    dense = rng.standard_normal((n, DIM)).astype(np.float32)
    shard = rng.integers(0, 100, size=n)
    year = rng.integers(1990, 2025, size=n)
    docs = []
    for i in range(n):
        ranks = rng.zipf(1.3, size=360) - 1
        idx = np.unique(ranks[ranks < VOCAB])[:120].astype(np.int64)
        docs.append(
            version.document(
                id=f"p{start + i}", content=f"passage {start + i} shard {shard[i]}",
                meta={"shard": int(shard[i]), "year": int(year[i]), "lang": "en" if i % 3 else "de"},
                embedding=dense[i],
                sparse_embedding=version.sparse_vector(idx, rng.uniform(0.05, 2.5, size=idx.size).astype(np.float32)),
            )
        )  # fmt: skip
    return docs


def timed(fn: Any, items: list[Any]) -> list[float]:
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - t) * 1000)
    return out


def worker(args: argparse.Namespace) -> None:
    import importlib

    class V:
        store_cls = importlib.import_module(f"{args.package}.stores.embedded").EmbeddedStore
        document = importlib.import_module(f"{args.package}.documents").Document
        sparse_vector = importlib.import_module(f"{args.package}.sparse").SparseVector

    path = Path(args.dir) / "store"
    shutil.rmtree(path, ignore_errors=True)
    store = V.store_cls(path, progress=False)
    t0 = time.perf_counter()
    for start in range(0, args.size, BATCH):
        store.write_documents(make_batch(V, start, min(BATCH, args.size - start), args.seed))
    build_s = time.perf_counter() - t0
    store.close()
    rng = np.random.default_rng([args.seed, 10**9])
    sq = []
    for _ in range(args.queries):
        ranks = rng.zipf(1.3, size=75) - 1
        idx = np.unique(ranks[ranks < VOCAB])[:25].astype(np.int64)
        sq.append(V.sparse_vector(idx, rng.uniform(0.05, 2.5, size=idx.size).astype(np.float32)))
    dq = [rng.standard_normal(DIM).astype(np.float32) for _ in range(args.queries)]

    t0 = time.perf_counter()
    store = V.store_cls(path, progress=False)
    count = store.count_documents()
    store.search_sparse(sq[0], top_k=10)
    store.search_dense(dq[0], top_k=10)
    open_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.search_dense(dq[0], top_k=10, filters=FILTER)
    first_filtered_ms = (time.perf_counter() - t0) * 1000
    res: dict[str, Any] = {"size": args.size, "label": args.label, "count": count, "build_s": build_s}
    res["open_and_first_searches_s"] = open_s
    res["first_filtered_ms"] = first_filtered_ms
    res["dense_ms"] = float(np.median(timed(lambda q: store.search_dense(q, top_k=10), dq)))
    res["sparse_ms"] = float(np.median(timed(lambda q: store.search_sparse(q, top_k=10), sq)))
    res["dense_filtered_ms"] = float(np.median(timed(lambda q: store.search_dense(q, top_k=10, filters=FILTER), dq)))
    res["sparse_filtered_ms"] = float(np.median(timed(lambda q: store.search_sparse(q, top_k=10, filters=FILTER), sq)))
    # A different shard per query (disjoint for dense and sparse): no store-side cache of a filter's rows helps.
    fresh = [({"shard": (7 + i) % 100}, q) for i, q in enumerate(dq, start=1)]
    res["dense_fresh_ms"] = float(
        np.median(timed(lambda fq: store.search_dense(fq[1], top_k=10, filters=fq[0]), fresh))
    )
    fresh = [({"shard": (7 + 50 + i) % 100}, q) for i, q in enumerate(sq, start=1)]
    res["sparse_fresh_ms"] = float(
        np.median(timed(lambda fq: store.search_sparse(fq[1], top_k=10, filters=fq[0]), fresh))
    )
    hits = store.search_dense(dq[1], top_k=10, filters=FILTER) + store.search_sparse(sq[1], top_k=10, filters=FILTER)
    res["filtered_ids"] = [h.document.id for h in hits]
    res["all_match_filter"] = all(h.document.meta["shard"] == FILTER["shard"] for h in hits)
    res["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    res["disk_gb"] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**30
    store.close()
    shutil.rmtree(path, ignore_errors=True)
    print("RESULT " + json.dumps(res), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200_000])
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baseline-rev", default=None)
    ap.add_argument("--skip-current", action="store_true", help="measure only the baseline revision")
    ap.add_argument("--dir", default=None, help="where to build the stores (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--package", default="lens_rag", help=argparse.SUPPRESS)
    ap.add_argument("--label", default="", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        if args.package != "lens_rag":
            sys.path.insert(0, str(Path(args.dir).parent))
        worker(args)
        return

    from embedded_store_ops import package_at

    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="lens-filter-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    versions: list[tuple[str, str]] = []
    if args.baseline_rev:
        versions.append((f"baseline {args.baseline_rev}", package_at(args.baseline_rev, base)))
    if not args.skip_current:
        versions.append(("working tree", "lens_rag"))
    results = []
    try:
        for size in args.sizes:
            for label, package in versions:
                work = base / "work"
                work.mkdir(exist_ok=True)
                cmd = [sys.executable, __file__, "--worker", "--package", package, "--label", label]
                cmd += [
                    "--size",
                    str(size),
                    "--queries",
                    str(args.queries),
                    "--seed",
                    str(args.seed),
                    "--dir",
                    str(work),
                ]
                print(f"{label}: {size} passages...", flush=True)
                proc = subprocess.run(cmd, capture_output=True, text=True)
                line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if proc.returncode or not line:
                    print(f"  failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
                    continue
                results.append(json.loads(line[0][7:]))
                print("  " + json.dumps({k: v for k, v in results[-1].items() if k != "filtered_ids"}), flush=True)
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    head = (
        f"{'passages':>9} {'code':<22} {'build s':>8} {'open s':>7} | {'dense p50':>9} {'filt same':>9} "
        f"{'filt new':>9} | {'sparse p50':>10} {'filt same':>9} {'filt new':>9} | {'1st filt':>8} {'RSS GB':>6} "
        f"{'disk GB':>7} {'ids==':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        same = [x for x in results if x["size"] == r["size"]]
        eq = "yes" if all(x["filtered_ids"] == same[0]["filtered_ids"] for x in same) else "NO"
        lines.append(
            f"{r['size']:>9} {r['label']:<22} {r['build_s']:>8.1f} {r['open_and_first_searches_s']:>7.1f} | "
            f"{r['dense_ms']:>9.2f} {r['dense_filtered_ms']:>9.2f} {r['dense_fresh_ms']:>9.2f} | "
            f"{r['sparse_ms']:>10.2f} {r['sparse_filtered_ms']:>9.2f} {r['sparse_fresh_ms']:>9.2f} | "
            f"{r['first_filtered_ms']:>8.1f} {r['peak_rss_gb']:>6.2f} "
            f"{r['disk_gb']:>7.2f} {eq + ('' if r['all_match_filter'] else ' BAD'):>5}"
        )
    lines.append(
        f"p50 ms over {args.queries} queries, top 10; 'filt same' = filter {json.dumps(FILTER)} (~1 % of rows) on "
        "every query, 'filt new' = another shard (~1 %) on each query, so no cache of a filter's rows helps; "
        "'open s' = reopen + first unfiltered sparse and dense search; '1st filt' = first filtered search (ms); "
        "'ids==' = same filtered top-10 ids as the first code version"
    )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
