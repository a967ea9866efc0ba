"""How embedded-store sparse and dense query cost and memory grow with the number of passages.

Synthetic vectors shaped like the real ones: sparse documents with ~120 non-zeros over a 30,522-term
vocabulary drawn Zipf-like (SPLADE-tiny on SciFact averages ~120 per passage), queries with ~25;
dense 384-d unit vectors (MiniLM). The peer column is a brute-force numpy/scipy baseline on the same
arrays without the store (what a user would hand-roll), so the ratio shows the store's overhead.

    python benchmarks/embedded_scaling.py --sizes 10000 100000 1000000 --queries 50
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lens_rag.documents import Document
from lens_rag.sparse import SparseVector
from lens_rag.stores.embedded import EmbeddedStore

VOCAB = 30_522
DIM = 384


def zipf_indices(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    ranks = rng.zipf(1.3, size=k * 3) - 1
    ranks = np.unique(ranks[ranks < VOCAB])[:k]
    return np.sort(ranks)


def make_sparse(rng: np.random.Generator, k: int) -> SparseVector:
    idx = zipf_indices(rng, VOCAB, k)
    return SparseVector(idx.astype(np.int64), rng.uniform(0.05, 2.5, size=idx.size).astype(np.float32))


def fill(store: EmbeddedStore, n: int, rng: np.random.Generator, batch: int = 50_000) -> None:
    for start in range(0, n, batch):
        m = min(batch, n - start)
        dense = rng.standard_normal((m, DIM)).astype(np.float32)
        docs = [
            Document(id=str(start + i), content=f"passage {start + i}", embedding=dense[i].tolist(),
                     sparse_embedding=make_sparse(rng, 120))
            for i in range(m)
        ]  # fmt: skip
        store.write_documents(docs)


def timed(fn, reps: list) -> list[float]:
    out = []
    for r in reps:
        t = time.perf_counter()
        fn(r)
        out.append((time.perf_counter() - t) * 1000)
    return out


def run_size(n: int, rng: np.random.Generator, n_queries: int) -> tuple:
    """Fill a fresh in-memory store with `n` passages and time both query kinds."""
    store = EmbeddedStore(None, progress=False)
    t = time.perf_counter()
    fill(store, n, rng)
    build_s = time.perf_counter() - t
    sq = [make_sparse(rng, 25) for _ in range(n_queries)]
    dq = [rng.standard_normal(DIM).astype(np.float32) for _ in range(n_queries)]
    store.search_sparse(sq[0])  # builds the CSC matrix once
    store.search_dense(dq[0])
    sparse_ms = timed(lambda q: store.search_sparse(q, top_k=100), sq)
    dense_ms = timed(lambda q: store.search_dense(q, top_k=100), dq)
    csc, dense = store._sparse_matrix(), store._dense_matrix()
    assert csc is not None and dense is not None
    sparse_mb = (csc.data.nbytes + csc.indices.nbytes + csc.indptr.nbytes) * 2 / 2**20  # CSR + CSC copies
    dense_mb = dense.nbytes / 2**20
    # The hand-rolled baseline: a full CSR mat-vec and a full dense mat-vec + argpartition.
    csr = csc.tocsr()

    def raw_sparse(q: SparseVector) -> None:
        v = np.zeros(csr.shape[1], np.float32)
        keep = q.indices < v.size
        v[q.indices[keep]] = q.values[keep]
        s = csr @ v
        np.argpartition(-s, 100)[:100]

    def raw_dense(q: np.ndarray) -> None:
        s = dense @ q
        np.argpartition(-s, 100)[:100]

    raw_s = timed(raw_sparse, sq)
    raw_d = timed(raw_dense, dq)
    return (
        (n, build_s, np.median(sparse_ms), np.percentile(sparse_ms, 95), np.median(raw_s), sparse_mb,
         np.median(dense_ms), np.percentile(dense_ms, 95), np.median(raw_d), dense_mb)
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--plot", default=None, help="write a PNG of latency vs size")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = [run_size(n, rng, args.queries) for n in args.sizes]
    head = (
        f"{'passages':>9} {'fill s':>7} | {'sparse p50':>10} {'p95':>7} {'raw CSR':>8} {'ratio':>6} {'MB':>7} | "
        f"{'dense p50':>9} {'p95':>7} {'raw np':>7} {'ratio':>6} {'MB':>7}"
    )
    print(head)
    print("-" * len(head))
    for n, b, s50, s95, rs, smb, d50, d95, rd, dmb in rows:
        print(
            f"{n:>9} {b:>7.1f} | {s50:>10.2f} {s95:>7.2f} {rs:>8.2f} {rs / s50:>5.1f}x {smb:>7.0f} | "
            f"{d50:>9.2f} {d95:>7.2f} {rd:>7.2f} {rd / d50:>5.1f}x {dmb:>7.0f}"
        )
    print("latencies in ms per query (top 100, store call incl. fetching documents); ratio = raw / store")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ns = [r[0] for r in rows]
        ax.loglog(ns, [r[2] for r in rows], "o-", label="sparse p50")
        ax.loglog(ns, [r[6] for r in rows], "s-", label="dense p50")
        ax.set_xlabel("passages")
        ax.set_ylabel("ms / query")
        ax.set_title("Embedded store query latency")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
