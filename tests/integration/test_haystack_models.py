"""Haystack components with the real packaged models and the real local LLM server; the examples end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from haystack import Document
from haystack_integrations.components.embedders.lens_rag import (
    LensRagDenseDocumentEmbedder,
    LensRagDenseTextEmbedder,
    LensRagSparseDocumentEmbedder,
    LensRagSparseTextEmbedder,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TEXT = "Scurvy is caused by a prolonged lack of vitamin C."


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAYSTACK_")}  # no allowlist anywhere
    env.update({"TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra})
    return env


def _run(args: list[str], cwd: Path, **env: str) -> str:
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_embedders_give_the_core_encoders_vectors() -> None:
    from lens_rag.encoders.dense import SentenceTransformerDenseEncoder
    from lens_rag.encoders.mlm import MLMSparseEncoder

    sparse_core, dense_core = MLMSparseEncoder(progress=False), SentenceTransformerDenseEncoder(progress=False)
    query = LensRagSparseTextEmbedder().run(text=TEXT)["sparse_embedding"]
    expected = sparse_core.encode_queries([TEXT])[0]
    assert query.indices == expected.indices.tolist() and np.allclose(query.values, expected.values)
    doc = LensRagSparseDocumentEmbedder().run([Document(content=TEXT)])["documents"][0]
    assert doc.sparse_embedding.indices == sparse_core.encode_documents([TEXT])[0].indices.tolist()
    assert np.allclose(LensRagDenseTextEmbedder().run(text=TEXT)["embedding"], dense_core.encode_queries([TEXT])[0])
    dense_doc = LensRagDenseDocumentEmbedder().run([Document(content=TEXT)])["documents"][0]
    assert len(dense_doc.embedding) == 384


def test_examples_index_and_search_and_the_saved_yaml_runs(tmp_path: Path) -> None:
    out = _run([str(EXAMPLES / "haystack_indexing.py")], cwd=tmp_path)  # default store: ./.lens-rag/haystack-demo
    assert "indexed" in out and (tmp_path / ".lens-rag" / "haystack-demo").is_dir()
    out = _run([str(EXAMPLES / "haystack_hybrid.py")], cwd=tmp_path)
    first = out.splitlines()[0]
    assert first.startswith("1. ") and "Vitamins" in first and "bm25 #" in first
    # The saved hybrid pipeline, loaded in a fresh process with no allowlist, finds the same passage.
    loader = (
        "import json, sys; from haystack import Pipeline; "
        "p = Pipeline.loads(open(sys.argv[1]).read()); "
        "q = 'what disease comes from a lack of vitamin C?'; "
        "docs = p.run({'retriever': {'query': q}})['retriever']['documents']; "
        "print(json.dumps([d.content[:40] for d in docs]))"
    )
    contents = json.loads(_run(["-c", loader, str(EXAMPLES / "pipelines" / "haystack_hybrid.yaml")], cwd=tmp_path))
    assert len(contents) == 3 and "Vitamins" in contents[0]


def test_rag_example_answers_with_the_local_llm(tmp_path: Path, llm_url: str, llm_model: str | None) -> None:
    _run([str(EXAMPLES / "haystack_indexing.py"), "--store", str(tmp_path / "store")], cwd=tmp_path)
    args = [str(EXAMPLES / "haystack_rag.py"), "--store", str(tmp_path / "store"), "--llm-url", llm_url]
    if llm_model:
        args += ["--llm-model", llm_model]
    out = _run(args, cwd=tmp_path)
    assert out.startswith("[1] ") and "Vitamins" in out.splitlines()[0]
    answer = out.split("answer:", 1)[1].strip()
    assert answer  # the 135M model's answer is not judged, only that the pipeline produced one


def test_lamer_augmenter_with_openai_chat_generator(llm_url: str, llm_model: str | None) -> None:
    from haystack.components.generators.chat import OpenAIChatGenerator
    from haystack.utils import Secret
    from haystack_integrations.components.query.lens_rag import LensRagLameRQueryAugmenter

    os.environ.setdefault("LENS_RAG_LLM_API_KEY", "no-key-needed")
    generator = OpenAIChatGenerator(
        api_key=Secret.from_env_var("LENS_RAG_LLM_API_KEY"), api_base_url=llm_url, model=llm_model or "local"
    )
    augmenter = LensRagLameRQueryAugmenter(chat_generator=generator, n_answers=2, max_tokens=32, domain="scifact")
    candidates = [Document(content="Vitamin D and fractures."), Document(content="Calcium intake in the elderly.")]
    claim = "Vitamin D supplements prevent bone fractures in older adults."
    out = augmenter.run(query=claim, documents=candidates)
    assert not out["fell_back"] and len(out["answers"]) == 2 and all(a.strip() for a in out["answers"])
    assert out["query"].startswith(claim + " ") and out["query"].count(claim) == 2
