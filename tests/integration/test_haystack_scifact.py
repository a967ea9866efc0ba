"""The Haystack hybrid pipeline on SciFact: same results as the core, on the embedded store and on Elasticsearch.

Real SPLADE-tiny and MiniLM vectors (through the Haystack document embedders and lens-rag's embedding
cache, so a corpus encoded once is never encoded again), a real Elasticsearch. Compared on the first 20
test queries:

- the Haystack `LensRagHybridRetriever` over `LensRagDocumentStore` returns exactly the core
  `HybridRetriever`'s top-10 (ids and order) — the adapter adds nothing and loses nothing;
- the same pipeline over Elasticsearch (lens-rag's ES store behind `LensRagDocumentStore`) returns exactly the
  core's top-10 on that store, and the embedded variant's top-10 ids up to the two backends' BM25 differences
  (measured: 17/20 identical top-10 sets, 195/200 shared ids; see the assertion);
- over elasticsearch-haystack's own `ElasticsearchDocumentStore` (BM25 without fuzziness, its kNN, our
  8.11+ sparse retriever) the top-10 ids agree as far as its different BM25 allows (see the assertion).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from haystack import Document
from haystack_integrations.components.embedders.lens_rag import (
    LensRagDenseDocumentEmbedder,
    LensRagSparseDocumentEmbedder,
)
from haystack_integrations.components.retrievers.lens_rag import LensRagHybridRetriever
from haystack_integrations.document_stores.lens_rag import LensRagDocumentStore

from lens_rag.indexing import default_cache_dir

pytestmark = pytest.mark.integration

N_QUERIES = 20


@pytest.fixture(scope="module")
def embedded_docs(scifact: Any) -> list[Document]:
    docs = [Document(id=d.id, content=d.content, meta=d.meta) for d in scifact.corpus]
    cache = str(default_cache_dir() / "embeddings")
    for embedder in (
        LensRagSparseDocumentEmbedder(cache_dir=cache, progress_bar=False),
        LensRagDenseDocumentEmbedder(cache_dir=cache, progress_bar=False),
    ):
        embedder.warm_up()
        docs = embedder.run(docs)["documents"]
    return docs


@pytest.fixture(scope="module")
def queries(scifact: Any) -> list[str]:
    return list(scifact.queries.values())[:N_QUERIES]


def _top10(store: Any, queries: list[str], **kwargs: Any) -> list[list[str]]:
    hybrid = LensRagHybridRetriever(document_store=store, top_k=10, **kwargs)
    hybrid.warm_up()
    return [[d.id for d in hybrid.run(query=q)["documents"]] for q in queries]


def _core_hybrid(store: LensRagDocumentStore, encoders: Any) -> Any:
    from lens_rag import BM25Retriever, DenseRetriever, HybridRetriever, SparseRetriever

    s = store.store
    parts = [BM25Retriever(s), SparseRetriever(s, encoders.sparse), DenseRetriever(s, encoders.dense)]
    return HybridRetriever(parts, fusion="minmax", candidate_k=100)


@pytest.fixture(scope="module")
def embedded_top10(embedded_docs: list[Document], queries: list[str], tmp_path_factory: Any) -> list[list[str]]:
    store = LensRagDocumentStore(str(tmp_path_factory.mktemp("scifact") / "store"))
    store.write_documents(embedded_docs)
    yield _top10(store, queries)
    store.close()


def test_haystack_hybrid_equals_the_core_hybrid(
    embedded_docs: list[Document], queries: list[str], embedded_top10: list[list[str]], tmp_path: Path
) -> None:
    from lens_rag.components import Encoders

    store = LensRagDocumentStore(str(tmp_path / "store"))
    store.write_documents(embedded_docs)
    core = _core_hybrid(store, Encoders(progress=False))
    assert [[h.id for h in core.retrieve(q, top_k=10)] for q in queries] == embedded_top10
    store.close()


def test_elasticsearch_variant_returns_the_embedded_top10(
    es_url: str, embedded_docs: list[Document], queries: list[str], embedded_top10: list[list[str]]
) -> None:
    from lens_rag.components import Encoders

    index = f"lens-rag-haystack-{uuid.uuid4().hex[:10]}"
    store = LensRagDocumentStore(store_config={"type": "elasticsearch_store", "url": es_url, "index": index})
    try:
        store.write_documents(embedded_docs)
        es_top10 = _top10(store, queries)
        core = _core_hybrid(store, Encoders(progress=False))
        assert [[h.id for h in core.retrieve(q, top_k=10)] for q in queries] == es_top10  # the adapter adds nothing
    finally:
        store.store.delete_index()
        store.close()
    pairs = list(zip(es_top10, embedded_top10, strict=True))
    same = sum(a == b for a, b in pairs)
    same_sets = sum(set(a) == set(b) for a, b in pairs)
    overlap = sum(len(set(a) & set(b)) for a, b in pairs)
    print(
        f"ES vs embedded: identical top-10 lists {same}/{N_QUERIES}, id sets {same_sets}/{N_QUERIES}, overlap {overlap}"
    )
    # The backends' BM25 tokenize differently (bm25s + Snowball vs Lucene's English analyzer), so fused scores
    # differ slightly and a document at the top-10 border can swap: measured 17/20 identical sets, overlap 195/200.
    assert same_sets >= 16 and overlap >= 0.95 * 10 * N_QUERIES


def test_elasticsearch_haystack_store_variant(
    es_url: str, embedded_docs: list[Document], queries: list[str], embedded_top10: list[list[str]]
) -> None:
    from haystack.document_stores.types import DuplicatePolicy
    from haystack_integrations.document_stores.elasticsearch import ElasticsearchDocumentStore

    auth: dict[str, Any] = {}
    if os.environ.get("ES_API_KEY"):
        auth["api_key"] = os.environ["ES_API_KEY"]
    elif os.environ.get("ES_USERNAME"):
        auth["basic_auth"] = (os.environ["ES_USERNAME"], os.environ.get("ES_PASSWORD", ""))
    mapping = {  # elasticsearch-haystack's default mapping, with the English analyzer lens-rag's ES store uses
        "properties": {
            "embedding": {"type": "dense_vector", "index": True, "similarity": "cosine"},
            "content": {"type": "text", "analyzer": "english"},
        },
        "dynamic_templates": [
            {"strings": {"path_match": "*", "match_mapping_type": "string", "mapping": {"type": "keyword"}}}
        ],
    }
    index = f"lens-rag-haystack-es-{uuid.uuid4().hex[:10]}"
    store = ElasticsearchDocumentStore(
        hosts=es_url, index=index, custom_mapping=mapping, sparse_vector_field="sparse_vec", **auth
    )
    try:
        store.write_documents(embedded_docs, policy=DuplicatePolicy.OVERWRITE, refresh=True)
        es_top10 = _top10(store, queries)
    finally:
        store.client.indices.delete(index=index, ignore_unavailable=True)
        store.close()
    overlap = [len(set(a) & set(b)) for a, b in zip(es_top10, embedded_top10, strict=True)]
    print(f"elasticsearch-haystack store vs embedded: top-10 overlap per query {overlap}")
    # Its BM25 is a multi_match over every field (titles are keyword fields), so a few positions move.
    assert sum(overlap) >= 0.9 * 10 * N_QUERIES
