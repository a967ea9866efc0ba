"""Every lens-rag Haystack component survives `Pipeline.dumps` → `Pipeline.loads` in a fresh process, no allowlist.

Haystack ≥ 3.1 refuses to deserialize classes outside `haystack*`/`haystack_integrations*` unless the user
passes an allowlist; ours live in `haystack_integrations.*.lens_rag`, so a saved pipeline loads as is. The
fresh process has no allowlist in its environment, and a control pipeline naming a class outside the
namespace must fail there (so the check can fail). The saved example pipelines under `examples/pipelines/`
are loaded the same way. Nothing connects or loads a model: construction is lazy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from haystack import Pipeline
from haystack.components.generators.chat import OpenAIChatGenerator
from haystack.utils import Secret
from haystack_integrations.components.embedders.lens_rag import (
    LensRagDenseDocumentEmbedder,
    LensRagDenseTextEmbedder,
    LensRagSparseDocumentEmbedder,
    LensRagSparseTextEmbedder,
)
from haystack_integrations.components.joiners.lens_rag import LensRagDocumentJoiner
from haystack_integrations.components.query.lens_rag import LensRagLameRQueryAugmenter
from haystack_integrations.components.rankers.lens_rag import LensRagRanker
from haystack_integrations.components.retrievers.lens_rag import (
    LensRagBM25Retriever,
    LensRagDenseRetriever,
    LensRagElasticsearchSparseRetriever,
    LensRagHybridRetriever,
    LensRagLameRRetriever,
    LensRagSparseRetriever,
)
from haystack_integrations.document_stores.elasticsearch import ElasticsearchDocumentStore
from haystack_integrations.document_stores.lens_rag import LensRagDocumentStore

pytestmark = pytest.mark.unit

PIPELINES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"
KEY_ENV = "LENS_RAG_TEST_LLM_KEY"

# Loads each YAML with the default (safe) loader and prints its re-dump, or the error it raised.
LOADER = """
import json, sys
from haystack import Pipeline
out = []
for text in json.load(sys.stdin):
    try:
        out.append({"ok": Pipeline.loads(text).dumps()})
    except Exception as e:
        out.append({"error": f"{type(e).__name__}: {e}"})
print(json.dumps(out))
"""


def _load_in_fresh_process(texts: list[str]) -> list[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAYSTACK_")}  # no allowlist, no unsafe mode
    env[KEY_ENV] = "not-a-real-key"
    env["LENS_RAG_LLM_API_KEY"] = "not-a-real-key"  # the saved RAG example names this variable
    proc = subprocess.run(
        [sys.executable, "-c", LOADER], input=json.dumps(texts), capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _canonical(text: str) -> dict[str, Any]:
    # The same pipeline may list its connections in another order after a reload; compare them as a set.
    data = yaml.safe_load(text)
    data["connections"] = sorted(data["connections"], key=lambda c: (c["sender"], c["receiver"]))
    return data


def _every_component(monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    monkeypatch.setenv(KEY_ENV, "not-a-real-key")
    store = LensRagDocumentStore("some/dir", bm25_k1=0.9, language=None)
    es = ElasticsearchDocumentStore(hosts="http://127.0.0.1:9", index="docs", sparse_vector_field="sv")
    generator = OpenAIChatGenerator(api_key=Secret.from_env_var(KEY_ENV), api_base_url="http://127.0.0.1:9/v1")
    p = Pipeline()
    p.add_component("sparse_text", LensRagSparseTextEmbedder(query_top_k=64, device="cpu"))
    p.add_component("sparse_docs", LensRagSparseDocumentEmbedder(batch_size=8, cache_dir="cache"))
    p.add_component("dense_text", LensRagDenseTextEmbedder(prompt="query: ", progress_bar=False))
    p.add_component("dense_docs", LensRagDenseDocumentEmbedder(meta_fields_to_embed=["title"]))
    only_a = {"field": "meta.a", "operator": "==", "value": 1}
    p.add_component("bm25", LensRagBM25Retriever(document_store=store, top_k=7, filters=only_a))
    p.add_component("sparse", LensRagSparseRetriever(document_store=store, filter_policy="merge"))
    p.add_component("dense", LensRagDenseRetriever(document_store=store))
    p.add_component("es_sparse", LensRagElasticsearchSparseRetriever(document_store=es, query_mode="term"))
    p.add_component("joiner", LensRagDocumentJoiner(fusion="rrf", weights={"bm25": 2.0}))
    p.add_component("hybrid", LensRagHybridRetriever(document_store=store, sources=["bm25", "dense"], top_k=5))
    p.add_component("es_hybrid", LensRagHybridRetriever(document_store=es, fusion="dbsf"))
    p.add_component("ranker", LensRagRanker("cross-encoder/ms-marco-MiniLM-L6-v2", top_k=3))
    p.add_component("lamer", LensRagLameRQueryAugmenter(chat_generator=generator, domain="scifact", n_answers=2))
    p.add_component("lamer_core", LensRagLameRQueryAugmenter(llm_config={"type": "openai", "base_url": "http://x/v1"}))
    lamer_retriever = LensRagLameRRetriever(
        document_store=store,
        augmenter=LensRagLameRQueryAugmenter(chat_generator=OpenAIChatGenerator(
            api_key=Secret.from_env_var(KEY_ENV), api_base_url="http://127.0.0.1:9/v1"
        )),
        second_stage="hybrid",
    )  # fmt: skip
    p.add_component("lamer_retriever", lamer_retriever)
    p.connect("sparse_text.sparse_embedding", "sparse.query_sparse_embedding")
    p.connect("dense_text.embedding", "dense.query_embedding")
    p.connect("bm25.documents", "joiner.bm25")
    p.connect("sparse.documents", "joiner.sparse")
    p.connect("dense.documents", "joiner.dense")
    p.connect("joiner.documents", "ranker.documents")
    p.connect("ranker.documents", "lamer.documents")
    return p


def test_every_component_round_trips_in_a_fresh_process_without_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    saved = _every_component(monkeypatch).dumps()
    assert "not-a-real-key" not in saved  # secrets are saved as variable names only
    control = saved.replace(
        "haystack_integrations.components.rankers.lens_rag.ranker.LensRagRanker", "lens_rag.rerank.CrossEncoderReranker"
    )
    examples = sorted(PIPELINES.glob("haystack_*.yaml"))
    assert [p.name for p in examples] == ["haystack_hybrid.yaml", "haystack_indexing.yaml", "haystack_rag.yaml"]
    results = _load_in_fresh_process([saved, control, *(p.read_text() for p in examples)])
    assert _canonical(results[0]["ok"]) == _canonical(saved)
    assert "error" in results[1] and "lens_rag.rerank" in results[1]["error"]  # outside the namespace: refused
    for path, result in zip(examples, results[2:], strict=True):
        assert _canonical(result["ok"]) == _canonical(path.read_text()), path.name


def test_to_dict_from_dict_in_process_equals(monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = _every_component(monkeypatch)
    again = Pipeline.loads(pipeline.dumps())
    assert _canonical(again.dumps()) == _canonical(pipeline.dumps())
    for name, instance in again.walk():
        assert type(instance).__module__.startswith(("haystack_integrations.", "haystack.")), name
