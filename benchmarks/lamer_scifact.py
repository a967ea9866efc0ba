"""LameR on BEIR SciFact: nDCG@10 of BM25, LameR(BM25) and LameR(hybrid), with the LLM cost.

LameR(BM25): first stage BM25 (M candidates in the prompt), second stage BM25 with ``q a1 … q aN``.
LameR(hybrid): the same first stage and prompt — so the same cached LLM answers, no extra calls —
and a hybrid second stage (RRF of BM25 + SPLADE-tiny + MiniLM by default).

Cost: each query is one prompt of ~1,400 tokens (10 candidates cut to 1,024 tokens) and 5 answers of up
to 128 tokens. llama.cpp's server ignores ``n``, so that is 5 HTTP requests; the prompt is evaluated
once (prefix cache) and each answer takes ~3–6 s at 20–40 tokens/s on 2 free cores, i.e. ~30–60 s a
query — all 300 queries take hours. By default LameR runs on a fixed random sample of 50 queries
(``--queries N``, ``--all``); BM25 and the hybrid are also reported on all 300 queries as a sanity
check against the published numbers, and on the same sample for a paired comparison.

A stronger model is one flag: ``--llm-url http://host:8000/v1 --llm-model NAME`` for any
OpenAI-compatible server, or ``--backend transformers --llm-model Qwen/Qwen2.5-1.5B-Instruct``.

Usage::

    eval "$(scripts/llm-server.sh start)"
    python benchmarks/lamer_scifact.py                       # 50 queries, the local SmolLM2 server
    python benchmarks/lamer_scifact.py --all --json runs/lamer_scifact.json

The data is read from ``../shared/datasets/scifact`` (``--dataset``); never copy it into the repo.
LLM outputs are cached on disk (``--llm-cache``), so a rerun costs no LLM calls.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from lens_rag.components import Encoders, build_retriever, method_needs
from lens_rag.evaluation import evaluate_run, format_table, load_beir
from lens_rag.indexing import EmbeddingCache, index_documents
from lens_rag.indexing import default_cache_dir as embedding_cache_dir
from lens_rag.lamer import LameRRetriever
from lens_rag.llm import LLMCache, make_llm_client
from lens_rag.llm.transformers_client import default_cache_dir
from lens_rag.stores.embedded import EmbeddedStore

logger = logging.getLogger("lamer_scifact")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATASET = ROOT.parent / "shared" / "datasets" / "scifact"

# nDCG@10 anchors quoted in METHODS.md / the dataset README.
REFERENCES = [
    ("BM25 flat (Pyserini 2CR)", 0.6789),
    ("BM25 multifield (BEIR / Pyserini)", 0.6647),
    ("LameR over BM25, large LLMs (QueryGym reproduction)", "0.714–0.725"),
    ("LameR paper (DL19 / DL20; no SciFact number)", "69.1 / 64.8 (BM25 50.6 / 48.0)"),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default=os.environ.get("LENS_RAG_SCIFACT", str(DEFAULT_DATASET)))
    p.add_argument("--queries", type=int, default=50, help="how many queries LameR runs on (a fixed random sample)")
    p.add_argument("--all", action="store_true", help="run LameR on every query")
    p.add_argument("--seed", type=int, default=0, help="seed of the query sample")
    p.add_argument("--llm-url", default=None, help="OpenAI-compatible endpoint (default: $LENS_RAG_LLM_URL)")
    p.add_argument("--llm-model", default=None, help="model name (server) or HF name/path (transformers)")
    p.add_argument("--backend", default="auto", choices=["auto", "openai", "transformers"])
    p.add_argument("--llm-timeout", type=float, default=120.0)
    p.add_argument("--n-candidates", type=int, default=10, help="M: first-stage passages in the prompt")
    p.add_argument("--n-answers", type=int, default=5, help="N: sampled answers")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--domain", default="default", help="prompt wording: default, scientific, …")
    p.add_argument("--candidate-token-budget", type=int, default=1024)
    p.add_argument("--hybrid", default="hybrid", help="second-stage hybrid method, e.g. hybrid or hybrid:bm25+dense")
    p.add_argument("--llm-cache", default=str(default_cache_dir() / "llm-cache"), help="'' disables the disk cache")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def run_method(retriever: Any, queries: dict[str, str], progress: bool) -> tuple[dict[str, dict[str, float]], float]:
    from tqdm.auto import tqdm

    run: dict[str, dict[str, float]] = {}
    start = time.perf_counter()
    for qid, text in tqdm(queries.items(), desc=getattr(retriever, "name", "run"), disable=not progress):
        run[qid] = {h.id: h.score for h in retriever.retrieve(text, top_k=101)}
    return run, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    progress = not args.no_progress
    data = load_beir(args.dataset)
    all_ids = sorted(data.queries)
    n = len(all_ids) if args.all else min(args.queries, len(all_ids))
    # A seeded shuffle, then a prefix: the first 20 of a 50-query run are the 20-query run, so the disk
    # cache of a shorter run is reused by a longer one.
    shuffled = list(all_ids)
    random.Random(args.seed).shuffle(shuffled)
    sample_ids = shuffled[:n]
    sample = {q: data.queries[q] for q in sample_ids}
    qrels_all = data.qrels
    qrels_sample = {q: data.qrels[q] for q in sample_ids}

    encoders = Encoders(progress=progress)
    store = EmbeddedStore(None, progress=progress)
    needs = method_needs(args.hybrid)
    started = time.perf_counter()
    index_documents(
        store,
        [d.without_embeddings() for d in data.corpus],
        sparse_encoder=encoders.sparse if "sparse" in needs else None,
        dense_encoder=encoders.dense if "dense" in needs else None,
        cache=EmbeddingCache(embedding_cache_dir() / "embeddings"),
        progress=progress,
        total=len(data.corpus),
    )
    print(
        f"indexed {store.count_documents()} SciFact documents in {time.perf_counter() - started:.0f} s", file=sys.stderr
    )

    bm25 = build_retriever("bm25", store, encoders)
    hybrid = build_retriever(args.hybrid, store, encoders)
    llm = make_llm_client(args.llm_url, args.llm_model, backend=args.backend, timeout=args.llm_timeout)
    options = {
        "n_candidates": args.n_candidates,
        "n_answers": args.n_answers,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "domain": args.domain,
        "candidate_token_budget": args.candidate_token_budget,
    }
    cache = LLMCache(args.llm_cache or None)
    lamer_bm25 = LameRRetriever(bm25, llm, cache=cache, name="lamer(bm25)", **options)
    lamer_hybrid = LameRRetriever(
        bm25, llm, second_stage=hybrid, cache=cache, name=f"lamer(bm25 -> {args.hybrid})", **options
    )

    scores: dict[str, dict[str, float]] = {}
    cost: dict[str, dict[str, float]] = {}
    per_query: dict[str, dict[str, float]] = {}
    h = args.hybrid
    plan: list[tuple[str, Any, dict[str, str], dict[str, dict[str, int]]]] = [
        ("bm25 (all queries)", bm25, data.queries, qrels_all),
        (f"{h} (all queries)", hybrid, data.queries, qrels_all),
        (f"bm25 ({n} q)", bm25, sample, qrels_sample),
        (f"{h} ({n} q)", hybrid, sample, qrels_sample),
        (f"lamer(bm25) ({n} q)", lamer_bm25, sample, qrels_sample),
        (f"lamer(bm25 -> {h}) ({n} q)", lamer_hybrid, sample, qrels_sample),
    ]
    if h == "bm25":  # no separate hybrid: drop the duplicate rows
        plan = [plan[0], plan[2], plan[4]]
    for label, retriever, queries, qrels in plan:
        requests_before = getattr(getattr(llm, "usage", None), "requests", 0)
        run, seconds = run_method(retriever, queries, progress)
        scores[label] = evaluate_run(run, qrels)
        if queries is sample:
            per_query[label] = {q: evaluate_run({q: run[q]}, {q: qrels[q]}, ["ndcg_cut_10"])["ndcg@10"] for q in qrels}
        entry: dict[str, float] = {"seconds/query": seconds / max(1, len(queries))}
        if isinstance(retriever, LameRRetriever):
            s = retriever.stats
            entry.update(
                generate_calls=s.llm_calls,
                http_requests=getattr(getattr(llm, "usage", None), "requests", 0) - requests_before,
                cache_hits=s.cache_hits,
                fallbacks=s.fallbacks,
                llm_seconds_per_query=s.llm_seconds / max(1, len(queries)),
            )
        cost[label] = entry
        print(f"{label}: nDCG@10 {scores[label]['ndcg@10']:.4f}  {entry}", file=sys.stderr)

    print(f"\nSciFact test, LameR on {n} of {len(all_ids)} queries (seed {args.seed}); LLM {llm!r}")
    print(format_table(scores))
    print("\ncost:")
    for label, entry in cost.items():
        print(
            f"  {label}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items())
        )
    base = per_query.get(f"bm25 ({n} q)", {})
    print(f"\nper query vs bm25 on the same {n} queries (nDCG@10 better / same / worse):")
    for label, values in per_query.items():
        if label.startswith("lamer") and base:
            better = sum(values[q] > base[q] + 1e-9 for q in base)
            worse = sum(values[q] < base[q] - 1e-9 for q in base)
            print(f"  {label}: {better} / {len(base) - better - worse} / {worse}")
    print("\nreferences (nDCG@10):")
    for name, value in REFERENCES:
        print(f"  {name}: {value}")
    if args.json is not None:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "args": vars(args),
            "llm": llm.to_config(),
            "query_ids": sample_ids,
            "scores": scores,
            "cost": cost,
            "per_query_ndcg@10": per_query,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str))
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
