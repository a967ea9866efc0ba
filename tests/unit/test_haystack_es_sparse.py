"""`LensRagElasticsearchSparseRetriever` over elasticsearch-haystack's store, with a fake client (no server)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from haystack.dataclasses import SparseEmbedding
from haystack_integrations.components.retrievers.lens_rag import LensRagElasticsearchSparseRetriever
from haystack_integrations.document_stores.elasticsearch import ElasticsearchDocumentStore

from lens_rag.errors import ConfigurationError

pytestmark = pytest.mark.unit

QUERY = SparseEmbedding(indices=[7, 3], values=[0.5, 2.0])


class FakeClient:
    def __init__(self, version: str) -> None:
        self.version = version
        self.bodies: list[dict[str, Any]] = []

    def info(self) -> dict[str, Any]:
        return {"version": {"number": self.version}}

    def search(self, index: str, **body: Any) -> dict[str, Any]:
        self.bodies.append({"index": index, **body})
        hit = {"_id": "a", "_score": 1.5, "_source": {"id": "a", "content": "alpha", "lang": "en"}}
        return {"hits": {"hits": [hit], "total": {"value": 1}}}


class FakeAsyncClient(FakeClient):
    async def info(self) -> dict[str, Any]:  # type: ignore[override]
        return super().info()

    async def search(self, index: str, **body: Any) -> dict[str, Any]:  # type: ignore[override]
        return super().search(index, **body)


def _store(client: FakeClient | None = None) -> ElasticsearchDocumentStore:
    store = ElasticsearchDocumentStore(hosts="http://127.0.0.1:1", index="docs", sparse_vector_field="sv")
    store._client = client  # type: ignore[assignment]
    return store


def test_term_queries_before_8_15_on_the_users_field_and_filters() -> None:
    client = FakeClient("8.12.2")
    retriever = LensRagElasticsearchSparseRetriever(document_store=_store(client), top_k=5)
    docs = retriever.run(QUERY, filters={"field": "meta.lang", "operator": "==", "value": "en"})["documents"]
    assert [(d.id, d.score, d.meta) for d in docs] == [("a", 1.5, {"lang": "en"})]
    body = client.bodies[0]
    assert body["index"] == "docs" and body["size"] == 5
    assert body["query"]["bool"]["must"] == [
        {
            "bool": {
                "should": [
                    {"term": {"sv": {"value": "3", "boost": 2.0}}},
                    {"term": {"sv": {"value": "7", "boost": 0.5}}},
                ],
                "minimum_should_match": 1,
            }
        }
    ]
    # elasticsearch-haystack's own translation of the filter (meta is flattened into _source)
    assert body["query"]["bool"]["filter"] == {"bool": {"must": {"term": {"lang": "en"}}}}
    assert body["_source"] == {"excludes": ["embedding", "sv"]}


def test_sparse_vector_query_from_8_15_and_version_asked_once() -> None:
    client = FakeClient("8.15.0")
    retriever = LensRagElasticsearchSparseRetriever(document_store=_store(client), return_embedding=True)
    retriever.run(QUERY)
    retriever.run(QUERY, top_k=0)
    retriever.run(QUERY, top_k=3)
    clause = client.bodies[0]["query"]["bool"]["must"][0]
    assert clause == {"sparse_vector": {"field": "sv", "query_vector": {"3": 2.0, "7": 0.5}, "prune": False}}
    assert "_source" not in client.bodies[0] and "filter" not in client.bodies[0]["query"]["bool"]
    assert [b["size"] for b in client.bodies] == [10, 3]  # top_k=0 sent nothing


def test_async_uses_the_async_client() -> None:
    store = _store()
    store._async_client = FakeAsyncClient("8.11.0")  # type: ignore[assignment]
    retriever = LensRagElasticsearchSparseRetriever(document_store=store)
    docs = asyncio.run(retriever.run_async(QUERY))["documents"]
    assert docs[0].id == "a" and "bool" in store._async_client.bodies[0]["query"]["bool"]["must"][0]


def test_needs_a_sparse_field_and_round_trips() -> None:
    with pytest.raises(ConfigurationError, match="sparse_vector_field"):
        LensRagElasticsearchSparseRetriever(document_store=ElasticsearchDocumentStore(hosts="http://127.0.0.1:1"))
    with pytest.raises(ValueError, match="ElasticsearchDocumentStore"):
        LensRagElasticsearchSparseRetriever(document_store=object())  # type: ignore[arg-type]
    retriever = LensRagElasticsearchSparseRetriever(document_store=_store(), top_k=4, query_mode="term")
    back = LensRagElasticsearchSparseRetriever.from_dict(retriever.to_dict())
    assert back.to_dict() == retriever.to_dict() and back.document_store._sparse_vector_field == "sv"
