"""Document expansion (doc2query / doc2query--) on SciFact: BM25 alone and in the hybrid, with and without it.

Sparse (SPLADE-tiny) and dense (MiniLM) candidates do not depend on expansion (it only changes what
BM25 indexes), so they are retrieved once from an embedded store (vectors from the shared embedding
cache); each expansion variant builds a BM25-only embedded store and is fused with them exactly as
:class:`~lens_rag.retrieval.HybridRetriever` does (min–max, equal weights, 100 candidates each).

Heuristic (no-LLM) variants run on the full corpus. With ``--llm-queries N`` an LLM variant runs on a
subset: N test queries drawn with ``--seed``; the passages expanded are the union of the baseline
hybrid's top ``--llm-depth`` for those queries (no judgments used); every variant of that table
(none, heuristic, LLM) expands the same passages and is scored on the same N queries. Generated
queries are cached (``~/.cache/lens-rag/doc2query``), so re-runs are free.

    python benchmarks/expansion_scifact.py --dataset ../shared/datasets/scifact
    python benchmarks/expansion_scifact.py --llm-queries 10 --llm-depth 10     # needs LENS_RAG_LLM_URL
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Mapping, Sequence

from lens_rag.components import Encoders, build_retriever
from lens_rag.documents import Document, ScoredDocument
from lens_rag.evaluation import evaluate_run, load_beir
from lens_rag.expansion import ExpansionReport, HeuristicQueryGenerator, QueryGenerator, expand_documents
from lens_rag.fusion import fuse
from lens_rag.indexing import EmbeddingCache, default_cache_dir, index_documents
from lens_rag.stores.embedded import EmbeddedStore

Lists = dict[str, list[ScoredDocument]]


def bm25_lists(docs: Sequence[Document], queries: Mapping[str, str], depth: int) -> Lists:
    store = EmbeddedStore(None, progress=False)
    store.write_documents(list(docs))
    out = {q: store.search_bm25(t, top_k=depth) for q, t in queries.items()}
    store.close()
    return out


def scores(bm25: Lists, other: Mapping[str, Lists], qrels: Mapping[str, Mapping[str, int]]) -> tuple[float, float]:
    run_b = {q: {h.id: h.score for h in hits} for q, hits in bm25.items()}
    hybrid = {
        q: {h.id: h.score for h in fuse({"bm25": bm25[q], **{m: other[m][q] for m in other}}, "minmax", top_k=100)}
        for q in bm25
    }
    judged = {q: qrels[q] for q in bm25}
    return evaluate_run(run_b, judged)["ndcg@10"], evaluate_run(hybrid, judged)["ndcg@10"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="../shared/datasets/scifact")
    ap.add_argument("--depth", type=int, default=100, help="candidates per retriever")
    ap.add_argument("--filter-top-k", type=int, default=10, help="doc2query-- rank cut-off")
    ap.add_argument("--llm-queries", type=int, default=0, help="test queries for the LLM subset run (0: skip)")
    ap.add_argument("--llm-depth", type=int, default=10, help="expand the baseline hybrid's top-N for those")
    ap.add_argument("--llm-n", type=int, default=2, help="pseudo-queries sampled per passage")
    ap.add_argument("--llm-workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--es", action="store_true", help="also BM25 on Elasticsearch ($ES_URL) for the main variants")
    ap.add_argument("--skip-hybrid", action="store_true", help="BM25 only (no SPLADE/MiniLM candidates)")
    ap.add_argument("--skip-heuristic", action="store_true", help="only the LLM subset table (its queries only)")
    args = ap.parse_args()

    ds = load_beir(args.dataset)
    corpus = [d.without_embeddings() for d in ds.corpus]
    if args.es:
        es_bm25(args, ds, corpus)
    if args.skip_hybrid:
        return
    enc = Encoders(progress=False)
    store = EmbeddedStore(None, progress=False)
    index_documents(
        store, [d.without_embeddings() for d in corpus], sparse_encoder=enc.sparse, dense_encoder=enc.dense,
        cache=EmbeddingCache(default_cache_dir() / "embeddings"), progress=False,
    )  # fmt: skip
    queries = ds.queries
    if args.skip_heuristic:
        queries = {q: ds.queries[q] for q in sample_qids(args, ds.queries)}
    other = {
        m: {q: build_retriever(m, store, enc).retrieve(t, top_k=args.depth) for q, t in queries.items()}
        for m in ("sparse", "dense")
    }
    store.close()
    print(f"SciFact test: {len(queries)} queries, {len(corpus)} passages; hybrid = BM25 + SPLADE-tiny + MiniLM")
    print(f"{'variant':<56} {'kept/gen':>13} {'BM25':>7} {'hybrid':>7} {'time':>6}")
    variants: list[tuple[str, str, HeuristicQueryGenerator | None]] = [
        ("none", "none", None),
        ("heuristic title (default)", "doc2query", HeuristicQueryGenerator()),
        ("heuristic title (default)", "doc2query--", HeuristicQueryGenerator()),
        ("heuristic title+sentence+8 keyphrases", "doc2query", HeuristicQueryGenerator(sentences=1, keyphrases=8)),
        ("heuristic title+sentence+8 keyphrases", "doc2query--", HeuristicQueryGenerator(sentences=1, keyphrases=8)),
        ("heuristic 2 sentences", "doc2query", HeuristicQueryGenerator(sentences=2, title=False)),
        ("heuristic 8 keyphrases", "doc2query", HeuristicQueryGenerator(keyphrases=8, title=False)),
    ]
    baseline: Lists = {}
    for name, mode, gen in variants[:1] if args.skip_heuristic else variants:
        start = time.perf_counter()
        report = ExpansionReport()
        docs = expand_documents(corpus, mode=mode, generator=gen, filter_top_k=args.filter_top_k, report=report)
        bm25 = bm25_lists(docs, queries, args.depth)
        baseline = baseline or bm25
        b, h = scores(bm25, other, ds.qrels)
        kept = f"{report.kept}/{report.generated}" if mode != "none" else "-"
        print(
            f"{name + ' ' + mode:<56} {kept:>13} {b:>7.4f} {h:>7.4f} {time.perf_counter() - start:>5.0f}s", flush=True
        )

    if args.llm_queries:
        llm_subset(args, ds, corpus, baseline, other)


def sample_qids(args: argparse.Namespace, queries: Mapping[str, str]) -> list[str]:
    return sorted(random.Random(args.seed).sample(sorted(queries), args.llm_queries))


def es_bm25(args: argparse.Namespace, ds: object, corpus: list[Document]) -> None:
    import os
    import uuid

    from lens_rag.stores.elasticsearch import ElasticsearchStore

    print(f"Elasticsearch {os.environ['ES_URL']} (english analyzer; expansion via combined_fields), BM25 only:")
    for name, mode in (("none", "none"), ("heuristic", "doc2query"), ("heuristic", "doc2query--")):
        docs = expand_documents(corpus, mode=mode, filter_top_k=args.filter_top_k)
        store = ElasticsearchStore(
            os.environ["ES_URL"], index=f"lens-rag-bench-exp-{uuid.uuid4().hex[:8]}", progress=False
        )
        try:
            store.write_documents(docs)
            run = {
                q: {h.id: h.score for h in store.search_bm25(t, top_k=args.depth)}
                for q, t in ds.queries.items()  # type: ignore[attr-defined]
            }
        finally:
            store.delete_index()
            store.close()
        ndcg = evaluate_run(run, ds.qrels)["ndcg@10"]  # type: ignore[attr-defined]
        print(f"  ES {name + ' ' + mode:<40} BM25 nDCG@10 {ndcg:.4f}", flush=True)


def llm_subset(args: argparse.Namespace, ds: object, corpus: list[Document], baseline: Lists, other: Mapping) -> None:
    from lens_rag.expansion import LLMQueryGenerator
    from lens_rag.llm.base import LLMCache, make_llm_client

    qids = sample_qids(args, ds.queries)  # type: ignore[attr-defined]
    chosen: set[str] = set()
    for q in qids:
        fused = fuse({"bm25": baseline[q], **{m: other[m][q] for m in other}}, "minmax", top_k=args.llm_depth)
        chosen.update(h.id for h in fused)
    subset = [d for d in corpus if d.id in chosen]
    queries = {q: ds.queries[q] for q in qids}  # type: ignore[attr-defined]
    llm = make_llm_client(timeout=300.0)
    gen = LLMQueryGenerator(
        llm, n=args.llm_n, cache=LLMCache(default_cache_dir() / "doc2query"), workers=args.llm_workers
    )
    start = time.perf_counter()
    generated = dict(zip([d.id for d in subset], gen.generate(subset, progress=True), strict=True))
    took = time.perf_counter() - start
    print(
        f"\nLLM subset: {len(qids)} queries (seed {args.seed}), {len(subset)} passages expanded "
        f"(baseline hybrid top-{args.llm_depth}); {llm.model}, n={args.llm_n}: "
        f"{gen.generated} passages generated in {took:.0f}s, {len(subset) - gen.generated} cached"
    )
    for d in subset[:3]:
        print(f"  e.g. {d.id}: {generated[d.id]}")

    class Fixed:
        name = "cached-llm"

        def generate(self, documents: Sequence[Document], *, progress: bool = False) -> list[list[str]]:
            return [generated.get(d.id, []) for d in documents]

    print(f"{'variant (same passages, same queries)':<44} {'kept/gen':>13} {'BM25':>7} {'hybrid':>7}")
    heur = HeuristicQueryGenerator()  # the default: the title
    heur_all = dict(zip([d.id for d in corpus], heur.generate(corpus), strict=True))

    class Heur:
        name = "heuristic"

        def generate(self, documents: Sequence[Document], *, progress: bool = False) -> list[list[str]]:
            return [heur_all[d.id] if d.id in chosen else [] for d in documents]

    rows: list[tuple[str, str, QueryGenerator | None]] = [
        ("none", "none", None),
        ("heuristic", "doc2query", Heur()),
        ("heuristic", "doc2query--", Heur()),
        ("LLM", "doc2query", Fixed()),
        ("LLM", "doc2query--", Fixed()),
    ]
    for name, mode, g in rows:
        report = ExpansionReport()
        docs = expand_documents(corpus, mode=mode, generator=g, filter_top_k=args.filter_top_k, report=report)
        bm25 = bm25_lists(docs, queries, args.depth)
        b, h = scores(bm25, {m: {q: other[m][q] for q in qids} for m in other}, ds.qrels)  # type: ignore[attr-defined]
        kept = f"{report.kept}/{report.generated}" if mode != "none" else "-"
        print(f"{name + ' ' + mode:<44} {kept:>13} {b:>7.4f} {h:>7.4f}", flush=True)


if __name__ == "__main__":
    main()
