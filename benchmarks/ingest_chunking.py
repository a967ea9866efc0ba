"""Do chunks fit the encoders' window? Word chunks (the old 200/40 default) vs token chunks (254/50 tokens).

Loads SciFact's corpus as a JSONL source (title + text, chunked as `lens-rag index` does) and a folder of long
prose (the license texts in /usr/share/common-licenses), chunks each with both settings, and counts, with the
packaged SPLADE-tiny tokenizer (the same tokens as MiniLM), how many chunks exceed the 256-token window
([CLS] and [SEP] included) and how many tokens the encoders would silently drop.

    python benchmarks/ingest_chunking.py
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from lens_rag.chunking import DEFAULT_WINDOW, default_tokenizer
from lens_rag.ingest import load_source

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact" / "corpus.jsonl"
LICENSES = Path("/usr/share/common-licenses")


def measure(label: str, source: Path, **kwargs: object) -> None:
    tokenizer = default_tokenizer()
    assert tokenizer is not None
    started = time.perf_counter()
    docs = list(load_source(source, progress=False, **kwargs))  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    sizes = np.array([len(tokenizer.offsets(d.content)) + tokenizer.num_special_tokens for d in docs])
    over = sizes > DEFAULT_WINDOW
    dropped = int(np.maximum(sizes - DEFAULT_WINDOW, 0).sum())
    print(
        f"{label:<34} chunks {len(docs):>6}  > {DEFAULT_WINDOW} tokens: {int(over.sum()):>5} ({over.mean():6.1%})  "
        f"max {int(sizes.max()):>5}  median {int(np.median(sizes)):>4}  tokens dropped {dropped:>7} "
        f"({dropped / sizes.sum():5.1%})  load {elapsed:5.1f}s"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        prose = Path(tmp) / "licenses"
        prose.mkdir()
        for file in sorted(LICENSES.iterdir()):
            if file.is_file():
                shutil.copy(file, prose / f"{file.name}.txt")
        for name, source in (("scifact", SCIFACT), ("licenses", prose)):
            measure(f"{name}: words 200/40 (old default)", source, tokenizer=None, chunk_size=200, chunk_overlap=40)
            measure(f"{name}: words 150/30 (fallback)", source, tokenizer=None)
            measure(f"{name}: tokens 254/50 (new default)", source)


if __name__ == "__main__":
    main()
