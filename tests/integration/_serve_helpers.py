"""Shared by the `lens-rag serve` integration tests: an indexed example store and a real uvicorn server."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from lens_rag.cli import build_parser, main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"

#: A document that would run script in the page if its text were inserted as HTML.
XSS_DOCUMENT = (
    "# Cross-site scripting sample\n\n"
    'This passage about scripting contains <script>window.__xss = 1</script> and <img src="x" '
    'onerror="window.__xss = 2"> markup that the chat page must show as plain text.\n'
)


def index_examples(root: Path, *, with_xss: bool = True) -> str:
    """Index examples/data (plus the XSS sample) into an embedded store under `root`; returns the store path."""
    source = root / "docs"
    shutil.copytree(EXAMPLES, source)
    if with_xss:
        (source / "xss.md").write_text(XSS_DOCUMENT, encoding="utf-8")
    store = str(root / "store")
    assert main(["index", str(source), "--store", store, "--no-progress", "-q"]) == 0
    return store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(argv: Sequence[str]) -> Iterator[tuple[str, Any]]:
    """Build the app exactly as `lens-rag serve ARGV` does and run it with uvicorn in a thread; yields (url, app)."""
    import uvicorn

    from lens_rag.serve.run import build_app_from_args

    port = free_port()
    args = build_parser().parse_args(["serve", *argv, "--port", str(port)])
    app, store = build_app_from_args(args)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.1)
    try:
        yield url, app
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        store.close()
