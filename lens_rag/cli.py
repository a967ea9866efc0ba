"""`lens-rag` command line: index, search, eval, ask, build-head.

The flags and the `--json` output shapes are a stable contract (other tools call them).
Exit codes: 0 success, 1 partial failure (some documents rejected), 2 bad input or a failed run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lens_rag.errors import ConfigurationError, LensRagError

__all__ = ["main"]

logger = logging.getLogger("lens_rag.cli")


def _add_store_args(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument(
        "--store",
        required=default is None,
        default=default,
        help="a directory (embedded store), 'memory', or 'elasticsearch'",
    )
    p.add_argument("--es-url", default=None, help="Elasticsearch URL (default: $ES_URL); auth from $ES_API_KEY etc.")
    p.add_argument("--index", default=None, help="Elasticsearch index name")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sparse-model", default="splade-tiny", help="sparse (SPLADE/LENS) model alias, path or name")
    p.add_argument("--dense-model", default="all-MiniLM-L6-v2", help="dense sentence-transformers model")


def _add_retrieval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fusion", default="minmax", choices=["rrf", "minmax", "dbsf"], help="hybrid fusion (default minmax)"
    )
    p.add_argument("--candidate-k", type=int, default=100, help="results each retriever contributes to fusion")
    p.add_argument("--sparse-query-top-k", type=int, default=None, help="prune sparse queries to their top terms")
    p.add_argument("--rerank", default=None, metavar="MODEL", help="rerank with a sentence-transformers CrossEncoder")
    p.add_argument("--rerank-candidates", type=int, default=50, help="results the reranker sees")


def _add_llm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--llm-url", default=None, help="OpenAI-compatible base URL (default: $LENS_RAG_LLM_URL)")
    p.add_argument("--llm-model", default=None, help="model name on that server (default: $LENS_RAG_LLM_MODEL)")
    p.add_argument("--llm-timeout", type=float, default=60.0, help="seconds before an LLM call gives up")
    p.add_argument(
        "--llm-backend", default="auto", choices=["auto", "openai", "transformers"],
        help="auto: the server when a URL is given, else local transformers generation",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lens-rag", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--no-progress", action="store_true", help="hide progress bars")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser

    def sub_add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return add(name, parents=[common], **kwargs)

    sub.add_parser = sub_add_parser  # type: ignore[method-assign]

    p = sub.add_parser("index", help="index a folder of .txt/.md files, a JSONL file or a BEIR folder")
    p.add_argument("source")
    _add_store_args(p)
    _add_model_args(p)
    p.add_argument("--no-sparse", action="store_true", help="skip sparse vectors")
    p.add_argument("--no-dense", action="store_true", help="skip dense vectors")
    p.add_argument("--chunk-size", type=int, default=None, help="words per chunk (default 200)")
    p.add_argument("--chunk-overlap", type=int, default=None, help="words shared by neighbouring chunks (default 40)")
    p.add_argument("--batch-size", type=int, default=256, help="documents per encode-and-write step")
    p.add_argument("--no-cache", action="store_true", help="do not reuse or record document vectors on disk")

    p = sub.add_parser("search", help="search a store")
    p.add_argument("query")
    _add_store_args(p)
    _add_model_args(p)
    p.add_argument("--method", default="hybrid", help="bm25, sparse, dense, hybrid, hybrid:PARTS, lamer[:METHOD]")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE", help="metadata equality filter")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    _add_retrieval_args(p)
    _add_llm_args(p)

    p = sub.add_parser("eval", help="evaluate methods on a BEIR dataset (nDCG@10, Recall@100)")
    p.add_argument("--dataset", required=True, help="BEIR folder with corpus.jsonl, queries.jsonl, qrels/")
    p.add_argument("--split", default="test")
    p.add_argument("--method", action="append", required=True, help="repeat for several methods")
    _add_store_args(p, default="memory")
    _add_model_args(p)
    p.add_argument("--limit-queries", type=int, default=None, help="evaluate the first N judged queries only")
    p.add_argument("--json", action="store_true", help="print the scores as JSON (last line)")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="write a bar chart of the scores")
    p.add_argument("--no-cache", action="store_true", help="do not reuse or record document vectors on disk")
    p.add_argument("--lamer-second-stage", default=None, help="LameR second-stage method (default: the first)")
    p.add_argument("--lamer-answers", type=int, default=5, help="LameR answers per query")
    _add_retrieval_args(p)
    _add_llm_args(p)

    p = sub.add_parser("ask", help="answer a question from the store with cited passages")
    p.add_argument("question")
    _add_store_args(p)
    _add_model_args(p)
    p.add_argument("--method", default="hybrid")
    p.add_argument("--top-k", type=int, default=5, help="passages given to the LLM")
    p.add_argument("--json", action="store_true")
    _add_retrieval_args(p)
    _add_llm_args(p)

    p = sub.add_parser("build-head", help="cluster a causal LM's head into a k-dimensional LENS head")
    p.add_argument("--model", required=True, help="causal LM path or name (a folder with a GGUF: add --gguf-file)")
    p.add_argument("--clusters", type=int, required=True, help="k, e.g. 4000 or 8000")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gguf-file", default=None, help="GGUF file name inside --model")
    return parser


# ---------------------------------------------------------------------------------------- helpers
def _store(args: argparse.Namespace, dense_dims: int | None = None) -> Any:
    from lens_rag.components import open_store

    return open_store(
        args.store, es_url=args.es_url, index=args.index, progress=not args.no_progress, dense_dims=dense_dims
    )


def _store_info(store: Any) -> dict[str, Any]:
    info = getattr(store, "info", None)
    return dict(info) if isinstance(info, dict) else {}


def _encoders(args: argparse.Namespace, info: dict[str, Any]) -> Any:
    from lens_rag.components import Encoders

    # A store remembers the encoders that indexed it; flags given explicitly win.
    explicit_sparse = args.sparse_model != "splade-tiny"
    explicit_dense = args.dense_model != "all-MiniLM-L6-v2"
    return Encoders(
        args.sparse_model,
        args.dense_model,
        sparse_config=None if explicit_sparse else info.get("sparse"),
        dense_config=None if explicit_dense else info.get("dense"),
        progress=not args.no_progress,
    )


def _llm_factory(args: argparse.Namespace) -> Any:
    def make() -> Any:
        from lens_rag.llm.base import make_llm_client

        # With a URL (flag or $LENS_RAG_LLM_URL): that OpenAI-compatible server; without one,
        # local transformers generation (the packaged SmolLM2 unless --llm-model names another).
        return make_llm_client(
            args.llm_url, args.llm_model, backend=args.llm_backend, timeout=args.llm_timeout, max_retries=2
        )

    return make


def _retriever(args: argparse.Namespace, method: str, store: Any, encoders: Any, **lamer: Any) -> Any:
    from lens_rag.components import build_retriever

    retriever = build_retriever(
        method,
        store,
        encoders,
        fusion=args.fusion,
        candidate_k=args.candidate_k,
        sparse_query_top_k=args.sparse_query_top_k,
        llm_factory=_llm_factory(args),
        **lamer,
    )
    if args.rerank is not None:
        from lens_rag.rerank import CrossEncoderReranker
        from lens_rag.retrieval import RerankingRetriever

        reranker = CrossEncoderReranker(args.rerank, progress=False)
        retriever = RerankingRetriever(retriever, reranker, candidate_k=args.rerank_candidates)
    return retriever


@contextmanager
def _query_retriever(args: argparse.Namespace) -> Iterator[Any]:
    """Open the store, check it holds documents, and yield the retriever `--method` names."""
    store = _store(args)
    try:
        if store.count_documents() == 0:
            raise ConfigurationError(
                f"the store {args.store!r} is empty; run `lens-rag index SOURCE --store ...` first"
            )
        yield _retriever(args, args.method, store, _encoders(args, _store_info(store)))
    finally:
        store.close()


def _parse_filters(items: Sequence[str]) -> dict[str, Any] | None:
    filters: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"--filter takes KEY=VALUE, got {item!r}")
        try:
            filters[key] = json.loads(value)
        except json.JSONDecodeError:
            filters[key] = value
    return filters or None


def _hit_json(hit: Any) -> dict[str, Any]:
    return {
        "id": hit.id,
        "rank": hit.rank,
        "score": hit.score,
        "content": hit.document.content,
        "meta": hit.document.meta,
        "sources": {k: {"score": v.score, "rank": v.rank} for k, v in hit.sources.items()},
    }


# ---------------------------------------------------------------------------------------- commands
def cmd_index(args: argparse.Namespace) -> int:
    from lens_rag.components import Encoders
    from lens_rag.indexing import EmbeddingCache, default_cache_dir, index_documents
    from lens_rag.ingest import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE, load_source

    reader = load_source(
        args.source,
        chunk_size=args.chunk_size if args.chunk_size is not None else DEFAULT_CHUNK_SIZE,
        chunk_overlap=args.chunk_overlap if args.chunk_overlap is not None else DEFAULT_CHUNK_OVERLAP,
        progress=False,
    )
    encoders = Encoders(args.sparse_model, args.dense_model, progress=not args.no_progress)
    sparse = None if args.no_sparse else encoders.sparse
    dense = None if args.no_dense else encoders.dense
    store = _store(args, dense_dims=None if dense is None else dense.dimension)
    cache = None if args.no_cache else EmbeddingCache(default_cache_dir() / "embeddings")
    started = time.perf_counter()
    try:
        report = index_documents(
            store, reader, sparse_encoder=sparse, dense_encoder=dense, batch_size=args.batch_size, cache=cache,
            progress=not args.no_progress,
        )  # fmt: skip
        info = _store_info(store)
        if sparse is not None:
            info["sparse"] = sparse.to_config()  # type: ignore[attr-defined]
        if dense is not None:
            info["dense"] = dense.to_config()  # type: ignore[attr-defined]
        if hasattr(store, "set_info"):
            store.set_info(info)
        total = store.count_documents()
    finally:
        store.close()
    for skipped in reader.skipped:
        print(f"warning: skipped {skipped}", file=sys.stderr)
    print(
        f"indexed {report.written} chunks into {args.store} ({total} in store) "
        f"in {time.perf_counter() - started:.1f}s; "
        f"{report.encoded} encodings computed, {report.cached} reused from cache"
    )
    if report.failed:
        for doc_id, reason in report.failed.items():
            print(f"error: document {doc_id!r} was not indexed: {reason}", file=sys.stderr)
        return 1
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    with _query_retriever(args) as retriever:
        hits = retriever.retrieve(args.query, top_k=args.top_k, filters=_parse_filters(args.filter))
    if args.json:
        print(json.dumps({"query": args.query, "method": args.method, "results": [_hit_json(h) for h in hits]}))
        return 0
    for h in hits:
        title = h.document.meta.get("title") or h.document.meta.get("source") or ""
        sources = ", ".join(f"{k} #{v.rank}" for k, v in h.sources.items())
        snippet = " ".join(h.document.content.split())[:160]
        print(f"{h.rank:>3}. {h.score:.4f}  {h.id}  {title}\n     [{sources}]\n     {snippet}")
    if not hits:
        print("no results")
    return 0


def _eval_store(args: argparse.Namespace, dataset: Any, needs: set[str], dataset_dir: Path) -> tuple[Any, Any]:
    from lens_rag.components import Encoders
    from lens_rag.indexing import EmbeddingCache, default_cache_dir, index_documents

    encoders = Encoders(args.sparse_model, args.dense_model, progress=not args.no_progress)
    sparse = encoders.sparse if "sparse" in needs else None
    dense = encoders.dense if "dense" in needs else None
    if args.store in ("elasticsearch", "es") and args.index is None:
        args.index = f"lens-rag-eval-{dataset_dir.name.lower()}"
    store = _store(args, dense_dims=None if dense is None else dense.dimension)
    info = _store_info(store)
    have = set(info.get("eval_fields", []))
    fresh = store.count_documents() != len(dataset.corpus) or not needs <= have
    if fresh:
        cache = None if args.no_cache else EmbeddingCache(default_cache_dir() / "embeddings")
        logger.info("indexing %d documents for %s", len(dataset.corpus), sorted(needs))
        docs = [d.without_embeddings() for d in dataset.corpus]
        report = index_documents(
            store, docs, sparse_encoder=sparse, dense_encoder=dense, cache=cache, progress=not args.no_progress,
            total=len(docs),
        )  # fmt: skip
        if report.failed:
            raise LensRagError(f"{len(report.failed)} documents could not be indexed: {list(report.failed)[:5]}")
        if hasattr(store, "set_info"):
            info.update(eval_fields=sorted(needs | have))
            if sparse is not None:
                info["sparse"] = sparse.to_config()  # type: ignore[attr-defined]
            if dense is not None:
                info["dense"] = dense.to_config()  # type: ignore[attr-defined]
            store.set_info(info)
    return store, encoders


def cmd_eval(args: argparse.Namespace) -> int:
    from lens_rag.components import method_needs
    from lens_rag.evaluation import evaluate_run, format_table, load_beir, plot_scores

    dataset_dir = Path(args.dataset)
    dataset = load_beir(dataset_dir, split=args.split)
    methods: list[str] = list(dict.fromkeys(args.method))
    needs: set[str] = set()
    for m in methods:
        needs |= method_needs(m)
        if args.lamer_second_stage is not None and m.startswith("lamer"):
            needs |= method_needs(args.lamer_second_stage)
    query_ids = sorted(dataset.queries)
    if args.limit_queries is not None:
        if args.limit_queries < 1:
            raise ConfigurationError(f"--limit-queries must be >= 1, got {args.limit_queries}")
        query_ids = query_ids[: args.limit_queries]
    qrels = {q: dataset.qrels[q] for q in query_ids if q in dataset.qrels}
    store, encoders = _eval_store(args, dataset, needs, dataset_dir)
    scores: dict[str, dict[str, float]] = {}
    from tqdm.auto import tqdm

    try:
        for method in methods:
            lamer = (
                {"lamer_second_stage": args.lamer_second_stage, "lamer_options": {"n_answers": args.lamer_answers}}
                if method.startswith("lamer")
                else {}
            )
            retriever = _retriever(args, method, store, encoders, **lamer)
            run: dict[str, dict[str, float]] = {}
            started = time.perf_counter()
            for qid in tqdm(query_ids, desc=method, unit="query", disable=args.no_progress):
                # 101 so that removing a query's self-hit still leaves 100 results for Recall@100.
                hits = retriever.retrieve(dataset.queries[qid], top_k=101)
                run[qid] = {h.id: h.score for h in hits}
            elapsed = time.perf_counter() - started
            result = evaluate_run(run, qrels)
            result["ms/query"] = 1000 * elapsed / max(1, len(query_ids))
            scores[method] = result
    finally:
        store.close()
    print(f"{dataset_dir.name} ({args.split}), {len(qrels)} judged queries, store={args.store}")
    print(format_table(scores))
    if args.plot is not None:
        metric_scores = {m: {k: v for k, v in s.items() if k != "ms/query"} for m, s in scores.items()}
        print(f"plot written to {plot_scores(metric_scores, args.plot, title=f'{dataset_dir.name} ({args.split})')}")
    if args.json:
        print(json.dumps({m: {k: v for k, v in s.items()} for m, s in scores.items()}))
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from lens_rag.answer import answer_question, format_answer

    with _query_retriever(args) as retriever:
        answer = answer_question(args.question, retriever, _llm_factory(args)(), top_k=args.top_k)
    if args.json:
        print(json.dumps(answer.to_dict()))
    else:
        print(format_answer(answer))
    return 0


def cmd_build_head(args: argparse.Namespace) -> int:
    from lens_rag.encoders.head_builder import build_head_command

    out = build_head_command(
        args.model, args.clusters, args.out, seed=args.seed, gguf_file=args.gguf_file, progress=not args.no_progress
    )
    print(f"LENS model written to {out}. Its clustered head is untrained: fine-tune it before relying on it.")
    return 0


COMMANDS = {
    "index": cmd_index,
    "search": cmd_search,
    "eval": cmd_eval,
    "ask": cmd_ask,
    "build-head": cmd_build_head,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # bm25s sets its own logger to DEBUG, which would print through our handler at any level.
    logging.getLogger("bm25s").setLevel(max(level, logging.INFO))
    if args.no_progress:
        os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        return COMMANDS[args.command](args)
    except LensRagError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
