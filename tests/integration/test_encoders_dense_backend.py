"""The dense encoder runs sentence-transformers models through `transformers` directly: same vectors, less import.

Compares against `sentence_transformers.SentenceTransformer` on the packaged all-MiniLM-L6-v2 and on copies of it
with CLS / max pooling, and checks that a layout it does not handle (an extra Dense layer) falls back to
sentence-transformers.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lens_rag.encoders.dense import SentenceTransformerDenseEncoder
from lens_rag.models import minilm_path

pytestmark = pytest.mark.integration

SCIFACT = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "scifact" / "corpus.jsonl"
TEXTS = [
    "Scurvy is caused by a lack of vitamin C in the diet.",
    "  leading and trailing whitespace  ",
    "UPPER CASE and MiXeD case Text",
    "x",
    "ünïcödé, emoji 😀 and 中文字符",
    "a long passage about aspirin and platelets " * 60,  # beyond the 256-token window
]


def _texts() -> list[str]:
    texts = list(TEXTS)
    if SCIFACT.is_file():
        with SCIFACT.open(encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= 100:
                    break
                d = json.loads(line)
                texts.append(f"{d['title']} {d['text']}")
    return texts


@pytest.fixture(scope="module")
def st_minilm():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path()), device="cpu")


def test_packaged_minilm_runs_through_transformers_and_matches(st_minilm) -> None:
    texts = _texts()
    enc = SentenceTransformerDenseEncoder(progress=False, device="cpu", batch_size=16)
    ours = enc.encode_documents_array(texts)
    assert enc.backend == "transformers" and enc.dimension == 384
    theirs = st_minilm.encode(texts, batch_size=16, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    assert float(np.abs(ours - theirs).max()) < 1e-5
    prompted = SentenceTransformerDenseEncoder(query_prompt="query: ", normalize=False, progress=False, device="cpu")
    q = prompted.encode_queries_array(texts[:10])
    # MiniLM's own Normalize module normalises even with normalize=False, as in sentence-transformers
    expected = st_minilm.encode(["query: " + t for t in texts[:10]], normalize_embeddings=False)
    assert float(np.abs(q - expected).max()) < 1e-5


def test_cold_start_does_not_import_sentence_transformers() -> None:
    code = (
        "import sys\n"
        "from lens_rag.encoders.dense import SentenceTransformerDenseEncoder as E\n"
        "e = E(progress=False)\n"
        "e.encode_queries(['does vitamin c prevent scurvy?'])\n"
        "print(e.backend, 'sentence_transformers' in sys.modules)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TQDM_DISABLE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["transformers", "False"], out.stderr


def _copy_with_pooling(tmp_path: Path, pooling: dict[str, bool]) -> Path:
    src = minilm_path()
    dst = tmp_path / "model"
    dst.mkdir()
    for item in src.iterdir():
        if item.name != "1_Pooling":
            (dst / item.name).symlink_to(item)
    (dst / "1_Pooling").mkdir()
    config = json.loads((src / "1_Pooling" / "config.json").read_text())
    config.update({k: False for k in config if k.startswith("pooling_mode_")})
    config.update(pooling)
    (dst / "1_Pooling" / "config.json").write_text(json.dumps(config))
    return dst


@pytest.mark.parametrize(
    "pooling",
    [{"pooling_mode_cls_token": True}, {"pooling_mode_max_tokens": True}, {"pooling_mode_mean_sqrt_len_tokens": True}],
    ids=["cls", "max", "mean_sqrt_len"],
)
def test_other_poolings_match_sentence_transformers(tmp_path: Path, pooling: dict[str, bool]) -> None:
    from sentence_transformers import SentenceTransformer

    path = _copy_with_pooling(tmp_path, pooling)
    texts = _texts()[:40]
    enc = SentenceTransformerDenseEncoder(str(path), progress=False, device="cpu")
    ours = enc.encode_documents_array(texts)
    assert enc.backend == "transformers"
    theirs = SentenceTransformer(str(path), device="cpu").encode(texts, normalize_embeddings=True)
    assert float(np.abs(ours - theirs).max()) < 1e-5


def test_extra_dense_layer_falls_back_to_sentence_transformers(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer, models

    base = SentenceTransformer(str(minilm_path()), device="cpu")
    dense = models.Dense(in_features=384, out_features=16)
    model = SentenceTransformer(modules=[*base, dense], device="cpu")
    path = tmp_path / "with-dense"
    model.save(str(path))
    enc = SentenceTransformerDenseEncoder(str(path), progress=False, device="cpu")
    ours = enc.encode_documents_array(TEXTS)
    assert enc.backend == "sentence-transformers" and ours.shape == (len(TEXTS), 16)
    theirs = SentenceTransformer(str(path), device="cpu").encode(TEXTS, normalize_embeddings=True)
    assert float(np.abs(ours - theirs).max()) < 1e-5


def test_huge_text_is_truncated_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    huge = ("Scurvy follows a long lack of vitamin C in sailors' diets. " * 90_000)[:5_000_000]
    enc = SentenceTransformerDenseEncoder(progress=False, device="cpu")
    with caplog.at_level(logging.WARNING, logger="lens_rag.encoders.dense"):
        vec = enc.encode_documents_array([huge, "short text"])
    assert vec.shape == (2, 384) and np.all(np.isfinite(vec))
    assert "1 of 2 texts exceed max_seq_length=256 tokens and were truncated" in caplog.text
    caplog.clear()
    from lens_rag.chunking import Chunker

    chunks = Chunker().split("vitamin " * 2000)  # windows that fill the 254 tokens exactly are not truncated
    assert max(Chunker().count(c) for c in chunks) == 254
    with caplog.at_level(logging.WARNING, logger="lens_rag.encoders.dense"):
        enc.encode_documents_array(chunks)
    assert "truncated" not in caplog.text
    head = enc.encode_documents_array([huge[:5000]])  # the window holds the same first 254 tokens
    assert float(np.abs(vec[0] - head[0]).max()) < 1e-5


def test_unsupported_layout_copy_cleanup(tmp_path: Path) -> None:
    """A model folder without modules.json (a plain Hugging Face model) is left to sentence-transformers."""
    dst = tmp_path / "plain"
    shutil.copytree(minilm_path(), dst, ignore=shutil.ignore_patterns("modules.json", "1_Pooling", "model.safetensors"))
    (dst / "model.safetensors").symlink_to(minilm_path() / "model.safetensors")
    enc = SentenceTransformerDenseEncoder(str(dst), progress=False, device="cpu")
    enc.warm_up()
    assert enc.backend == "sentence-transformers"
