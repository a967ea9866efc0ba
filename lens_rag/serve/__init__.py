"""``lens-rag serve``: a chatbot over a store — OpenAI-compatible chat API with citations, search, a chat page.

Needs the ``serve`` extra (``pip install 'lens-rag[serve]'``: FastAPI and uvicorn). Importing this package
loads nothing (names resolve on first use); :func:`create_app` builds the app, ``lens-rag serve`` runs it.

Usage::

    from lens_rag.serve import ServeConfig, create_app

    app = create_app(lambda method: retriever, llm, ServeConfig(methods=("hybrid",), api_key="s3cret"))
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "NO_ANSWER",
    "Condensed",
    "ServeConfig",
    "ServeError",
    "ServeLimits",
    "condense_query_async",
    "create_app",
    "keyword_condense",
]

# Loaded on first use, so that `lens-rag --help` (which builds the serve parser) does not import FastAPI.
_WHERE = {
    "NO_ANSWER": "app",
    "ServeConfig": "app",
    "ServeError": "app",
    "create_app": "app",
    "Condensed": "condense",
    "condense_query_async": "condense",
    "keyword_condense": "condense",
    "ServeLimits": "limits",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'lens_rag.serve' has no attribute {name!r}")
    return getattr(import_module(f"lens_rag.serve.{_WHERE[name]}"), name)
