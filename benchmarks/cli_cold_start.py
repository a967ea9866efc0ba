"""Cold start of `lens-rag search`, as a user runs it: one new process per search, wall time.

Builds the 6-document demo store (examples/data) once, then runs `lens-rag search` for each method
`--runs` times and prints the min / median / max wall seconds, with the machine's load average
(wall time means little on a busy machine: compare methods within one run of this script, and
look at the CPU seconds, which load changes less).

    python benchmarks/cli_cold_start.py --runs 5 [--methods bm25 hybrid] [--store DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERY = "what disease comes from a lack of vitamin C?"


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("lens-rag")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "lens_rag.cli"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=["bm25", "sparse", "dense", "hybrid"])
    parser.add_argument("--store", default=None, help="an existing demo store (default: build one in a temp dir)")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    tmp = None
    store = args.store
    if store is None:
        tmp = tempfile.mkdtemp(prefix="lens-rag-cold-")
        store = str(Path(tmp) / "store")
        subprocess.run(
            [*_cli(), "index", str(ROOT / "examples" / "data"), "--store", store, "-q", "--no-cache"],
            check=True,
            env=env,
        )
    # The first search builds and saves the BM25 index; time what every later search costs.
    subprocess.run(
        [*_cli(), "search", QUERY, "--store", store, "--method", "bm25"], check=True, env=env, capture_output=True
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cpus: {os.cpu_count()}")
    print(
        f"{'method':<10} {'min':>6} {'median':>7} {'max':>6}  {'cpu':>6}  "
        f"(seconds: wall over {args.runs} runs; cpu: median user+sys)"
    )
    for method in args.methods:
        times = []
        cpu = []
        for _ in range(args.runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            done = subprocess.run(
                [*_cli(), "search", QUERY, "--store", store, "--method", method, "--top-k", "3"],
                env=env,
                capture_output=True,
                text=True,
            )
            times.append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            if done.returncode != 0 or done.stderr:
                print(f"{method}: exit {done.returncode}, stderr: {done.stderr[:500]!r}", file=sys.stderr)
        print(
            f"{method:<10} {min(times):6.2f} {statistics.median(times):7.2f} {max(times):6.2f}  "
            f"{statistics.median(cpu):6.2f}"
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
