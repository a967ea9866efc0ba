"""A bounded load run against ``lens-rag serve`` on loopback: concurrent searches and chats, latency and memory.

Starts ``lens-rag serve`` as a subprocess over an embedded store (indexed from ``examples/data`` unless
``--store`` names one), warms it up, then runs for ``--duration`` seconds:

- ``--search-clients`` (20) clients, each sending ``POST /v1/search`` (hybrid, top 10) back to back;
- ``--chat-clients`` (2) clients, each sending ``POST /v1/chat/completions`` (non-streamed, ``--max-tokens``)
  to the LLM behind the server (``$LENS_RAG_LLM_URL``).

Reported: requests, p50/p95/max latency per kind, errors by status (must be 0 while the clients stay below the
server's limit of ``--max-concurrency`` working + ``--max-waiting`` waiting), and the server's resident memory
(VmRSS) after warm-up and after the run.

Usage::

    eval "$(scripts/llm-server.sh start)"
    python benchmarks/serve_load.py --duration 60 --json benchmarks/results/serve_load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
QUERIES = [
    "What causes scurvy?", "How do volcanoes form?", "What does aspirin block?", "How does photosynthesis work?",
    "What is hybrid retrieval?", "How does Elasticsearch index documents?", "vitamin D rickets", "magma plates",
    "chlorophyll light", "sparse and dense retrieval", "bleeding gums sailors", "platelets COX-1",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def _client(
    kind: str, url: str, deadline: float, out: dict[str, list[float]], errors: dict[str, int], max_tokens: int, i: int
) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        n = i
        while time.monotonic() < deadline:
            query = QUERIES[n % len(QUERIES)]
            n += 1
            t0 = time.perf_counter()
            try:
                if kind == "search":
                    r = await http.post("/v1/search", json={"query": query, "top_k": 10})
                else:
                    r = await http.post(
                        "/v1/chat/completions",
                        json={"messages": [{"role": "user", "content": query}], "max_tokens": max_tokens},
                    )
                status = str(r.status_code)
            except httpx.HTTPError as e:
                status = type(e).__name__
            elapsed = time.perf_counter() - t0
            if status == "200":
                out[kind].append(elapsed)
            else:
                errors[f"{kind}:{status}"] = errors.get(f"{kind}:{status}", 0) + 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default=None, help="an indexed store (default: examples/data indexed into a temp dir)")
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--search-clients", type=int, default=20)
    p.add_argument("--chat-clients", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--max-concurrency", type=int, default=8)
    p.add_argument("--max-waiting", type=int, default=32)
    p.add_argument("--queue-timeout", type=float, default=120.0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    exe = [sys.executable, "-m", "lens_rag.cli"]
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    store = args.store
    if store is None:
        store = str(tmp / "store")
        subprocess.run([*exe, "index", str(ROOT / "examples" / "data"), "--store", store, "-q"], check=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*exe, "serve", "--store", store, "--port", str(port), "--max-concurrency", str(args.max_concurrency),
         "--max-waiting", str(args.max_waiting), "--queue-timeout", str(args.queue_timeout), "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: {server.stderr.read() if server.stderr else ''}")
            time.sleep(0.2)
        t0 = time.perf_counter()
        warm = httpx.post(f"{url}/v1/search", json={"query": "warm up"}, timeout=600)
        warm.raise_for_status()
        warm_s = time.perf_counter() - t0
        if args.chat_clients:
            httpx.post(
                f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
                timeout=600,
            ).raise_for_status()  # fmt: skip
        rss_before = _rss_mib(server.pid)
        out: dict[str, list[float]] = {"search": [], "chat": []}
        errors: dict[str, int] = {}

        async def run() -> None:
            end = time.monotonic() + args.duration
            tasks = [_client("search", url, end, out, errors, args.max_tokens, i) for i in range(args.search_clients)]
            tasks += [_client("chat", url, end, out, errors, args.max_tokens, i) for i in range(args.chat_clients)]
            await asyncio.gather(*tasks)

        started = time.perf_counter()
        asyncio.run(run())
        wall = time.perf_counter() - started
        rss_after = _rss_mib(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    result: dict[str, Any] = {
        "settings": vars(args),
        "cpu_count": os.cpu_count(),
        "first_search_s": round(warm_s, 2),
        "wall_s": round(wall, 1),
        "errors": errors,
        "server_rss_mib": {"before": rss_before, "after": rss_after},
    }
    for kind, values in out.items():
        result[kind] = {
            "requests": len(values),
            "per_s": round(len(values) / wall, 2),
            "p50_ms": None if not values else round(1000 * statistics.median(values), 1),
            "p95_ms": None if not values else round(1000 * (_pct(values, 0.95) or 0), 1),
            "max_ms": None if not values else round(1000 * max(values), 1),
        }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
