"""`search_many` (one `_msearch`) and the hybrid fast path against a real server: same results as one by one."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid

import numpy as np
import pytest

from lens_rag.documents import Document, ScoredDocument
from lens_rag.errors import ConfigurationError
from lens_rag.fusion import fuse
from lens_rag.retrieval import BM25Retriever, DenseRetriever, HybridRetriever, SparseRetriever
from lens_rag.sparse import SparseVector
from lens_rag.stores.elasticsearch import ElasticsearchStore
from lens_rag.stores.elasticsearch.msearch import SearchRequest

pytestmark = pytest.mark.integration

DIMS = 16
VOCAB = 500
WORDS = "aspirin fever protein cell cancer vaccine gene virus heart brain dose trial mouse blood lung".split()
TOKEN = re.compile(r"[a-z]+")


def _bucket(word: str, salt: str, size: int) -> int:
    return int(hashlib.sha1((salt + word).encode()).hexdigest(), 16) % size


class HashSparse:
    """A deterministic lexicon-style encoder: one hashed term per word, weight 1 + log(tf)."""

    name = "hash-sparse"

    def encode(self, text: str) -> SparseVector:
        counts: dict[int, int] = {}
        for w in TOKEN.findall(text.lower()):
            i = _bucket(w, "s", VOCAB)
            counts[i] = counts.get(i, 0) + 1
        return SparseVector.from_arrays(list(counts), [1.0 + np.log(c) for c in counts.values()])

    def encode_queries(self, texts: list[str]) -> list[SparseVector]:
        return [self.encode(t) for t in texts]


class HashDense:
    """A deterministic dense encoder: the normalised sum of a fixed random vector per word."""

    name = "hash-dense"
    dimension = DIMS

    def encode(self, text: str) -> list[float]:
        v = np.zeros(DIMS)
        for w in TOKEN.findall(text.lower()):
            v += np.random.default_rng(_bucket(w, "d", 1 << 30)).normal(size=DIMS)
        n = np.linalg.norm(v)
        return (v / n if n else v + 1.0).tolist()

    def encode_queries(self, texts: list[str]) -> list[list[float]]:
        return [self.encode(t) for t in texts]


def _corpus(n: int = 80) -> list[Document]:
    rng = np.random.default_rng(3)
    docs = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS, size=6)) + f" report {i}"
        docs.append(
            Document(
                id=f"m-{i}",
                content=text,
                meta={"year": 2000 + i % 7, "lang": "en" if i % 3 else "de"},
                embedding=HashDense().encode(text),
                sparse_embedding=HashSparse().encode(text),
            )
        )
    return docs


@pytest.fixture(scope="module")
def store(es_url):
    s = ElasticsearchStore(es_url, index=f"lens-rag-msearch-{uuid.uuid4().hex[:10]}", progress=False)
    s.write_documents(_corpus())
    yield s
    s.delete_index()
    s.close()


def _same(a: list[ScoredDocument], b: list[ScoredDocument]) -> None:
    assert [(h.id, h.rank) for h in a] == [(h.id, h.rank) for h in b]
    assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=1e-6, abs=1e-9)
    assert [sorted(h.sources) for h in a] == [sorted(h.sources) for h in b]


@pytest.mark.parametrize("filters", [None, {"lang": "en"}, {"year": {"gte": 2002, "lt": 2005}}])
def test_search_many_equals_the_single_searches(store, filters):
    text = "aspirin fever vaccine trial"
    sparse, dense = HashSparse().encode(text), HashDense().encode(text)
    requests = [
        SearchRequest("bm25", text, 20, filters),
        SearchRequest("sparse", sparse, 15, filters),
        SearchRequest("dense", dense, 10, filters),
        ("bm25", "heart lung", 5, filters),  # a plain tuple works too
    ]
    many = store.search_many(requests)
    assert len(many) == 4 and all(many)
    _same(many[0], store.search_bm25(text, top_k=20, filters=filters))
    _same(many[1], store.search_sparse(sparse, top_k=15, filters=filters))
    _same(many[2], store.search_dense(dense, top_k=10, filters=filters))
    _same(many[3], store.search_bm25("heart lung", top_k=5, filters=filters))
    assert all(h.document.content and h.document.embedding is None for hits in many for h in hits)


def test_search_many_edge_cases(store):
    assert store.search_many([]) == []
    empty = SparseVector.from_arrays([], [])
    assert store.search_many([SearchRequest("sparse", empty, 5)]) == [[]]  # nothing sent, as search_sparse
    mixed = store.search_many([SearchRequest("sparse", empty, 5), SearchRequest("bm25", "virus", 3)])
    assert mixed[0] == [] and [h.id for h in mixed[1]] == [h.id for h in store.search_bm25("virus", top_k=3)]
    with pytest.raises(ConfigurationError, match=r"query vector has 3 dimensions but index .* holds 16"):
        store.search_many([SearchRequest("bm25", "virus", 3), SearchRequest("dense", [0.1, 0.2, 0.3], 3)])
    with pytest.raises(ConfigurationError, match=r"requests\[0\]\.kind must be one of"):
        store.search_many([SearchRequest("fuzzy", "virus", 3)])  # type: ignore[arg-type]
    missing = ElasticsearchStore(store.settings.url, index=f"lens-rag-missing-{uuid.uuid4().hex[:8]}")
    assert missing.search_many([SearchRequest("bm25", "virus", 3)]) == [[]]


def _hybrid(store: ElasticsearchStore, **kwargs) -> HybridRetriever:
    return HybridRetriever(
        [BM25Retriever(store), SparseRetriever(store, HashSparse()), DenseRetriever(store, HashDense())],
        candidate_k=30,
        **kwargs,
    )


def _sequential(hybrid: HybridRetriever, query: str, top_k: int, filters=None) -> list[ScoredDocument]:
    """What HybridRetriever did before the fast path: each member on its own, then fusion."""
    depth = max(hybrid.candidate_k, top_k)
    lists = {r.name: r.retrieve(query, top_k=depth, filters=filters) for r in hybrid.retrievers}
    return fuse(lists, hybrid.fusion, weights=hybrid.weights, rrf_k=hybrid.rrf_k, top_k=top_k)


@pytest.mark.parametrize("fusion", ["minmax", "rrf"])
@pytest.mark.parametrize("filters", [None, {"lang": "de"}])
def test_hybrid_fast_path_is_one_msearch_with_identical_results(store, fusion, filters, caplog):
    hybrid = _hybrid(store, fusion=fusion)
    for query in ("aspirin fever", "cancer gene mouse", "report 17 blood"):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="elastic_transport.transport"):
            fast = hybrid.retrieve(query, top_k=10, filters=filters)
        logged = [r.getMessage() for r in caplog.records if r.name == "elastic_transport.transport"]
        searches = [m for m in logged if "/_search" in m or "/_msearch" in m]
        assert len(searches) == 1 and "/_msearch" in searches[0], logged
        _same(fast, _sequential(hybrid, query, 10, filters))
        assert set(fast[0].sources) <= {"bm25", "sparse", "dense"} and fast[0].sources


def test_hybrid_fast_path_async_and_renamed_members(store):
    hybrid = HybridRetriever(
        [
            BM25Retriever(store, name="lexical"),
            SparseRetriever(store, HashSparse(), name="splade", query_top_k=3),
            DenseRetriever(store, HashDense(), name="minilm"),
        ],
        weights={"lexical": 0.5, "splade": 1.0, "minilm": 2.0},
        candidate_k=25,
    )
    query = "vaccine virus lung dose"
    expected = _sequential(hybrid, query, 7)
    _same(hybrid.retrieve(query, top_k=7), expected)

    async def run() -> list[ScoredDocument]:
        try:
            return await hybrid.retrieve_async(query, top_k=7)
        finally:
            await store.close_async()

    _same(asyncio.run(run()), expected)
    assert {"lexical", "splade", "minilm"} >= set(expected[0].sources)
