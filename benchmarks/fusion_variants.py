"""Hybrid fusion variants on a BEIR dataset: each retriever runs once, every fusion is scored.

Retrieves the top `--depth` candidates per query with bm25, sparse (SPLADE-tiny) and dense
(MiniLM) on the embedded store (document vectors from the shared embedding cache), then prints
nDCG@10 / Recall@100 for RRF, min–max and distribution-based fusion, with equal and tilted weights.

    python benchmarks/fusion_variants.py --dataset ../shared/datasets/scifact
"""

from __future__ import annotations

import argparse
import itertools

from lens_rag.components import Encoders, build_retriever
from lens_rag.evaluation import evaluate_run, load_beir
from lens_rag.fusion import fuse
from lens_rag.indexing import EmbeddingCache, default_cache_dir, index_documents
from lens_rag.stores.embedded import EmbeddedStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="../shared/datasets/scifact")
    ap.add_argument("--depth", type=int, default=100, help="candidates per retriever")
    args = ap.parse_args()
    ds = load_beir(args.dataset)
    enc = Encoders(progress=False)
    store = EmbeddedStore(None, progress=False)
    index_documents(
        store, [d.without_embeddings() for d in ds.corpus], sparse_encoder=enc.sparse, dense_encoder=enc.dense,
        cache=EmbeddingCache(default_cache_dir() / "embeddings"), progress=True,
    )  # fmt: skip
    lists = {
        m: {q: build_retriever(m, store, enc).retrieve(t, top_k=args.depth) for q, t in ds.queries.items()}
        for m in ("bm25", "sparse", "dense")
    }
    rows: list[tuple[str, dict[str, float]]] = []
    for m in lists:
        rows.append((m, evaluate_run({q: {h.id: h.score for h in hits} for q, hits in lists[m].items()}, ds.qrels)))
    combos = [("bm25", "dense"), ("bm25", "sparse"), ("sparse", "dense"), ("bm25", "sparse", "dense")]
    weightings = {"equal": None, "bm25 x1.5": {"bm25": 1.5}, "dense x1.5": {"dense": 1.5}}
    for combo, method, (wname, w) in itertools.product(combos, ("rrf", "minmax", "dbsf"), weightings.items()):
        weights = {k: v for k, v in (w or {}).items() if k in combo} or None
        if w is not None and weights is None:
            continue
        run = {
            q: {h.id: h.score for h in fuse({m: lists[m][q] for m in combo}, method, weights=weights, top_k=101)}
            for q in ds.queries
        }
        rows.append((f"{'+'.join(combo)} {method} {wname}", evaluate_run(run, ds.qrels)))
    print(f"{'method':<36} {'nDCG@10':>8} {'R@100':>7}")
    for name, s in rows:
        print(f"{name:<36} {s['ndcg@10']:>8.4f} {s['recall@100']:>7.4f}")


if __name__ == "__main__":
    main()
