"""Dense encoder: sentence-transformers vs the direct `transformers` path, same MiniLM weights.

Cold start: a fresh Python process imports the encoder, loads the packaged all-MiniLM-L6-v2 and encodes
one query (what `lens-rag search --method dense|hybrid` pays), alternating the two paths `--runs` times.
Throughput: SciFact passages (title + text) per second for `encode_documents`, both paths in one process,
alternating rounds; also the largest absolute difference between their vectors.

    python benchmarks/dense_backend.py --runs 5 --n 512
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact" / "corpus.jsonl"

COLD = """
import time
t0 = time.perf_counter()
import lens_rag.encoders.dense as dense
if {force_st}:
    dense._read_layout = lambda path: None
enc = dense.SentenceTransformerDenseEncoder(progress=False)
t1 = time.perf_counter()
enc.warm_up()
t2 = time.perf_counter()
enc.encode_queries(["does vitamin c prevent scurvy?"])
t3 = time.perf_counter()
import sys
print(enc.backend, t3 - t0, t2 - t1, t3 - t2, "sentence_transformers" in sys.modules)
"""


def cold(runs: int) -> None:
    env = dict(os.environ, TQDM_DISABLE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    times: dict[str, list[float]] = {"sentence-transformers": [], "transformers": []}
    for _ in range(runs):
        for force_st in (True, False):
            started = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", COLD.format(force_st=force_st)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            wall = time.perf_counter() - started
            backend, total = out[0], float(out[1])
            times[backend].append(wall)
            print(f"  {backend:<22} process wall {wall:5.2f}s  import+load+encode {total:5.2f}s  st imported: {out[4]}")
    for backend, values in times.items():
        print(f"cold start {backend:<22} median {statistics.median(values):5.2f}s  min {min(values):5.2f}s  (n={runs})")


def _cpu_seconds() -> float:
    """CPU time of this process, all threads: less sensitive than wall time to other load on a shared machine."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def throughput(n: int, rounds: int) -> None:
    import lens_rag.encoders.dense as dense

    texts = []
    with CORPUS.open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            texts.append(f"{d.get('title', '')} {d.get('text', '')}".strip())
            if len(texts) == n:
                break
    direct = dense.SentenceTransformerDenseEncoder(progress=False)
    direct.warm_up()
    read_layout = dense._read_layout
    dense._read_layout = lambda path: None  # type: ignore[assignment]
    st = dense.SentenceTransformerDenseEncoder(progress=False)
    st.warm_up()
    dense._read_layout = read_layout
    assert (direct.backend, st.backend) == ("transformers", "sentence-transformers")
    rates: dict[str, list[float]] = {"sentence-transformers": [], "transformers": []}
    cpu: dict[str, list[float]] = {"sentence-transformers": [], "transformers": []}
    vectors = {}
    for _ in range(rounds):
        for enc in (st, direct):
            started, cpu_started = time.perf_counter(), _cpu_seconds()
            vectors[enc.backend] = enc.encode_documents_array(texts)
            rates[str(enc.backend)].append(len(texts) / (time.perf_counter() - started))
            cpu[str(enc.backend)].append(1000 * (_cpu_seconds() - cpu_started) / len(texts))
    diff = float(np.abs(vectors["transformers"] - vectors["sentence-transformers"]).max())
    for backend, values in rates.items():
        print(
            f"throughput {backend:<22} median {statistics.median(values):6.1f} passages/s, "
            f"{statistics.median(cpu[backend]):6.1f} CPU ms/passage (all threads; n={n}, {rounds} rounds)"
        )
    print(f"max |difference| of the vectors: {diff:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    if args.runs:
        cold(args.runs)
    throughput(args.n, args.rounds)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
