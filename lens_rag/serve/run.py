"""Run the served app: ``lens-rag serve`` (built from CLI arguments) or :func:`run_server` for your own app."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from typing import Any

from lens_rag.errors import ConfigurationError, MissingDependencyError

__all__ = [
    "ENV_SERVE_API_KEY",
    "add_serve_args",
    "build_app_from_args",
    "is_loopback",
    "run_server",
    "serve_from_args",
    "served_methods",
]

logger = logging.getLogger(__name__)

#: The API key when ``--api-key`` is not given (an environment variable keeps it out of the process list).
ENV_SERVE_API_KEY = "LENS_RAG_SERVE_API_KEY"

_BASE = ("hybrid", "bm25", "sparse", "dense")


def add_serve_args(p: argparse.ArgumentParser) -> None:
    """The `serve`-only flags (the store, model, retrieval and LLM flags are the CLI's shared ones)."""
    p.add_argument("--method", default="hybrid", help="default retrieval method (clients may pick another served one)")
    p.add_argument(
        "--methods", default=None,
        help="comma-separated methods clients may pick (default: the --method plus every base method the store "
        "has vectors for)",
    )  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--api-key", default=None,
        help=f"require 'Authorization: Bearer KEY' on the API (default: ${ENV_SERVE_API_KEY}; unset: no auth)",
    )  # fmt: skip
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN", help="allow a browser origin")
    p.add_argument("--top-k", type=int, default=5, help="passages given to the LLM by default")
    p.add_argument("--max-tokens", type=int, default=256, help="answer tokens by default")
    p.add_argument("--max-concurrency", type=int, default=8, help="requests working at once (more wait, then 503)")
    p.add_argument("--max-waiting", type=int, default=32, help="requests that may wait for a slot (more: 429)")
    p.add_argument("--queue-timeout", type=float, default=10.0, help="seconds a request waits for a slot")
    p.add_argument("--max-body-bytes", type=int, default=256 * 1024, help="largest request body")
    p.add_argument("--max-messages", type=int, default=64, help="most messages in one chat request")
    p.add_argument("--max-query-chars", type=int, default=2000, help="longest question or query")
    p.add_argument("--no-llm", action="store_true", help="serve search and sources only (no answers)")


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def served_methods(default: str, listed: str | None, info: dict[str, Any]) -> list[str]:
    """The methods to serve: `listed` (comma-separated) or the default plus every base method the store can do."""
    from lens_rag.components import method_needs

    if listed:
        methods = [m.strip() for m in listed.split(",") if m.strip()]
    else:
        recorded = info.get("encoders")
        kinds = {"bm25"} | (set(recorded) if isinstance(recorded, dict) else set())
        methods = [m for m in _BASE if isinstance(recorded, dict) and method_needs(m) <= kinds]
    for m in [default, *methods]:
        method_needs(m)  # unknown names fail now, with the list of valid ones
    return list(dict.fromkeys([default, *methods]))


def run_server(app: Any, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve `app` with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError as e:
        raise MissingDependencyError("uvicorn", "serve", "lens-rag serve") from e
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False, proxy_headers=False)


def build_app_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """The app ``lens-rag serve`` runs, and the store it opened (close it when done).

    :raises ConfigurationError: on an empty store, an unknown method or a bad limit.
    :raises MissingDependencyError: without the ``serve`` extra.
    """
    try:
        import fastapi  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError("fastapi", "serve", "lens-rag serve") from e
    from lens_rag import cli
    from lens_rag.attribution import dense_embedder
    from lens_rag.components import method_needs
    from lens_rag.serve.app import ServeConfig, create_app
    from lens_rag.serve.limits import ServeLimits

    api_key = args.api_key if args.api_key is not None else os.environ.get(ENV_SERVE_API_KEY) or None
    if api_key is not None and len(api_key) < 8:
        raise ConfigurationError("--api-key is shorter than 8 characters; use a long random key")
    if not is_loopback(args.host) and api_key is None:
        print(
            f"warning: listening on {args.host} without an API key: anyone who can reach this port can use the "
            f"server and its LLM; pass --api-key (or set {ENV_SERVE_API_KEY})",
            file=sys.stderr,
        )
    if args.store == "memory":
        raise ConfigurationError("--store memory is empty in a new process; pass the directory you indexed into")
    limits = ServeLimits(
        max_body_bytes=args.max_body_bytes, max_messages=args.max_messages, max_query_chars=args.max_query_chars,
        max_concurrency=args.max_concurrency, max_waiting=args.max_waiting, queue_timeout=args.queue_timeout,
    )  # fmt: skip
    store = cli._store(args)
    try:
        if store.count_documents() == 0:
            raise ConfigurationError(
                f"the store {args.store!r} is empty; run `lens-rag index SOURCE --store ...` first"
            )
        info = cli._store_info(store)
        methods = served_methods(args.method, args.methods, info)
        encoders = cli._encoders(args, info)

        def retriever_for(method: str) -> Any:
            cli._check_encoders(args, store, info, method_needs(method), encoders)
            return cli._retriever(args, method, store, encoders)

        recorded = info.get("encoders")
        has_dense = isinstance(recorded, dict) and "dense" in recorded

        def embedder() -> Any:
            return dense_embedder(encoders.dense) if has_dense else None

        llm = None if args.no_llm else cli._llm_factory(args)()
        config = ServeConfig(
            methods=methods, default_method=args.method, top_k=args.top_k, max_tokens=args.max_tokens,
            api_key=api_key, cors_origins=tuple(args.cors_origin), limits=limits,
            condense_timeout=min(20.0, args.llm_timeout), title=f"lens-rag · {os.path.basename(str(args.store))}",
        )  # fmt: skip
        app = create_app(retriever_for, llm, config, embedder=embedder, count_documents=store.count_documents)
    except BaseException:
        store.close()
        raise
    return app, store


def serve_from_args(args: argparse.Namespace) -> int:
    """``lens-rag serve``: open the store, check it, build retrievers on demand, run the app."""
    app, store = build_app_from_args(args)
    config = app.state.config
    try:
        print(
            f"lens-rag serve: http://{args.host}:{args.port}/ (chat page), OpenAI API at "
            f"http://{args.host}:{args.port}/v1, methods {', '.join(config.methods)}; "
            f"auth {'on' if config.api_key else 'off'}",
            file=sys.stderr,
        )
        run_server(app, args.host, args.port, log_level="warning" if args.quiet else "info")
    finally:
        store.close()
    return 0
