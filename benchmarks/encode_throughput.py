"""Encode throughput: lens-rag `MLMSparseEncoder` vs `sentence_transformers.SparseEncoder`, same SPLADE-tiny weights.

Reads the SciFact corpus in place (never copy it into the repo). Both encoders run in the same process on the
same passages, alternating rounds to share the machine's load fairly; prints a table with passages/s, the ratio
and the max absolute difference of the vectors.

    python benchmarks/encode_throughput.py --n 512          # default sample
    python benchmarks/encode_throughput.py --all            # all 5,183 passages
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact" / "corpus.jsonl"


def load_passages(path: Path, n: int | None, seed: int) -> list[str]:
    docs = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            text = f"{d.get('title', '')} {d.get('text', '')}".strip()
            if text:
                docs.append(text)
    if n is not None and n < len(docs):
        idx = np.sort(np.random.default_rng(seed).choice(len(docs), n, replace=False))
        docs = [docs[i] for i in idx]
    return docs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--n", type=int, default=512, help="passages sampled (default 512)")
    ap.add_argument("--all", action="store_true", help="encode the whole corpus")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per encoder")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from sentence_transformers import SparseEncoder

    from lens_rag.encoders.mlm import MLMSparseEncoder
    from lens_rag.models import splade_tiny_path

    passages = load_passages(args.corpus, None if args.all else args.n, args.seed)
    ours = MLMSparseEncoder(max_length=args.max_length, batch_size=args.batch_size, progress=False, device="cpu")
    ours.warm_up()
    st = SparseEncoder(str(splade_tiny_path()), device="cpu")
    st.max_seq_length = args.max_length

    def run_ours() -> np.ndarray:
        return ours.encode_dense(passages)

    def run_st() -> np.ndarray:
        emb = st.encode(passages, batch_size=args.batch_size, convert_to_tensor=True, show_progress_bar=False)
        return emb.to_dense().numpy() if emb.is_sparse else emb.cpu().numpy()

    run_ours_small = ours.encode_dense(passages[:8])  # warm caches/allocators for both
    run_st_small = st.encode(passages[:8], convert_to_tensor=True)
    del run_ours_small, run_st_small
    times: dict[str, list[float]] = {"lens-rag MLMSparseEncoder": [], "sentence-transformers SparseEncoder": []}
    out_ours = out_st = None
    for _ in range(args.rounds):
        for name, fn in (("sentence-transformers SparseEncoder", run_st), ("lens-rag MLMSparseEncoder", run_ours)):
            t = time.perf_counter()
            res = fn()
            times[name].append(time.perf_counter() - t)
            if name.startswith("lens"):
                out_ours = res
            else:
                out_st = res
    assert out_ours is not None and out_st is not None
    diff = float(np.abs(out_ours - out_st).max())
    n = len(passages)
    best = {k: min(v) for k, v in times.items()}
    print(
        f"\nSciFact passages: {n}  batch {args.batch_size}  max_length {args.max_length}  threads {args.threads}  "
        f"rounds {args.rounds} (best round shown)"
    )
    print(f"{'encoder':<40} {'seconds':>9} {'passages/s':>11}")
    for k, s in best.items():
        print(f"{k:<40} {s:>9.2f} {n / s:>11.1f}")
    ratio = best["sentence-transformers SparseEncoder"] / best["lens-rag MLMSparseEncoder"]
    print(f"{'speed-up (ours / sentence-transformers)':<40} {ratio:>21.2f}x")
    print(f"{'max |ours - sentence-transformers|':<40} {diff:>21.2e}")
    print(f"{'mean non-zeros per passage':<40} {float((out_ours > 0).sum(1).mean()):>21.1f}")


if __name__ == "__main__":
    main()
