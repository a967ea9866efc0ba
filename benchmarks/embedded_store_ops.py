"""Embedded-store operations on SciFact: write throughput, reopen, query latency and nDCG@10, old vs new code.

Everything is measured on the store's public API with precomputed vectors, so the numbers are the
store's own cost (query encoding is reported once, apart: it is the same for every store version).
The passages, judged queries, qrels and all vectors are read once through `lens_rag` (document
vectors from the shared embedding cache that `lens-rag eval` fills) and kept in
`<cache>/bench/scifact-vectors.npz`; later runs read that file alone, so they depend on no code
under test other than the store.

`--baseline-rev REV` extracts `lens_rag/` at that git revision into a temporary package and runs it
beside the working tree's code in the same process, interleaved query by query, so the ratio is
taken under the same machine load (this 2-core machine is shared; absolute numbers are noisy).
With REV equal to the working tree's code the ratios show the noise floor.

    python benchmarks/embedded_store_ops.py --dataset ../shared/datasets/scifact --baseline-rev ebfacaa
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

TOP_K = 101  # 100 + a possible query-id self-hit, as benchmarks/embedded_latency.py
BATCH = 256  # index_documents' default batch size


# ---------------------------------------------------------------------------------------- vectors
def default_vectors_path(dataset_dir: str) -> Path:
    cache = Path(os.environ["LENS_RAG_CACHE"]) if os.environ.get("LENS_RAG_CACHE") else Path.home() / ".cache/lens-rag"
    return cache / "bench" / f"{Path(dataset_dir).resolve().name}-vectors.npz"


def load_vectors(dataset_dir: str, path: Path | None) -> dict[str, Any]:
    """Passages, judged test queries, qrels and every vector, computed once and kept in one npz file."""
    path = path or default_vectors_path(dataset_dir)
    if not path.exists():
        prepare_vectors(dataset_dir, path)
    z = np.load(path, allow_pickle=False)
    v: dict[str, Any] = {k: z[k] for k in z.files}
    v["qids"] = [str(q) for q in v["query_ids"]]
    v["query_text"] = dict(zip(v["qids"], (str(t) for t in v["query_texts"]), strict=True))
    v["qrels"] = json.loads(str(v["qrels_json"]))
    return v


def prepare_vectors(dataset_dir: str, path: Path) -> None:
    """Read the BEIR folder and encode it (through the shared embedding cache) with the default encoders."""
    from lens_rag.components import Encoders
    from lens_rag.evaluation import load_beir
    from lens_rag.indexing import EmbeddingCache, default_cache_dir

    dataset = load_beir(dataset_dir)
    qids = sorted(dataset.queries)
    print(f"encoding {len(dataset.corpus)} passages once (vectors from the embedding cache where present)...")
    encoders = Encoders(progress=False)
    cache = EmbeddingCache(default_cache_dir() / "embeddings")
    docs = [d.without_embeddings() for d in dataset.corpus]
    out: dict[str, list[Any]] = {"sparse": [], "dense": []}
    for kind, enc in (("sparse", encoders.sparse), ("dense", encoders.dense)):
        for start in range(0, len(docs), BATCH):
            batch = docs[start : start + BATCH]
            found = cache.lookup(enc, batch)
            missing = [i for i in range(len(batch)) if i not in found]
            if missing:
                fresh = enc.encode_documents([batch[i].content for i in missing])
                cache.store(enc, [batch[i] for i in missing], fresh)
                found.update(zip(missing, fresh, strict=True))
            out[kind].extend(found[i] for i in range(len(batch)))
            print(f"  {kind}: {start + len(batch)}/{len(docs)}", flush=True)
    texts = [dataset.queries[q] for q in qids]
    q_sparse = encoders.sparse.encode_queries(texts)
    q_dense = encoders.dense.encode_queries(texts)

    def csr(vecs: list[Any]) -> sp.csr_matrix:
        indptr = np.cumsum([0] + [len(v.indices) for v in vecs])
        return sp.csr_matrix(
            (np.concatenate([v.values for v in vecs]), np.concatenate([v.indices for v in vecs]), indptr),
            shape=(len(vecs), int(max(int(v.indices.max()) for v in vecs if len(v.indices))) + 1),
        )

    ds, qs = csr(out["sparse"]), csr(q_sparse)
    arrays = {
        "doc_ids": np.asarray([d.id for d in docs]),
        "contents": np.asarray([d.content for d in docs]),
        "metas": np.asarray([json.dumps(d.meta) for d in docs]),
        "dense": np.asarray(out["dense"], dtype=np.float32),
        "sparse_data": ds.data.astype(np.float32), "sparse_indices": ds.indices.astype(np.int64),
        "sparse_indptr": ds.indptr.astype(np.int64),
        "query_ids": np.asarray(qids),
        "query_texts": np.asarray(texts),
        "qrels_json": np.asarray(json.dumps({q: dataset.qrels[q] for q in qids})),
        "q_dense": np.asarray(q_dense, dtype=np.float32),
        "q_sparse_data": qs.data.astype(np.float32), "q_sparse_indices": qs.indices.astype(np.int64),
        "q_sparse_indptr": qs.indptr.astype(np.int64),
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def ndcg_at_10(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> float:
    """Mean nDCG@10 over the judged queries (pytrec_eval), query-id self-hits removed as `lens-rag eval` does."""
    import pytrec_eval

    cleaned = {q: {d: s for d, s in docs.items() if d != q} for q, docs in run.items()}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(cleaned)
    return float(np.mean([per_query[q]["ndcg_cut_10"] if q in per_query else 0.0 for q in qrels]))


def encode_latency(texts: list[str]) -> dict[str, float]:
    """p50 ms of encoding one query with each default encoder (the same for every store version)."""
    try:
        from lens_rag.components import Encoders
    except ImportError as e:  # the working tree is mid-change: leave it out
        print(f"(query encoding not measured: {e})")
        return {"sparse": float("nan"), "dense": float("nan")}

    enc = Encoders(progress=False)
    out = {}
    for kind, fn in (("sparse", enc.sparse.encode_queries), ("dense", enc.dense.encode_queries)):
        fn(["warm up"])
        ms = []
        for t in texts:
            t0 = time.perf_counter()
            fn([t])
            ms.append((time.perf_counter() - t0) * 1000)
        out[kind] = float(np.median(ms))
    return out


# ---------------------------------------------------------------------------------------- code versions
def package_at(rev: str, workdir: Path) -> str:
    """Extract `lens_rag/` at git revision `rev` as an importable package `lens_rag_<rev>`; returns its name."""
    name = "lens_rag_" + re.sub(r"\W", "_", rev)
    repo = Path(__file__).resolve().parent.parent
    tar = subprocess.run(["git", "archive", rev, "lens_rag"], cwd=repo, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(workdir)], input=tar, check=True)
    (workdir / "lens_rag").rename(workdir / name)
    pattern = re.compile(r"^(\s*)(from|import) lens_rag(?=[.\s])", re.M)
    for py in (workdir / name).rglob("*.py"):
        py.write_text(pattern.sub(rf"\1\2 {name}", py.read_text(encoding="utf-8")), encoding="utf-8")
    sys.path.insert(0, str(workdir))
    return name


class Version:
    """One version of the store code: its `EmbeddedStore`, `Document`, `SparseVector` and `fuse`."""

    def __init__(self, label: str, package: str) -> None:
        self.label = label
        self.store_cls = importlib.import_module(f"{package}.stores.embedded").EmbeddedStore
        self.document = importlib.import_module(f"{package}.documents").Document
        self.sparse_vector = importlib.import_module(f"{package}.sparse").SparseVector
        self.fuse = importlib.import_module(f"{package}.fusion").fuse

    def documents(self, v: dict[str, Any]) -> list[Any]:
        dense, ptr, idx, val = v["dense"], v["sparse_indptr"], v["sparse_indices"], v["sparse_data"]
        return [
            self.document(
                id=str(doc_id), content=str(v["contents"][i]), meta=json.loads(str(v["metas"][i])),
                embedding=dense[i].tolist(),
                sparse_embedding=self.sparse_vector(idx[ptr[i] : ptr[i + 1]].copy(), val[ptr[i] : ptr[i + 1]].copy()),
            )
            for i, doc_id in enumerate(v["doc_ids"])
        ]  # fmt: skip

    def queries(self, v: dict[str, Any]) -> list[tuple[str, str, Any, np.ndarray]]:
        ptr, idx, val = v["q_sparse_indptr"], v["q_sparse_indices"], v["q_sparse_data"]
        texts = v["query_text"]
        return [
            (q, texts[q], self.sparse_vector(idx[ptr[i] : ptr[i + 1]].copy(), val[ptr[i] : ptr[i + 1]].copy()),
             v["q_dense"][i])
            for i, q in enumerate(v["qids"])
        ]  # fmt: skip


# ---------------------------------------------------------------------------------------- measurements
def ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def write_all(version: Version, docs: list[Any], path: Path) -> float:
    """Bulk write in batches of 256 into a new store and close it; returns docs/s."""
    shutil.rmtree(path, ignore_errors=True)
    gc.collect()
    t0 = time.perf_counter()
    store = version.store_cls(path, progress=False)
    for start in range(0, len(docs), BATCH):
        store.write_documents(docs[start : start + BATCH])
    store.close()
    return len(docs) / (time.perf_counter() - t0)


def reopen(version: Version, path: Path, query: tuple[str, str, Any, np.ndarray]) -> dict[str, float]:
    """Open the store, count it, then run the first bm25, sparse and dense search (ms each)."""
    gc.collect()
    _, text, sq, dq = query
    out = {}
    t0 = time.perf_counter()
    store = version.store_cls(path, progress=False)
    n = store.count_documents()
    out["open+count"] = ms_since(t0)
    t = time.perf_counter()
    store.search_bm25(text, top_k=10)
    out["first bm25"] = ms_since(t)
    t = time.perf_counter()
    store.search_sparse(sq, top_k=10)
    out["first sparse"] = ms_since(t)
    t = time.perf_counter()
    store.search_dense(dq, top_k=10)
    out["first dense"] = ms_since(t)
    out["total"] = ms_since(t0)
    store.close()
    assert n > 0
    return out


def searchers(version: Version, store: Any) -> dict[str, Callable[[tuple], list[Any]]]:
    def hybrid(q: tuple) -> list[Any]:
        lists = {
            "bm25": store.search_bm25(q[1], top_k=TOP_K),
            "sparse": store.search_sparse(q[2], top_k=TOP_K),
            "dense": store.search_dense(q[3], top_k=TOP_K),
        }
        return list(version.fuse(lists, "minmax", top_k=TOP_K))

    return {
        "bm25": lambda q: store.search_bm25(q[1], top_k=TOP_K),
        "sparse": lambda q: store.search_sparse(q[2], top_k=TOP_K),
        "dense": lambda q: store.search_dense(q[3], top_k=TOP_K),
        "hybrid": hybrid,
    }


def small_commits(version: Version, store: Any, docs: list[Any], n: int) -> tuple[float, float]:
    """ms per single-document replace and per single-document delete (the per-commit overhead)."""
    t0 = time.perf_counter()
    for d in docs[:n]:
        store.write_documents([d])
    write_ms = ms_since(t0) / n
    t0 = time.perf_counter()
    for d in docs[:n]:
        store.delete_documents([d.id])
    delete_ms = ms_since(t0) / n
    return write_ms, delete_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="../shared/datasets/scifact")
    ap.add_argument("--vectors", type=Path, default=None, help="npz of precomputed vectors (made if missing)")
    ap.add_argument("--baseline-rev", default=None, help="git revision whose lens_rag/ to compare against")
    ap.add_argument("--queries", type=int, default=None, help="first N judged queries (default all 300)")
    ap.add_argument("--repeats", type=int, default=3, help="bulk writes and reopens per version (median)")
    ap.add_argument("--small", type=int, default=50, help="single-document commits timed per version")
    ap.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    ap.add_argument("--prepare", action="store_true", help="only compute and keep the vectors")
    args = ap.parse_args()

    v = load_vectors(args.dataset, args.vectors)
    if args.prepare:
        print("vectors ready")
        return
    if args.queries:
        v["qids"] = v["qids"][: args.queries]
    qrels = {q: v["qrels"][q] for q in v["qids"]}
    workdir = Path(tempfile.mkdtemp(prefix="lens-bench-"))
    try:
        versions = []
        if args.baseline_rev:
            versions.append(Version(f"baseline {args.baseline_rev}", package_at(args.baseline_rev, workdir)))
        versions.append(Version("working tree", "lens_rag"))
        docs = {ver.label: ver.documents(v) for ver in versions}
        queries = {ver.label: ver.queries(v) for ver in versions}
        rows: dict[str, dict[str, float]] = {ver.label: {} for ver in versions}

        # Bulk write: alternate versions, median of repeats.
        speeds: dict[str, list[float]] = {ver.label: [] for ver in versions}
        for _ in range(args.repeats):
            for i, ver in enumerate(versions):
                speeds[ver.label].append(write_all(ver, docs[ver.label], workdir / f"store{i}"))
        # Reopen: the first after the write (caches not built yet), then warm reopens.
        reopens: dict[str, list[dict[str, float]]] = {ver.label: [] for ver in versions}
        for _ in range(args.repeats + 1):
            for i, ver in enumerate(versions):
                reopens[ver.label].append(reopen(ver, workdir / f"store{i}", queries[ver.label][0]))
        for ver in versions:
            r = rows[ver.label]
            r["bulk write docs/s"] = statistics.median(speeds[ver.label])
            first, warm = reopens[ver.label][0], reopens[ver.label][1:]
            r["first open + 3 first searches ms"] = first["total"]
            for key in ("open+count", "first bm25", "first sparse", "first dense", "total"):
                r[f"reopen {key} ms"] = statistics.median(w[key] for w in warm)

        # Queries: interleaved version by version, query by query, on the warm stores.
        stores = {ver.label: ver.store_cls(workdir / f"store{i}", progress=False) for i, ver in enumerate(versions)}
        fns = {ver.label: searchers(ver, stores[ver.label]) for ver in versions}
        for ver in versions:
            for fn in fns[ver.label].values():
                fn(queries[ver.label][0])  # warm up
        for method in ("bm25", "sparse", "dense", "hybrid"):
            lat: dict[str, list[float]] = {ver.label: [] for ver in versions}
            runs: dict[str, dict[str, dict[str, float]]] = {ver.label: {} for ver in versions}
            for qi in range(len(v["qids"])):
                for ver in versions:
                    q = queries[ver.label][qi]
                    t0 = time.perf_counter()
                    hits = fns[ver.label][method](q)
                    lat[ver.label].append(ms_since(t0))
                    runs[ver.label][q[0]] = {h.document.id: h.score for h in hits}
            for ver in versions:
                r = rows[ver.label]
                r[f"{method} p50 ms"] = float(np.median(lat[ver.label]))
                r[f"{method} mean ms"] = float(np.mean(lat[ver.label]))
                r[f"{method} nDCG@10"] = ndcg_at_10(runs[ver.label], qrels)
        for ver in versions:
            w, d = small_commits(ver, stores[ver.label], docs[ver.label], args.small)
            rows[ver.label]["single-doc replace ms"] = w
            rows[ver.label]["single-doc delete ms"] = d
            stores[ver.label].close()
        enc = encode_latency([v["query_text"][q] for q in v["qids"][:100]])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    labels = [ver.label for ver in versions]
    lines = [f"{'metric':<36}" + "".join(f"{lab:>22}" for lab in labels) + ("   new/old" if len(labels) > 1 else "")]
    lines.append("-" * len(lines[0]))
    for key in rows[labels[-1]]:
        vals = [rows[lab][key] for lab in labels]
        fmt = "{:>22.4f}" if "nDCG" in key else "{:>22.1f}" if "docs/s" in key else "{:>22.2f}"
        line = f"{key:<36}" + "".join(fmt.format(x) for x in vals)
        if len(vals) > 1 and vals[0]:
            line += f"   {vals[-1] / vals[0]:>7.3f}"
        lines.append(line)
    lines.append(
        f"{len(v['qids'])} queries, top {TOP_K}, store calls with precomputed query vectors (hybrid = 3 calls + "
        f"min-max fusion); {len(v['doc_ids'])} passages; query encoding p50 (not included above): "
        f"sparse {enc['sparse']:.1f} ms, dense {enc['dense']:.1f} ms"
    )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
