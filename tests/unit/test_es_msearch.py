"""Multi-search request building/parsing (pure) and when HybridRetriever takes the one-round-trip path."""

from __future__ import annotations

import asyncio

import pytest

import lens_rag.retrieval as retrieval
from lens_rag.documents import Document, ScoredDocument, SourceHit
from lens_rag.errors import ConfigurationError, StoreError
from lens_rag.retrieval import BM25Retriever, DenseRetriever, HybridRetriever, SparseRetriever
from lens_rag.sparse import SparseVector
from lens_rag.stores.elasticsearch import queries
from lens_rag.stores.elasticsearch.msearch import (
    SearchRequest,
    check_requests,
    msearch_lines,
    parse_responses,
    request_bodies,
)

pytestmark = pytest.mark.unit

SPARSE = SparseVector.from_arrays([3, 7], [1.5, 0.5])


def _bodies(requests):
    return request_bodies(
        requests,
        bm25=queries.bm25_request,
        sparse=lambda q, k, f: queries.sparse_request(q, k, f),
        dense=lambda q, k, f: None if q == [0.0] else queries.dense_request(q, k, f),
    )


def test_bodies_are_the_single_search_bodies_and_lines_pair_header_and_body():
    requests = check_requests(
        [("bm25", "aspirin", 5, {"lang": "en"}), SearchRequest("sparse", SPARSE, 7), SearchRequest("dense", [0.1, 0.2])]
    )
    bodies = _bodies(requests)
    assert bodies[0] == queries.bm25_request("aspirin", 5, {"lang": "en"})
    assert bodies[1] == queries.sparse_request(SPARSE, 7)
    assert bodies[2] == queries.dense_request([0.1, 0.2], 10)
    lines = msearch_lines(bodies)
    assert lines[0::2] == [{}, {}, {}]
    assert lines[1::2] == [{**b, "track_total_hits": False} for b in bodies if b is not None]


def test_requests_needing_no_search_are_not_sent_and_come_back_empty():
    requests = check_requests(
        [
            SearchRequest("sparse", SparseVector.from_arrays([], []), 5),
            SearchRequest("dense", [0.0], 5),
            SearchRequest("bm25", "aspirin", 0),  # top_k=0 returns nothing, as the single searches do
        ]
    )
    assert _bodies(requests) == [None, None, None]
    requests = check_requests([SearchRequest("dense", [0.0]), SearchRequest("bm25", "fever", 2)])
    bodies = _bodies(requests)
    assert len(msearch_lines(bodies)) == 2
    hit = {"_id": "d1", "_score": 2.0, "_source": {"content": "fever"}}
    results = parse_responses(
        {"responses": [{"hits": {"hits": [hit]}, "status": 200}]},
        requests,
        bodies,
        index="docs",
        dense_similarity="cosine",
    )
    assert results[0] == []
    assert [(h.id, h.score, h.rank, h.sources) for h in results[1]] == [("d1", 2.0, 1, {"bm25": SourceHit(2.0, 1)})]


def test_dense_scores_are_mapped_back_to_the_similarity():
    requests = check_requests([SearchRequest("dense", [0.1, 0.2], 2), SearchRequest("sparse", SPARSE, 2)])
    bodies = _bodies(requests)
    hits = {"hits": {"hits": [{"_id": "a", "_score": 0.75, "_source": {}}]}}
    dense, sparse = parse_responses(
        {"responses": [hits, hits]}, requests, bodies, index="docs", dense_similarity="cosine"
    )
    assert dense[0].score == pytest.approx(0.5) and "dense" in dense[0].sources
    assert sparse[0].score == pytest.approx(0.75) and "sparse" in sparse[0].sources


def test_a_failed_search_in_the_batch_is_a_store_error_naming_it():
    requests = check_requests([SearchRequest("bm25", "a"), SearchRequest("sparse", SPARSE)])
    bodies = _bodies(requests)
    error = {"error": {"type": "search_phase_execution_exception", "reason": "all shards failed"}, "status": 400}
    with pytest.raises(StoreError, match=r"index 'docs' \(sparse search in a multi-search\).*HTTP 400.*all shards"):
        parse_responses(
            {"responses": [{"hits": {"hits": []}}, error]}, requests, bodies, index="docs", dense_similarity=None
        )
    with pytest.raises(StoreError, match=r"answered 1 responses to a multi-search of 2 searches"):
        parse_responses({"responses": [error]}, requests, bodies, index="docs", dense_similarity=None)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (("knn", "x"), r"requests\[0\]\.kind must be one of \('bm25', 'sparse', 'dense'\), got 'knn'"),
        (("bm25", SPARSE), r"requests\[0\] is a bm25 search, so its query must be text, got SparseVector"),
        (("sparse", "text"), r"requests\[0\] is a sparse search, so its query must be a vector .*got str"),
        (("dense", "text"), r"requests\[0\] is a dense search, so its query must be a vector"),
        (("sparse", {1: float("nan")}), r"requests\[0\]\.query"),
        (("bm25", "x", -1), r"requests\[0\]\.top_k"),
        (("bm25", "x", 2.5), r"requests\[0\]\.top_k"),
        (("bm25", "x", 3, {"year": {"$regex": "x"}}), r"regex"),
    ],
)
def test_malformed_requests_are_refused(request_, message):
    with pytest.raises(ConfigurationError, match=message):
        check_requests([request_])


# --- the HybridRetriever fast path -----------------------------------------------------------------------------------


class FakeStore:
    """Deterministic per-kind results; `search_many` answers from the same single searches, counting calls."""

    def __init__(self, *, many: bool = True) -> None:
        self.single_calls: list[str] = []
        self.many_calls: list[list[SearchRequest]] = []
        if not many:
            self.search_many = None  # type: ignore[assignment]

    def _hits(self, kind: str, seed: float, top_k: int) -> list[ScoredDocument]:
        out = []
        for rank in range(1, min(top_k, 6) + 1):
            doc_id = f"d{(int(seed * 7) + rank * (3 if kind == 'dense' else 2 if kind == 'sparse' else 1)) % 9}"
            if any(h.id == doc_id for h in out):
                continue
            score = 10.0 / rank + seed
            out.append(ScoredDocument(Document(id=doc_id, content=doc_id), score, rank, {kind: SourceHit(score, rank)}))
        return out

    def search_bm25(self, query, top_k=10, filters=None):
        self.single_calls.append("bm25")
        return self._hits("bm25", len(query) / 10, top_k)

    def search_sparse(self, query, top_k=10, filters=None):
        self.single_calls.append("sparse")
        return self._hits("sparse", float(query.values.sum()), top_k)

    def search_dense(self, query, top_k=10, filters=None):
        self.single_calls.append("dense")
        return self._hits("dense", float(sum(query)), top_k)

    def search_many(self, requests):
        self.many_calls.append(list(requests))
        single = {"bm25": self.search_bm25, "sparse": self.search_sparse, "dense": self.search_dense}
        results = [single[r.kind](r.query, top_k=r.top_k, filters=r.filters) for r in requests]
        self.single_calls.clear()
        return results

    async def search_many_async(self, requests):
        return self.search_many(requests)


class Sparse:
    def encode_queries(self, texts):
        return [SparseVector.from_arrays([1, 2], [0.5, float(len(t) % 5) + 0.1]) for t in texts]


class Dense:
    dimension = 2

    def encode_queries(self, texts):
        return [[0.3, float(len(t) % 3)] for t in texts]


def _members(store):
    return [BM25Retriever(store), SparseRetriever(store, Sparse(), name="lens"), DenseRetriever(store, Dense())]


@pytest.mark.parametrize("parallel", [True, False])
def test_fast_path_sends_one_search_many_and_fuses_the_same(monkeypatch, parallel):
    monkeypatch.setattr(retrieval, "PARALLEL_QUERY_ENCODING", parallel)
    fast_store, slow_store = FakeStore(), FakeStore(many=False)
    fast = HybridRetriever(_members(fast_store), candidate_k=5).retrieve("aspirin fever", top_k=4, filters={"a": 1})
    slow = HybridRetriever(_members(slow_store), candidate_k=5).retrieve("aspirin fever", top_k=4, filters={"a": 1})
    assert len(fast_store.many_calls) == 1 and fast_store.single_calls == []
    assert [(r.kind, r.top_k, r.filters) for r in fast_store.many_calls[0]] == [
        ("bm25", 5, {"a": 1}),
        ("sparse", 5, {"a": 1}),
        ("dense", 5, {"a": 1}),
    ]
    assert slow_store.single_calls == ["bm25", "sparse", "dense"]
    assert [(h.id, h.score, h.sources) for h in fast] == [(h.id, h.score, h.sources) for h in slow]
    assert {"bm25", "lens", "dense"} == set().union(*(h.sources for h in fast))


def test_fast_path_async_matches_sync():
    store = FakeStore()
    hybrid = HybridRetriever(_members(store), candidate_k=5)
    sync = hybrid.retrieve("vaccine", top_k=3)
    result = asyncio.run(hybrid.retrieve_async("vaccine", top_k=3))
    assert [(h.id, h.score) for h in result] == [(h.id, h.score) for h in sync]
    assert len(store.many_calls) == 2


def test_fast_path_is_taken_only_for_plain_members_over_one_store():
    store, other = FakeStore(), FakeStore()

    class CustomBM25(BM25Retriever):
        pass

    cases = {
        "two stores": [BM25Retriever(store), DenseRetriever(other, Dense())],
        "a subclass may override retrieve": [CustomBM25(store), DenseRetriever(store, Dense())],
        "a single member": [BM25Retriever(store)],
    }
    for name, members in cases.items():
        assert retrieval._one_trip_store(members, "search_many") is None, name
        HybridRetriever(members, candidate_k=3).retrieve("q", top_k=2)
    assert store.many_calls == [] and other.many_calls == []
    no_many = FakeStore(many=False)
    assert retrieval._one_trip_store([BM25Retriever(no_many), BM25Retriever(no_many, name="b")], "search_many") is None
    assert retrieval._one_trip_store(_members(store), "search_many") is store


def test_encoders_run_side_by_side_only_once_each_has_loaded(monkeypatch):
    import threading

    monkeypatch.setattr(retrieval, "PARALLEL_QUERY_ENCODING", True)
    threads: list[str] = []

    class Recording(Dense):
        def encode_queries(self, texts):
            threads.append(threading.current_thread().name)
            return super().encode_queries(texts)

    class RecordingSparse(Sparse):
        def encode_queries(self, texts):
            threads.append(threading.current_thread().name)
            return super().encode_queries(texts)

    store = FakeStore()
    members = [BM25Retriever(store), SparseRetriever(store, RecordingSparse()), DenseRetriever(store, Recording())]
    first = retrieval._encode_side_by_side(members, "q")
    assert threads == [threading.current_thread().name] * 2  # cold: one after another, in the caller's thread
    threads.clear()
    second = retrieval._encode_side_by_side(members, "q")
    assert len(threads) == 2 and all(t.startswith("lens-rag-encode") for t in threads)
    assert first[0] == second[0] == "q" and first[2] == second[2]
    assert first[1].indices.tolist() == second[1].indices.tolist()
