"""Client-side SPLADE vectors in a langchain-elasticsearch index, queried on a real 8.12 server."""

from __future__ import annotations

import uuid

import pytest

pytest.importorskip("langchain_elasticsearch")

from elasticsearch import AsyncElasticsearch, Elasticsearch
from langchain_elasticsearch import DenseVectorStrategy, ElasticsearchStore
from langchain_lens_rag import HybridRetriever, LensRagEmbeddings
from langchain_lens_rag.elasticsearch import (
    ElasticsearchSparseRetriever,
    add_sparse_vectors,
    doc_with_id,
)

from lens_rag.encoders.dense import SentenceTransformerDenseEncoder
from lens_rag.encoders.mlm import MLMSparseEncoder

pytestmark = pytest.mark.integration

TEXTS = [
    ("Scurvy is caused by a lack of vitamin C in the diet.", {"topic": "nutrition"}),
    ("Rickets in children comes from too little vitamin D.", {"topic": "nutrition"}),
    ("Aspirin lowers the risk of a second heart attack.", {"topic": "cardiology"}),
    ("Magma reaches the surface through volcanic vents.", {"topic": "geology"}),
    ("Photosynthesis turns light, water and carbon dioxide into sugar.", {"topic": "biology"}),
]


@pytest.fixture(scope="module")
def sparse_encoder():
    return MLMSparseEncoder(progress=False)


@pytest.fixture(scope="module")
def lc_index(es_url, sparse_encoder):
    client = Elasticsearch(es_url)
    index = f"lens-rag-lc-es-{uuid.uuid4().hex[:10]}"
    store = ElasticsearchStore(
        index,
        embedding=LensRagEmbeddings(SentenceTransformerDenseEncoder(progress=False)),
        client=client,
        strategy=DenseVectorStrategy(),
    )
    store.add_texts([t for t, _ in TEXTS], metadatas=[m for _, m in TEXTS], ids=[f"d{i}" for i in range(len(TEXTS))])
    assert add_sparse_vectors(client, index, sparse_encoder) == len(TEXTS)
    yield client, index, store
    client.indices.delete(index=index, ignore_unavailable=True)
    client.close()


def test_sparse_retriever_on_a_langchain_index(lc_index, sparse_encoder):
    client, index, _ = lc_index
    retriever = ElasticsearchSparseRetriever(client=client, index_name=index, encoder=sparse_encoder, k=2)
    docs = retriever.invoke("What causes scurvy?")
    assert len(docs) == 2
    assert docs[0].id == "d0"
    assert docs[0].metadata["topic"] == "nutrition"
    assert docs[0].metadata["sources"]["sparse"]["rank"] == 1
    assert len(retriever.invoke("What causes scurvy?", k=1)) == 1
    only_geology = retriever.invoke("volcano", k=5, filter=[{"term": {"metadata.topic.keyword": "geology"}}])
    assert [d.id for d in only_geology] == ["d3"]


async def test_sparse_retriever_async_honours_k(lc_index, sparse_encoder, es_url):
    client, index, _ = lc_index
    async_client = AsyncElasticsearch(es_url)
    try:
        retriever = ElasticsearchSparseRetriever(
            client=client, async_client=async_client, index_name=index, encoder=sparse_encoder
        )
        docs = await retriever.ainvoke("vitamin deficiency", k=3)
        assert len(docs) == 3 and docs[0].id in {"d0", "d1"}
    finally:
        await async_client.close()


def test_hybrid_with_langchain_elasticsearch_dense_merges_by_id(lc_index, sparse_encoder):
    client, index, store = lc_index
    sparse = ElasticsearchSparseRetriever(client=client, index_name=index, encoder=sparse_encoder, k=5)
    dense = store.as_retriever(search_kwargs={"k": 5, "doc_builder": doc_with_id})
    hybrid = HybridRetriever(retrievers=[sparse, dense], k=3)
    docs = hybrid.invoke("heart attack prevention")
    assert docs[0].id == "d2"
    assert len({d.id for d in docs}) == len(docs) == 3
    assert len(docs[0].metadata["sources"]) == 2
