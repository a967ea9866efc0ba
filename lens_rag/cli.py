"""`lens-rag` command line: index, search, eval, ask, build-head.

The flags and the `--json` output shapes are a stable contract (other tools call them).
Exit codes: 0 success, 1 partial failure (some documents rejected), 2 bad input or a failed run
(nothing is written when the source is invalid: it is read in full before any model loads; a run
that fails midway says how many documents it had committed), 130 interrupted.

Output: results go to stdout; warnings, errors and progress bars to stderr. `search` and `ask`
print results only; `index`, `eval` and `build-head` show one progress bar of ours. `-q` leaves
errors only, `-v` adds our info messages, `-vv` debug messages and the libraries' own output.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
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
    # Default None: a store that records its encoders uses those; a new store gets splade-tiny / MiniLM.
    p.add_argument(
        "--sparse-model", default=None,
        help="sparse (SPLADE/LENS) model alias, path or name (default: the store's, else splade-tiny)",
    )  # fmt: skip
    p.add_argument(
        "--dense-model", default=None,
        help="dense sentence-transformers model (default: the store's, else all-MiniLM-L6-v2)",
    )  # fmt: skip
    p.add_argument(
        "--sparse-query-model", default=None, metavar="DIR",
        help="encode queries with this model instead (e.g. OUT/sparse-query from `lens-rag adapt`); documents keep "
        "the sparse model's vectors",
    )  # fmt: skip
    p.add_argument(
        "--dense-query-model", default=None, metavar="DIR",
        help="encode queries with this model instead (e.g. OUT/dense-query from `lens-rag adapt`)",
    )  # fmt: skip


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
    loudness = common.add_mutually_exclusive_group()
    loudness.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug, with the libraries' output)"
    )
    loudness.add_argument("-q", "--quiet", action="store_true", help="errors only on stderr: no warnings, no progress")
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
    p.add_argument(
        "--chunk-size", type=int, default=None,
        help="tokens of the encoders' tokenizer per chunk (default 254: a 256-token window less special tokens)",
    )  # fmt: skip
    p.add_argument("--chunk-overlap", type=int, default=None, help="tokens shared by neighbouring chunks (default 50)")
    p.add_argument("--batch-size", type=int, default=256, help="documents per encode-and-write step")
    p.add_argument("--no-cache", action="store_true", help="do not reuse or record document vectors on disk")
    p.add_argument(
        "--no-sync", action="store_true",
        help="keep documents indexed earlier from SOURCE whose file or record is gone (default: delete them)",
    )  # fmt: skip
    # --- expansion (lens_rag/expansion.py; owner: train) ---
    p.add_argument(
        "--expand", default="none", choices=["none", "doc2query", "doc2query--"],
        help="append pseudo-queries to the text BM25 indexes (doc2query--: only those that retrieve their passage)",
    )  # fmt: skip
    p.add_argument(
        "--expansion-source", default="heuristic", choices=["llm", "heuristic"],
        help="llm: sampled by the LLM (--llm-url; cached); heuristic: title, salient sentence, keyphrases (no LLM)",
    )  # fmt: skip
    p.add_argument("--expansion-queries", type=int, default=3, help="LLM pseudo-queries per passage")
    p.add_argument("--expansion-filter-k", type=int, default=10, help="doc2query--: keep queries ranking it in top-K")
    p.add_argument("--expansion-workers", type=int, default=1, help="concurrent LLM requests (the server's slots)")
    p.add_argument(
        "--expansion-sample", type=int, default=None, metavar="N",
        help="expand only N chunks drawn at random (--seed) to bound LLM time; the others are indexed as they are",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed for --expansion-sample")
    _add_llm_args(p)
    # --- end expansion ---

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

    # --- serve (lens_rag/serve; owner: serve) ---
    p = sub.add_parser("serve", help="chat API (OpenAI-compatible, cited answers), search API and chat page")
    _add_store_args(p)
    _add_model_args(p)
    _add_retrieval_args(p)
    _add_llm_args(p)
    from lens_rag.serve.run import add_serve_args

    add_serve_args(p)
    # --- end serve ---

    # --- reindex (owner: lead) ---
    p = sub.add_parser(
        "reindex",
        help="copy a store's passages into a new store, encoded by other models (e.g. a trained head from build-head)",
    )
    p.add_argument(
        "--from", dest="source_store", required=True, help="the store to read: a directory or 'elasticsearch'"
    )
    p.add_argument("--from-index", default=None, help="Elasticsearch index to read (with --from elasticsearch)")
    _add_store_args(p)
    _add_model_args(p)
    p.add_argument("--no-sparse", action="store_true", help="skip sparse vectors")
    p.add_argument("--no-dense", action="store_true", help="skip dense vectors")
    p.add_argument("--batch-size", type=int, default=256, help="documents per encode-and-write step")
    p.add_argument("--no-cache", action="store_true", help="do not reuse or record document vectors on disk")
    # --- end reindex ---

    # --- adapt (lens_rag/training/adapt.py; owner: lead) ---
    p = sub.add_parser(
        "adapt",
        help="adapt the query encoders to a store's passages without labels (pseudo-queries, hybrid teacher)",
    )
    _add_store_args(p)
    _add_model_args(p)
    p.add_argument("--out", required=True, help="output directory: OUT/sparse-query, OUT/dense-query, report")
    p.add_argument(
        "--members", default="sparse",
        help="comma-separated: sparse, dense (default sparse: an adapted dense member lowered the hybrid on SciFact)",
    )  # fmt: skip
    p.add_argument(
        "--queries", default="heuristic", choices=["heuristic", "llm"],
        help="pseudo-queries: heuristic (title + salient sentences, no LLM) or llm (--llm-url; cached, resumable)",
    )  # fmt: skip
    p.add_argument("--sentences", type=int, default=2, help="heuristic: salient sentences per passage as queries")
    p.add_argument("--queries-per-passage", type=int, default=3, help="llm: queries sampled per passage")
    p.add_argument("--llm-workers", type=int, default=1, help="llm: concurrent requests (the server's slots)")
    p.add_argument("--max-passages", type=int, default=None, help="generate queries for N sampled passages only")
    p.add_argument("--word-dropout", type=float, default=0.5, help="drop pseudo-query words with this probability")
    p.add_argument("--budget", type=float, default=None, metavar="MINUTES", help="training wall time, all members")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32, help="pseudo-queries per training step")
    p.add_argument("--negatives", type=int, default=8, help="mined hard negatives per query")
    p.add_argument("--perc", type=float, default=0.95, help="TopK-PercPos: drop negatives above PERC x positive")
    p.add_argument("--kl-weight", type=float, default=0.0, help="weight of the distillation from the fused scores")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default=None, help="training device, e.g. cuda (default: CUDA when available)")
    p.add_argument(
        "--side", default="query", choices=["query", "both"],
        help="query: train the query encoders only (no re-index); both: the whole models (then `lens-rag reindex`)",
    )  # fmt: skip
    p.add_argument("--work-dir", default=None, help="cache of the stages (default OUT/work)")
    _add_llm_args(p)
    # --- end adapt ---

    # --- build-head (lens_rag/encoders/head_builder.py, lens_rag/training/cluster_head.py; owner: cluster-head) ---
    p = sub.add_parser(
        "build-head",
        help="cluster an LM's head into a k-dimensional LENS head (a masked LM such as splade-tiny: --train it)",
    )
    p.add_argument(
        "--model", required=True,
        help="causal LM (a folder with a GGUF: add --gguf-file) or masked LM (e.g. splade-tiny) path, name or alias",
    )  # fmt: skip
    p.add_argument("--clusters", type=int, required=True, help="k, e.g. 4000 or 8000")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gguf-file", default=None, help="GGUF file name inside --model")
    p.add_argument(
        "--train", action="store_true",
        help="masked LMs: train the clustered model to rank like the full one on --corpus (score distillation)",
    )  # fmt: skip
    p.add_argument(
        "--corpus", default=None,
        help="with --train: the passages to train on (an embedded store directory, BEIR folder, JSONL or text folder)",
    )  # fmt: skip
    p.add_argument("--budget", type=float, default=None, help="with --train: minutes of training at most (default 15)")
    p.add_argument("--max-steps", type=int, default=None, help="with --train: optimiser steps at most")
    p.add_argument("--epochs", type=float, default=None, help="with --train: passes over the pseudo-queries (1)")
    p.add_argument("--batch-size", type=int, default=None, help="with --train: pseudo-queries per step (16)")
    p.add_argument("--learning-rate", type=float, default=None, help="with --train: AdamW learning rate")
    p.add_argument(
        "--head", default=None, choices=["frozen", "trained"],
        help="with --train: keep the clustered head frozen (as LENS does) or train it too (default: trained)",
    )  # fmt: skip
    p.add_argument(
        "--loss",
        default=None,
        choices=["kl", "margin_mse", "kl+margin_mse"],
        help="with --train (default kl+margin_mse)",
    )
    p.add_argument("--work-dir", default=None, help="with --train: cache of intermediate files (default ~/.cache)")
    # --- end build-head ---
    return parser


# ---------------------------------------------------------------------------------------- output
_LONG_COMMANDS = frozenset({"index", "eval", "build-head", "adapt", "reindex"})


@contextmanager
def _output(args: argparse.Namespace) -> Iterator[None]:
    """Configure logging and progress for one command; restore the loggers afterwards (tests call `main` often)."""
    verbosity = -1 if args.quiet else min(args.verbose, 2)
    # Our own progress bar only on long work; `search` and `ask` print results and nothing else.
    args.progress = args.command in _LONG_COMMANDS and verbosity >= 0 and not args.no_progress
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}[verbosity]
    # Libraries speak at -vv only (and warn unless -q). Filtering in our handler holds even for a library
    # that sets its own logger's level when imported (bm25s sets DEBUG), which happens later, lazily.
    library_level = logging.DEBUG if verbosity >= 2 else max(level, logging.WARNING)

    def keep(record: logging.LogRecord) -> bool:
        ours_ = record.name == "lens_rag" or record.name.startswith("lens_rag.")
        return record.levelno >= (level if ours_ else library_level)

    handler = logging.StreamHandler(sys.stderr)  # sys.stderr now, not at import (pytest swaps it)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(keep)
    root = logging.getLogger()
    ours = logging.getLogger("lens_rag")
    saved = [(root, root.level), (ours, ours.level)]
    root.addHandler(handler)
    root.setLevel(min(level, library_level))
    ours.setLevel(level)
    try:
        if verbosity < 2:
            with _libraries_silenced():
                yield
        else:
            yield
    finally:
        root.removeHandler(handler)
        for logger_, old in saved:
            logger_.setLevel(old)


_QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@contextmanager
def _libraries_silenced() -> Iterator[None]:
    """No third-party progress bars or chatter ("Loading weights", "Batches"); ours are passed progress=.

    Undone afterwards, so that `main` called in-process (tests, notebooks) leaves the libraries as it found them.
    """
    saved_env = {key: os.environ.get(key) for key in _QUIET_ENV}
    for key, value in _QUIET_ENV.items():  # read when a library is first imported, later and only if needed
        os.environ.setdefault(key, value)
    had_hub, had_transformers = "huggingface_hub" in sys.modules, "transformers" in sys.modules
    hub_bars = tf_bars = True
    tf_verbosity = logging.WARNING
    if had_hub:  # already imported (the CLI called in-process): switch them off directly
        from huggingface_hub import utils as hub_utils

        hub_bars = not hub_utils.are_progress_bars_disabled()
        hub_utils.disable_progress_bars()
    if had_transformers:
        from transformers.utils import logging as hf_logging

        tf_bars, tf_verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        for key, old in saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        # huggingface_hub warns on enabling when the variable we set at its import still rules: ignore that.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _restore_libraries(had_hub, had_transformers, saved_env, hub_bars, tf_bars, tf_verbosity)


def _restore_libraries(
    had_hub: bool, had_transformers: bool, saved_env: dict[str, str | None], hub_bars: bool, tf_bars: bool,
    tf_verbosity: int,
) -> None:  # fmt: skip
    if "huggingface_hub" in sys.modules and (had_hub or saved_env["HF_HUB_DISABLE_PROGRESS_BARS"] is None):
        from huggingface_hub import utils as hub_utils

        if hub_bars:
            hub_utils.enable_progress_bars()
    if "transformers" in sys.modules and (had_transformers or saved_env["TRANSFORMERS_VERBOSITY"] is None):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(tf_verbosity)
        if tf_bars:
            hf_logging.enable_progress_bar()


# Control characters (C0 but newline and tab, DEL, C1) and bidirectional overrides: a passage may hold
# terminal escape codes that would recolour, move the cursor or rewrite the screen if printed raw.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _printable(text: str) -> str:
    """`text` with control characters (except newline and tab) shown as `\\x1b`-style escapes."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else
                            f"\\u{ord(m.group()):04x}", text)  # fmt: skip


def _warn(args: argparse.Namespace, message: str, prefix: str = "warning") -> None:
    if not args.quiet:
        print(f"{prefix}: {_printable(message)}", file=sys.stderr)


# ---------------------------------------------------------------------------------------- helpers
def _store(args: argparse.Namespace, dense_dims: int | None = None) -> Any:
    from lens_rag.components import open_store

    return open_store(args.store, es_url=args.es_url, index=args.index, progress=False, dense_dims=dense_dims)


def _store_info(store: Any) -> dict[str, Any]:
    info = getattr(store, "info", None)
    return dict(info) if isinstance(info, dict) else {}


def _store_name(args: argparse.Namespace) -> str:
    if args.store in ("elasticsearch", "es"):
        return f"Elasticsearch index {args.index or 'lens-rag'!r}"
    return f"store {args.store!r}"


def _recorded_config(info: dict[str, Any], kind: str, flag: str | None) -> dict[str, Any] | None:
    """The configuration of the `kind` encoder the store records, unless the flag names another model."""
    from lens_rag.identity import normalize_model_name, recorded_identity

    recorded = recorded_identity(info, kind)
    if recorded is None or not isinstance(recorded.get("config"), dict):
        return None
    if flag is not None and normalize_model_name(flag) != recorded.get("name"):
        return None  # another model: the identity check refuses it with both names
    return dict(recorded["config"])


def _encoders(args: argparse.Namespace, info: dict[str, Any]) -> Any:
    from lens_rag.components import Encoders
    from lens_rag.models import DEFAULT_DENSE_MODEL, DEFAULT_SPARSE_MODEL

    # A store remembers the encoders that indexed it: the same ones are rebuilt, settings included.
    # Our progress bar covers encoding, so the encoders show none of their own.
    return Encoders(
        args.sparse_model if args.sparse_model is not None else DEFAULT_SPARSE_MODEL,
        args.dense_model if args.dense_model is not None else DEFAULT_DENSE_MODEL,
        sparse_config=_recorded_config(info, "sparse", args.sparse_model),
        dense_config=_recorded_config(info, "dense", args.dense_model),
        progress=False,
        sparse_query_model=getattr(args, "sparse_query_model", None),
        dense_query_model=getattr(args, "dense_query_model", None),
    )


def _check_encoders(args: argparse.Namespace, store: Any, info: dict[str, Any], needs: set[str], encoders: Any) -> None:
    """Refuse a search whose sparse/dense encoder did not make the store's vectors, or that has no vectors."""
    from lens_rag.identity import ensure_encoder

    recorded = info.get("encoders")
    for kind in ("sparse", "dense"):
        if kind not in needs:
            continue
        if isinstance(recorded, dict) and kind not in recorded:
            raise ConfigurationError(
                f"{_store_name(args)} has no {kind} vectors (it was indexed with --no-{kind}); "
                f"index it again without --no-{kind}, or search with a method that does not use {kind} "
                f"(e.g. --method bm25{'' if kind == 'dense' else ' or dense'})"
            )
        ensure_encoder(store, kind, getattr(encoders, kind), record=False)


def _llm_factory(args: argparse.Namespace) -> Any:
    def make() -> Any:
        from lens_rag.llm.base import ENV_LLM_URL, make_llm_client

        url = args.llm_url if args.llm_url is not None else os.environ.get(ENV_LLM_URL) or None
        local = args.llm_backend == "transformers" or (args.llm_backend == "auto" and url is None)
        if local and args.llm_model is None:
            _warn(
                args,
                "no LLM configured: answering with the small local model SmolLM2-135M-Instruct "
                "(slow on first use, and weak). Point lens-rag at a better one with --llm-url URL --llm-model NAME "
                "(any OpenAI-compatible server) or $LENS_RAG_LLM_URL and $LENS_RAG_LLM_MODEL, "
                "or --llm-model NAME for another local model.",
                prefix="note",
            )
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


def _check_query(text: str, what: str = "query") -> None:
    if not text.strip():
        example = 'lens-rag ask "what causes scurvy?"' if what == "question" else 'lens-rag search "scurvy"'
        raise ConfigurationError(f"the {what} is empty; pass the text to search for, e.g. {example}")


@contextmanager
def _query_retriever(args: argparse.Namespace) -> Iterator[Any]:
    """Open the store, check it holds documents made by these encoders, and yield the `--method` retriever."""
    from lens_rag.components import method_needs

    needs = method_needs(args.method)  # an unknown method fails here, before anything loads
    if args.store == "memory":
        raise ConfigurationError(
            "--store memory is empty in a new process; pass the directory (or 'elasticsearch') you indexed into"
        )
    store = _store(args)
    try:
        if store.count_documents() == 0:
            raise ConfigurationError(
                f"the store {args.store!r} is empty; run `lens-rag index SOURCE --store ...` first"
            )
        info = _store_info(store)
        encoders = _encoders(args, info)
        _check_encoders(args, store, info, needs, encoders)
        yield _retriever(args, args.method, store, encoders)
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


# ---------------------------------------------------------------------------------------- index
#: Metadata key naming the source (absolute path) a document was indexed from; `index` syncs by it.
SOURCE_KEY = "indexed_from"


def _scan(args: argparse.Namespace, reader: Any) -> Any:
    """Read and check the whole source, before any model loads: bad records fail now, all listed, nothing written."""
    started = time.perf_counter()
    scan = reader.scan()
    try:
        scan.raise_for_errors()
    except LensRagError as e:
        raise type(e)(f"{e} Nothing was written to {args.store}.") from e
    for skipped in scan.skipped:
        _warn(args, f"skipped {skipped}")
    for warning in scan.warnings:
        _warn(args, str(warning))
    logger.info("checked %s in %.2fs", scan, time.perf_counter() - started)
    return scan


def _tagged(documents: Iterable[Any], root: str, seen: set[str]) -> Iterator[Any]:
    for doc in documents:
        doc.meta[SOURCE_KEY] = root
        seen.add(doc.id)
        yield doc


def _expanded(args: argparse.Namespace, documents: list[Any]) -> list[Any]:
    """`index --expand`: the documents with pseudo-queries for BM25 (lens_rag/expansion.py; owner: train)."""
    from lens_rag.expansion import ExpansionReport, HeuristicQueryGenerator, QueryGenerator, expand_documents
    from lens_rag.indexing import default_cache_dir

    generator: QueryGenerator = HeuristicQueryGenerator()
    if args.expansion_source == "llm":
        from lens_rag.expansion import LLMQueryGenerator
        from lens_rag.llm.base import LLMCache

        generator = LLMQueryGenerator(
            _llm_factory(args)(), n=args.expansion_queries, workers=args.expansion_workers,
            cache=LLMCache(default_cache_dir() / "doc2query"),
        )  # fmt: skip
    report = ExpansionReport()
    out = expand_documents(
        documents, mode=args.expand, generator=generator, filter_top_k=args.expansion_filter_k,
        sample=args.expansion_sample, seed=args.seed, progress=args.progress, report=report,
    )  # fmt: skip
    _warn(
        args,
        f"{args.expand} ({report.generator}): {report.kept} of {report.generated} pseudo-queries kept, "
        f"{report.expanded} of {report.documents} chunks expanded for BM25",
        prefix="note",
    )
    return out


def _chunk_tokenizer(args: argparse.Namespace, info: dict[str, Any]) -> Any:
    """Chunks are measured in the tokens of the encoders that index them (the sparse one first)."""
    from lens_rag.models import DEFAULT_DENSE_MODEL, DEFAULT_SPARSE_MODEL

    for kind, flag, off in (("sparse", args.sparse_model, args.no_sparse), ("dense", args.dense_model, args.no_dense)):
        if off:
            continue
        model = flag if flag is not None else (_recorded_config(info, kind, None) or {}).get("model")
        if model is None or model in (DEFAULT_SPARSE_MODEL, DEFAULT_DENSE_MODEL):
            return "default"  # the packaged tokenizer: SPLADE-tiny's, the same tokens as MiniLM's
        return model
    return "default"


def _stale_ids(store: Any, root: str, keep: set[str]) -> list[str] | None:
    """Ids of documents indexed earlier from `root` that the source no longer has (None: the store cannot tell)."""
    lister = getattr(store, "iter_documents", None) or getattr(store, "filter_documents", None)
    if lister is None:
        return None
    return [doc.id for doc in lister({SOURCE_KEY: root}) if doc.id not in keep]


@contextmanager
def _muted(name: str, unless: bool) -> Iterator[None]:
    """Hold a logger to errors (e.g. what the CLI reports itself, once), unless `unless`."""
    muted = logging.getLogger(name)
    old = muted.level
    if not unless:
        muted.setLevel(logging.ERROR)
    try:
        yield
    finally:
        muted.setLevel(old)


def cmd_index(args: argparse.Namespace) -> int:
    with _muted("lens_rag.ingest", unless=args.verbose > 0):  # skipped files: listed once by _scan
        return _index(args)


def _index(args: argparse.Namespace) -> int:
    from lens_rag.indexing import EmbeddingCache, IndexReport, default_cache_dir, index_documents
    from lens_rag.ingest import load_source

    if args.store == "memory":
        raise ConfigurationError(
            "--store memory keeps documents only while one command runs, so `index` would index into nothing; "
            "pass a directory (embedded store, e.g. --store ./my-store) or 'elasticsearch'"
        )
    store = _store(args)  # opening reads metadata only; no model loads before the source is checked
    report = IndexReport()
    seen: set[str] = set()
    started = time.perf_counter()
    try:
        info = _store_info(store)
        reader = load_source(
            args.source,
            chunk_size=args.chunk_size,
            chunk_overlap=args.chunk_overlap,
            tokenizer=_chunk_tokenizer(args, info),
            progress=False,
        )
        scan = _scan(args, reader)
        root = str(Path(args.source).resolve())
        encoders = _encoders(args, info)
        sparse = None if args.no_sparse else encoders.sparse
        dense = None if args.no_dense else encoders.dense
        if dense is not None and hasattr(store, "ensure_index"):  # Elasticsearch: map the dense field first
            store.close()
            store = _store(args, dense_dims=dense.dimension)
        cache = None if args.no_cache else EmbeddingCache(default_cache_dir() / "embeddings")
        documents: Iterable[Any] = _tagged(reader, root, seen)
        if args.expand != "none":  # expansion (owner: train): needs the whole corpus (IDF, doc2query-- ranking)
            documents = _expanded(args, list(documents))
        try:
            index_documents(
                store, documents, sparse_encoder=sparse, dense_encoder=dense,
                batch_size=args.batch_size, cache=cache, progress=args.progress,
                total=None if reader.chunk else scan.records, report=report,
            )  # fmt: skip
        except (LensRagError, OSError) as e:
            committed = (
                f"{report.written} documents were committed before it stopped"
                if report.written
                else "nothing was written"
            )
            raise LensRagError(
                f"indexing {args.source} failed: {e} — {committed}; fix the cause and run the same command again "
                "(documents are replaced by id, so nothing is indexed twice)"
            ) from e
        except KeyboardInterrupt:
            print(f"interrupted: {report.written} documents were committed", file=sys.stderr)
            raise
        removed = 0
        if not args.no_sync:
            stale = _stale_ids(store, root, seen)
            if stale is None:
                _warn(args, "this store cannot list documents by metadata, so chunks of deleted files stay searchable")
            elif stale:
                removed = store.delete_documents(stale)
        total = store.count_documents()
    finally:
        store.close()
    synced = f"; removed {removed} chunks of files no longer in {args.source}" if removed else ""
    print(
        f"indexed {report.written} chunks into {args.store} ({total} in store) "
        f"in {time.perf_counter() - started:.1f}s; "
        f"{report.encoded} encodings computed, {report.cached} reused from cache{synced}"
    )
    return _report_failures(report, "indexed")


def _report_failures(report: Any, done: str) -> int:
    """Name every document the store refused on stderr; exit code 1 if there was one."""
    for doc_id, reason in report.failed.items():
        print(f"error: document {_printable(doc_id)!r} was not {done}: {_printable(reason)}", file=sys.stderr)
    return 1 if report.failed else 0


# ---------------------------------------------------------------------------------------- search / ask
def cmd_search(args: argparse.Namespace) -> int:
    _check_query(args.query)
    filters = _parse_filters(args.filter)
    with _query_retriever(args) as retriever:
        hits = retriever.retrieve(args.query, top_k=args.top_k, filters=filters)
    if args.json:  # json.dumps escapes control characters itself
        print(json.dumps({"query": args.query, "method": args.method, "results": [_hit_json(h) for h in hits]}))
        return 0
    for h in hits:
        meta = h.document.meta
        title = meta.get("title") or meta.get("source_path") or meta.get("source") or ""
        sources = ", ".join(f"{k} #{v.rank}" for k, v in h.sources.items())
        snippet = " ".join(h.document.content.split())[:160]
        print(
            _printable(f"{h.rank:>3}. {h.score:.4f}  {h.id}  {title}")
            + f"\n     [{sources}]\n     "
            + _printable(snippet)
        )
    if not hits:
        print("no results")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from lens_rag.answer import answer_question, format_answer

    _check_query(args.question, "question")
    with _query_retriever(args) as retriever:
        answer = answer_question(args.question, retriever, _llm_factory(args)(), top_k=args.top_k)
    if args.json:
        print(json.dumps(answer.to_dict()))
    else:
        print(_printable(format_answer(answer)))
    return 0


# ---------------------------------------------------------------------------------------- eval
def _eval_store(args: argparse.Namespace, dataset: Any, needs: set[str], dataset_dir: Path) -> tuple[Any, Any]:
    """The store to evaluate on: a fresh one, or one an earlier `eval` of this dataset filled (checked, reused)."""
    from lens_rag.indexing import EmbeddingCache, default_cache_dir, index_documents

    if args.store in ("elasticsearch", "es") and args.index is None:
        args.index = f"lens-rag-eval-{dataset_dir.name.lower()}"
    marker = {"name": dataset_dir.name, "documents": len(dataset.corpus)}
    store = _store(args)
    try:
        info = _store_info(store)
        count = store.count_documents()
        recorded = info.get("eval_dataset")
        # Stores an older `eval` filled have no marker, only eval_fields and the corpus' size.
        ours = (recorded or {}).get("name") == marker["name"] or (
            recorded is None and "eval_fields" in info and count == len(dataset.corpus)
        )
        if count and not ours:
            raise ConfigurationError(
                f"{_store_name(args)} holds {count} documents that `lens-rag eval` did not index for "
                f"{marker['name']!r}; evaluating would mix the BEIR corpus into them. Pass a new directory "
                "(or --index NAME) for the evaluation store, or leave out --store to evaluate in memory"
            )
        have = set(info.get("eval_fields", [])) if count == len(dataset.corpus) else set()
        encoders = _encoders(args, info)
        # Reusing vectors made by other encoders would score the wrong model: refuse, never guess.
        _check_encoders(args, store, info if count else {}, needs & have, encoders)
        if needs <= have:
            return store, encoders
        fields = needs | have  # a rewrite replaces each document: keep the vectors it had
        sparse = encoders.sparse if "sparse" in fields else None
        dense = encoders.dense if "dense" in fields else None
        if dense is not None and hasattr(store, "ensure_index"):
            store.close()
            store = _store(args, dense_dims=dense.dimension)
        if hasattr(store, "set_info"):  # before writing: an interrupted run is still recognised as ours
            store.set_info({**_store_info(store), "eval_dataset": marker, "eval_fields": []})
        cache = None if args.no_cache else EmbeddingCache(default_cache_dir() / "embeddings")
        logger.info("indexing %d documents for %s", len(dataset.corpus), sorted(fields))
        docs = [d.without_embeddings() for d in dataset.corpus]
        report = index_documents(
            store, docs, sparse_encoder=sparse, dense_encoder=dense, cache=cache, progress=args.progress,
            total=len(docs),
        )  # fmt: skip
        if report.failed:
            raise LensRagError(f"{len(report.failed)} documents could not be indexed: {list(report.failed)[:5]}")
        if hasattr(store, "set_info"):
            store.set_info({**_store_info(store), "eval_dataset": marker, "eval_fields": sorted(fields)})
        return store, encoders
    except BaseException:
        store.close()
        raise


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
    empty = [q for q in query_ids if not dataset.queries[q].strip()]
    if empty:
        _warn(
            args,
            f"{len(empty)} quer{'y is' if len(empty) == 1 else 'ies are'} empty and skipped, counting as 0: "
            + ", ".join(repr(q) for q in empty[:10])
            + (" …" if len(empty) > 10 else ""),
        )
        query_ids = [q for q in query_ids if q not in set(empty)]
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
            for qid in tqdm(query_ids, desc=method, unit="query", disable=not args.progress):
                try:
                    # 101 so that removing a query's self-hit still leaves 100 results for Recall@100.
                    hits = retriever.retrieve(dataset.queries[qid], top_k=101)
                except LensRagError as e:
                    raise type(e)(f"query {qid!r} ({dataset.queries[qid][:80]!r}) failed with {method}: {e}") from e
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


def cmd_build_head(args: argparse.Namespace) -> int:
    # --- build-head (owner: cluster-head) ---
    from lens_rag.encoders.head_builder import build_head_command

    if args.train or args.corpus is not None:
        from lens_rag.training.cluster_head import train_head_command

        report = train_head_command(
            args.model, args.clusters, args.out, corpus=args.corpus, train=args.train, seed=args.seed,
            budget_minutes=args.budget, max_steps=args.max_steps, epochs=args.epochs, batch_size=args.batch_size,
            learning_rate=args.learning_rate, train_head=None if args.head is None else args.head == "trained",
            loss=args.loss, work_dir=args.work_dir,
            gguf_file=args.gguf_file, progress=args.progress,
        )  # fmt: skip
        print(
            f"trained {args.clusters}-cluster model written to {report.out} ({report.steps} steps, stopped by "
            f"{report.stopped_by}, loss {report.first_loss:.4f} -> {report.last_loss:.4f}, "
            f"{report.seconds.get('total', 0.0):.0f} s). Use it with --sparse-model {report.out}"
        )
        return 0
    out = build_head_command(
        args.model, args.clusters, args.out, seed=args.seed, gguf_file=args.gguf_file, progress=args.progress
    )
    print(f"LENS model written to {out}. Its clustered head is untrained: fine-tune it before relying on it.")
    return 0
    # --- end build-head ---


def cmd_reindex(args: argparse.Namespace) -> int:
    # --- reindex (owner: lead) ---
    from lens_rag.components import open_store
    from lens_rag.indexing import EmbeddingCache, IndexReport, default_cache_dir, index_documents

    same_dir = args.source_store == args.store and args.source_store not in ("elasticsearch", "es")
    if same_dir or (args.source_store in ("elasticsearch", "es") and args.store in ("elasticsearch", "es")
                    and (args.from_index or "lens-rag") == (args.index or "lens-rag")):  # fmt: skip
        raise ConfigurationError(
            "--from and --store name the same store; re-index into a new directory or Elasticsearch index (the old "
            "one keeps working until you switch)"
        )
    if args.store == "memory":
        raise ConfigurationError("--store memory would keep nothing; pass a new directory or 'elasticsearch'")
    if args.source_store not in ("elasticsearch", "es") and not Path(args.source_store).is_dir():
        raise ConfigurationError(f"--from {args.source_store!r} is not a store directory (nor 'elasticsearch')")
    source = open_store(args.source_store, es_url=args.es_url, index=args.from_index, progress=False)
    started = time.perf_counter()
    report = IndexReport()
    try:
        total = source.count_documents()
        if total == 0:
            raise ConfigurationError(f"--from {args.source_store!r} holds no documents to re-index")
        store = _store(args)
        try:
            if store.count_documents() > 0:
                raise ConfigurationError(
                    f"{_store_name(args)} already holds {store.count_documents()} documents; re-index into an empty "
                    "store so that no vector of another model stays behind"
                )
            encoders = _encoders(args, {})
            sparse = None if args.no_sparse else encoders.sparse
            dense = None if args.no_dense else encoders.dense
            if dense is not None and hasattr(store, "ensure_index"):  # Elasticsearch: map the dense field first
                store.close()
                store = _store(args, dense_dims=dense.dimension)
            cache = None if args.no_cache else EmbeddingCache(default_cache_dir() / "embeddings")
            documents = (d.without_embeddings() for d in source.iter_documents())
            index_documents(
                store, documents, sparse_encoder=sparse, dense_encoder=dense, batch_size=args.batch_size,
                cache=cache, progress=args.progress, total=total, report=report,
            )  # fmt: skip
            written = store.count_documents()
        finally:
            store.close()
    finally:
        source.close()
    print(
        f"re-indexed {report.written} of {total} documents from {args.source_store} into {args.store} "
        f"in {time.perf_counter() - started:.1f}s; {report.encoded} encodings computed, {report.cached} reused "
        f"({written} in the new store)"
    )
    return _report_failures(report, "re-indexed")
    # --- end reindex ---


def cmd_adapt(args: argparse.Namespace) -> int:
    # --- adapt (owner: lead) ---
    from lens_rag.training.adapt import AdaptOptions, adapt_store

    info_store = _store(args)
    info = _store_info(info_store)
    encoders = _encoders(args, info)
    generator: Any
    if args.queries == "llm":
        from lens_rag.expansion import LLMQueryGenerator
        from lens_rag.indexing import default_cache_dir
        from lens_rag.llm.base import LLMCache

        generator = LLMQueryGenerator(
            _llm_factory(args)(), n=args.queries_per_passage, workers=args.llm_workers,
            cache=LLMCache(default_cache_dir() / "doc2query"),
        )  # fmt: skip
    else:
        from lens_rag.expansion import HeuristicQueryGenerator

        generator = HeuristicQueryGenerator(sentences=args.sentences)
    members = tuple(m.strip() for m in args.members.split(",") if m.strip())
    options = AdaptOptions(
        members=members,  # type: ignore[arg-type]  # validated by AdaptOptions.validate
        max_passages=args.max_passages,
        word_dropout=args.word_dropout,
        negatives=args.negatives,
        perc=args.perc,
        epochs=args.epochs,
        batch_size=args.batch_size,
        kl_weight=args.kl_weight,
        budget_minutes=args.budget,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        side=args.side,
        progress=args.progress,
    )
    report = adapt_store(
        info_store,
        args.out,
        sparse_encoder=encoders.sparse,
        dense_encoder=encoders.dense,
        generator=generator,
        options=options,
        work_dir=args.work_dir,
    )
    print(
        f"adapted to {report.passages} passages: {report.queries} pseudo-queries, {report.examples} training examples "
        f"({report.dropped_false_negatives} likely false negatives dropped)"
    )
    flags = []
    for m in report.members:
        losses = f"loss {m.first_loss:.3f} -> {m.last_loss:.3f}"
        print(f"  {m.member}: {m.steps} steps in {m.seconds:.0f} s, {losses} -> {m.out}")
        flags.append(f"--{m.member}-{'' if args.side == 'both' else 'query-'}model {m.out}")
    store_flag = f"--store {args.store}" + (f" --index {args.index}" if args.index else "")
    if args.side == "both":
        adapted = {m.member for m in report.members}
        kept = [f"--{k}-model {encoders.sparse.model if k == 'sparse' else encoders.dense.model}"
                for k in ("sparse", "dense") if k not in adapted]  # fmt: skip
        source = f"--from {args.store}" + (f" --from-index {args.index}" if args.index else "")
        print(f"document vectors change with these models: re-index into a new store, then search it:\n"
              f"  lens-rag reindex {source} --store NEW_STORE {' '.join(flags + kept)}")  # fmt: skip
    else:
        print(f"search with them (documents keep their vectors, nothing to re-index):\n"
              f"  lens-rag search QUERY {store_flag} {' '.join(flags)}")  # fmt: skip
    return 0
    # --- end adapt ---


def cmd_serve(args: argparse.Namespace) -> int:
    """`lens-rag serve` (lens_rag/serve/run.py; owner: serve)."""
    from lens_rag.serve.run import serve_from_args

    return serve_from_args(args)


COMMANDS = {
    "index": cmd_index,
    "search": cmd_search,
    "eval": cmd_eval,
    "ask": cmd_ask,
    "build-head": cmd_build_head,
    "adapt": cmd_adapt,
    "reindex": cmd_reindex,
    "serve": cmd_serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with _output(args):
        try:
            return COMMANDS[args.command](args)
        except LensRagError as e:
            print(f"error: {_printable(str(e))}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
