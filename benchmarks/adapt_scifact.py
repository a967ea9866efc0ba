"""Unsupervised adaptation (`lens-rag adapt`) measured on SciFact: every member and the hybrid, before and after.

Adaptation reads the store's passages only (SciFact `corpus.jsonl`); the test queries and qrels are
used for the evaluation below and nothing else.

    python benchmarks/adapt_scifact.py --store /tmp/scifact-store --out /tmp/adapted           # builds the store
    python benchmarks/adapt_scifact.py --store /tmp/scifact-store --out /tmp/adapted --kl-weight 1

Prints one table: nDCG@10 / Recall@100 of bm25, sparse, dense and the hybrid (min–max fusion, the
default) with the original query encoders and with the adapted ones, on the same store (documents keep
their vectors), plus the time and peak memory of each adaptation stage.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"


def _runs(store, queries, sparse_enc, dense_enc, depth=101):
    """Per-method runs {method: {qid: {doc: score}}} for the test queries, hybrid fused as the library does."""
    from lens_rag.fusion import fuse

    qids, texts = list(queries), [queries[q] for q in queries]
    sv = sparse_enc.encode_queries(texts)
    dv = dense_enc.encode_queries_array(texts)
    runs: dict[str, dict[str, dict[str, float]]] = {m: {} for m in ("bm25", "sparse", "dense", "hybrid")}
    for i, qid in enumerate(qids):
        lists = {
            "bm25": store.search_bm25(texts[i], top_k=depth),
            "sparse": store.search_sparse(sv[i], top_k=depth),
            "dense": store.search_dense(dv[i].tolist(), top_k=depth),
        }
        for name, hits in lists.items():
            runs[name][qid] = {h.id: float(h.score) for h in hits}
        runs["hybrid"][qid] = {h.id: float(h.score) for h in fuse(lists, "minmax", top_k=depth)}
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default=str(DATASET))
    ap.add_argument("--store", required=True, help="embedded store dir (filled from corpus.jsonl if empty)")
    ap.add_argument("--out", required=True, help="where the adapted query encoders go")
    ap.add_argument("--members", default="sparse", help="comma-separated: sparse, dense")
    ap.add_argument("--max-passages", type=int, default=None)
    ap.add_argument("--sentences", type=int, default=2, help="salient sentences per passage as pseudo-queries")
    ap.add_argument("--word-dropout", type=float, default=0.5, help="drop pseudo-query words with this probability")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--negatives", type=int, default=8)
    ap.add_argument("--candidate-k", type=int, default=30)
    ap.add_argument("--perc", type=float, default=0.95)
    ap.add_argument("--kl-weight", type=float, default=0.0)
    ap.add_argument("--teacher-temperature", type=float, default=0.1)
    ap.add_argument("--lr-dense", type=float, default=2e-5)
    ap.add_argument("--lr-sparse", type=float, default=2e-5)
    ap.add_argument("--budget", type=float, default=None, help="minutes of training (all members)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from lens_rag.encoders.dense import SentenceTransformerDenseEncoder
    from lens_rag.encoders.mlm import MLMSparseEncoder
    from lens_rag.evaluation import evaluate_run, load_beir
    from lens_rag.expansion import HeuristicQueryGenerator
    from lens_rag.stores.embedded import EmbeddedStore
    from lens_rag.training.adapt import AdaptOptions, adapt_store

    data = load_beir(args.dataset)
    store = EmbeddedStore(args.store)
    if store.count_documents() == 0:
        from lens_rag.indexing import index_documents

        index_documents(
            store, data.corpus, sparse_encoder=MLMSparseEncoder(), dense_encoder=SentenceTransformerDenseEncoder()
        )
    opts = AdaptOptions(
        members=tuple(args.members.split(",")),  # type: ignore[arg-type]
        max_passages=args.max_passages,
        word_dropout=args.word_dropout,
        candidate_k=args.candidate_k,
        negatives=args.negatives,
        perc=args.perc,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr={"dense": args.lr_dense, "sparse": args.lr_sparse},
        kl_weight=args.kl_weight,
        teacher_temperature=args.teacher_temperature,
        budget_minutes=args.budget,
        seed=args.seed,
        threads=args.threads,
    )
    t = time.monotonic()
    report = adapt_store(
        store, args.out, generator=HeuristicQueryGenerator(sentences=args.sentences), options=opts,
        work_dir=Path(args.out) / "work",
    )  # fmt: skip
    adapt_s = time.monotonic() - t

    queries = {q: data.queries[q] for q in data.qrels if q in data.queries}
    base = _runs(store, queries, MLMSparseEncoder(progress=False), SentenceTransformerDenseEncoder(progress=False))
    members = {m.member: m.out for m in report.members}
    sparse_q = MLMSparseEncoder(members.get("sparse", "splade-tiny"), progress=False)
    dense_q = SentenceTransformerDenseEncoder(members.get("dense", "all-MiniLM-L6-v2"), progress=False)
    adapted = _runs(store, queries, sparse_q, dense_q)
    rows = []
    for method in ("bm25", "sparse", "dense", "hybrid"):
        b = evaluate_run(base[method], data.qrels)
        a = evaluate_run(adapted[method], data.qrels)
        rows.append((method, b["ndcg@10"], a["ndcg@10"], b["recall@100"], a["recall@100"]))
    print(f"\nSciFact test, {len(queries)} queries; adaptation on corpus.jsonl only: {report.passages} passages, "
          f"{report.queries} pseudo-queries, {report.examples} examples, {report.dropped_false_negatives} "
          f"likely false negatives dropped")  # fmt: skip
    shown = {k: v for k, v in vars(args).items() if k not in ("dataset", "store", "out", "json")}
    print(f"options {json.dumps(shown)}")
    print(f"{'method':<8} {'nDCG@10 before':>15} {'after':>8} {'delta':>8} {'R@100 before':>13} {'after':>8}")
    for m, b, a, rb, ra in rows:
        print(f"{m:<8} {b:>15.4f} {a:>8.4f} {a - b:>+8.4f} {rb:>13.4f} {ra:>8.4f}")
    print(f"\n{'stage':<16} {'seconds':>8} {'peak RSS MiB':>13}")
    for name, s in report.stages.items():
        print(f"{name:<16} {s['seconds']:>8.1f} {s['peak_rss_mib']:>13}")
    print(f"{'adapt total':<16} {adapt_s:>8.1f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"args": vars(args), "rows": rows, "report": report.as_dict(), "adapt_seconds": adapt_s}, indent=2
            )
        )


if __name__ == "__main__":
    main()
