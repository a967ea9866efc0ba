"""Time and peak memory to build a LENS clustered head (default: SmolLM2-135M GGUF, vocab 49,152 → 4,000).

    python benchmarks/build_head.py                                   # packaged SmolLM2 GGUF, k=4000
    python benchmarks/build_head.py --model DIR --clusters 8000       # any causal LM directory or name

Writes the (untrained) LENS model to a temporary directory unless --out is given, then loads it with
LENSEncoder and encodes one query as a smoke test. Prints a table.
"""

from __future__ import annotations

import argparse
import logging
import resource
import tempfile
import time
from pathlib import Path

import torch


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux reports KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model dir/name (default: the packaged SmolLM2 GGUF directory)")
    ap.add_argument("--gguf-file", default=None)
    ap.add_argument("--clusters", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from lens_rag.encoders.head_builder import add_marker_tokens, build_lens_head, load_causal_lm, save_lens_model
    from lens_rag.encoders.lens import LENSEncoder
    from lens_rag.models import smollm2_gguf_path

    model, gguf = args.model, args.gguf_file
    if model is None:
        p = smollm2_gguf_path()
        model, gguf = str(p.parent), p.name
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="lens_head_"))

    rows = []
    t = time.perf_counter()
    lm, tok = load_causal_lm(model, gguf)
    rows.append(("load model" + (" (GGUF convert)" if gguf else ""), time.perf_counter() - t, _peak_rss_gib()))
    vocab, hidden = lm.get_output_embeddings().weight.shape
    t = time.perf_counter()
    head = build_lens_head(lm, args.clusters, args.seed, progress=True)
    rows.append(
        (
            f"k-means {vocab}x{hidden} -> {args.clusters} ({head.iterations} it)",
            time.perf_counter() - t,
            _peak_rss_gib(),
        )
    )
    t = time.perf_counter()
    add_marker_tokens(tok, lm.base_model)
    save_lens_model(lm.base_model, tok, head, out, info={"source_model": model, "gguf_file": gguf, "trained": False})
    rows.append(("save LENS directory", time.perf_counter() - t, _peak_rss_gib()))
    del lm
    t = time.perf_counter()
    enc = LENSEncoder(str(out), progress=False, max_length=128)
    v = enc.encode_queries(["what causes scurvy"])[0]
    rows.append((f"load + encode 1 query ({len(v)} non-zeros)", time.perf_counter() - t, _peak_rss_gib()))

    total = sum(r[1] for r in rows[:3])
    print(
        f"\nLENS head build: {model} {gguf or ''}  clusters {args.clusters}  seed {args.seed}  "
        f"threads {args.threads}  -> {out}"
    )
    print(f"{'step':<52} {'seconds':>8} {'peak RSS GiB':>13}")
    for name, s, m in rows:
        print(f"{name:<52} {s:>8.1f} {m:>13.2f}")
    print(f"{'total build (load + k-means + save)':<52} {total:>8.1f}")
    print(f"k-means inertia {head.inertia:.4g}; output is UNTRAINED — fine-tune before use")


if __name__ == "__main__":
    main()
