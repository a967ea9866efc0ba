"""doc2query with the real local LLM server, and expansion in a real Elasticsearch index (sync and async)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from lens_rag.documents import Document
from lens_rag.expansion import EXPANSION_KEY, LLMQueryGenerator, expand_documents
from lens_rag.llm.base import LLMCache
from lens_rag.llm.openai_client import OpenAICompatibleClient
from lens_rag.stores.elasticsearch import ElasticsearchStore

pytestmark = pytest.mark.integration

PASSAGES = [
    Document(
        id="bc1",
        content="BC1 RNA is the master gene for ID-related SINEs in rodent genomes. It primes its own reverse "
        "transcription, which explains how these elements spread.",
    ),
    Document(
        id="vitd",
        content="Vitamin D deficiency is common in older adults and is linked to bone loss and fractures; "
        "supplementation improves bone mineral density.",
    ),
]


def test_llm_writes_cached_pseudo_queries(llm_url, llm_model, tmp_path):
    llm = OpenAICompatibleClient(base_url=llm_url, model=llm_model, timeout=120.0)
    gen = LLMQueryGenerator(llm, n=1, temperature=0.0, max_tokens=24, cache=LLMCache(tmp_path))
    queries = gen.generate(PASSAGES)
    assert len(queries) == 2 and all(q and all(isinstance(s, str) and s.strip() for s in q) for q in queries)
    assert gen.generated == 2
    again = LLMQueryGenerator(llm, n=1, temperature=0.0, max_tokens=24, cache=LLMCache(tmp_path))
    assert again.generate(PASSAGES) == queries and again.generated == 0
    docs = expand_documents(PASSAGES, mode="doc2query", generator=again)
    assert [d.content for d in docs] == [d.content for d in PASSAGES]
    assert all(d.meta[EXPANSION_KEY] == "\n".join(q) for d, q in zip(docs, queries, strict=True))


def _expanded() -> list[Document]:
    return [
        Document(id="a", content="Aspirin lowers fever in adults.", meta={"lang": "en", EXPANSION_KEY: "antipyretic"}),
        Document(id="b", content="Sleep consolidates memory.", meta={"lang": "en"}),
    ]


def test_elasticsearch_bm25_sees_the_expansion(es_url):
    store = ElasticsearchStore(es_url, index=f"lens-rag-test-exp-{uuid.uuid4().hex[:10]}", progress=False)
    try:
        store.write_documents([Document(id="c", content="Plain first write maps no expansion field.")])
        assert store.search_bm25("plain", top_k=3)[0].id == "c"
        store.write_documents(_expanded())  # the field is added to the existing index
        hits = store.search_bm25("antipyretic", top_k=3, filters={"lang": "en"})
        assert [h.id for h in hits] == ["a"]
        assert hits[0].document.content == "Aspirin lowers fever in adults."
        assert hits[0].document.meta == {"lang": "en", EXPANSION_KEY: "antipyretic"}
        assert store.get_documents(["a"])[0].meta[EXPANSION_KEY] == "antipyretic"
        assert [h.id for h in store.search_bm25("memory", top_k=3)] == ["b"]  # content still searched
        reopened = ElasticsearchStore(es_url, index=store.index)  # learns the field from the mapping
        assert [h.id for h in reopened.search_bm25("antipyretic", top_k=3)] == ["a"]
        reopened.close()
    finally:
        store.delete_index()
        store.close()


def test_elasticsearch_async_write_maps_the_expansion(es_url):
    store = ElasticsearchStore(es_url, index=f"lens-rag-test-exp-{uuid.uuid4().hex[:10]}", progress=False)

    async def run() -> list[str]:
        try:
            await store.write_documents_async(_expanded())
            return [h.id for h in await store.search_bm25_async("antipyretic", top_k=3)]
        finally:
            await store.close_async()

    try:
        assert asyncio.run(run()) == ["a"]
    finally:
        store.delete_index()
        store.close()


def test_cli_index_with_llm_expansion(llm_url, llm_model, tmp_path, monkeypatch, capsys):
    import json

    from lens_rag.cli import main

    monkeypatch.setenv("LENS_RAG_CACHE", str(tmp_path / "cache"))  # a fresh generation cache
    src = tmp_path / "docs.jsonl"
    src.write_text(json.dumps({"id": "bc1", "text": PASSAGES[0].content}))  # one passage: generation is slow here
    args = ["index", str(src), "--store", str(tmp_path / "s"), "--no-sparse", "--no-dense", "--no-progress"]
    args += ["--expand", "doc2query", "--expansion-source", "llm", "--expansion-queries", "1", "--llm-url", llm_url]
    assert main([*args, *(["--llm-model", llm_model] if llm_model else [])]) == 0
    assert "doc2query (llm:" in capsys.readouterr().err
    from lens_rag.stores.embedded import EmbeddedStore

    store = EmbeddedStore(tmp_path / "s", progress=False)
    docs = store.filter_documents()
    store.close()
    assert [d.id for d in docs] == ["bc1"]
    assert all(d.meta.get(EXPANSION_KEY, "").strip() for d in docs)
