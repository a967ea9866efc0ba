"""ElasticsearchStore against a real server (ES_URL; CI starts one with scripts/elasticsearch.sh)."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from lens_rag.documents import Document
from lens_rag.errors import BulkWriteError, ConfigurationError, StoreError
from lens_rag.sparse import SparseVector
from lens_rag.stores.elasticsearch import ElasticsearchStore

pytestmark = pytest.mark.integration

DIMS = 8
RNG = np.random.default_rng(7)
WORDS = ["aspirin", "fever", "protein", "cell", "cancer", "vaccine", "gene", "virus", "heart", "brain"]


def _corpus(n: int = 40) -> list[Document]:
    docs = []
    for i in range(n):
        words = [WORDS[j] for j in RNG.choice(len(WORDS), size=4, replace=False)]
        sparse = SparseVector.from_arrays(RNG.choice(200, size=12, replace=False), RNG.uniform(0.1, 3.0, size=12))
        docs.append(
            Document(
                id=f"doc-{i}",
                content=" ".join(words) + f" study number {i}",
                meta={"year": 2000 + i % 10, "lang": "en" if i % 2 else "de", "tags": ["a", f"t{i % 3}"]},
                embedding=RNG.normal(size=DIMS).astype(np.float32).tolist(),
                sparse_embedding=sparse,
            )
        )
    return docs


@pytest.fixture
def make_store(es_url):
    stores: list[ElasticsearchStore] = []

    def make(**kwargs) -> ElasticsearchStore:
        kwargs.setdefault("index", f"lens-rag-test-{uuid.uuid4().hex[:10]}")
        store = ElasticsearchStore(es_url, progress=False, **kwargs)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.delete_index()
        store.close()


@pytest.fixture
def corpus() -> list[Document]:
    return _corpus()


@pytest.fixture
def store(make_store, corpus) -> ElasticsearchStore:
    s = make_store()
    s.write_documents(corpus)
    return s


def test_mapping_is_created_once_and_checked(make_store):
    store = make_store()
    store.ensure_index(DIMS)
    store.ensure_index(DIMS)  # idempotent
    mapping = store.client.indices.get_mapping(index=store.index)[store.index]["mappings"]
    props = mapping["properties"]
    assert props["content"] == {"type": "text", "analyzer": "english"}
    assert props["sparse_embedding"]["type"] == "sparse_vector"
    assert props["embedding"]["dims"] == DIMS and props["embedding"]["similarity"] == "cosine"
    again = ElasticsearchStore(store.settings.url, index=store.index)
    again.ensure_index(DIMS)  # a second store on the same index accepts it
    wrong = ElasticsearchStore(store.settings.url, index=store.index, dense_dims=DIMS * 2)
    with pytest.raises(ConfigurationError, match=r"incompatible mapping: 'embedding' has dims=8, expected 16"):
        wrong.ensure_index()
    other_analyzer = ElasticsearchStore(store.settings.url, index=store.index, analyzer="standard")
    with pytest.raises(ConfigurationError, match="uses analyzer 'english', expected 'standard'"):
        other_analyzer.count_documents()


def test_write_overwrite_get_delete(make_store, corpus):
    store = make_store(vectors_in_source=True)
    assert store.count_documents() == 0 and store.search_bm25("aspirin") == []
    result = store.write_documents(corpus)
    assert result.written == len(corpus) and store.count_documents() == len(corpus)
    changed = Document(id="doc-3", content="completely new words zebra", meta={"year": 1999})
    store.write_documents([changed])
    assert store.count_documents() == len(corpus)  # replaced, not added
    (got,) = store.get_documents(["doc-3"])
    assert got.content == "completely new words zebra" and got.meta == {"year": 1999} and got.embedding is None
    assert store.search_bm25("zebra")[0].id == "doc-3"
    (full,) = store.get_documents(["doc-5"], include_embeddings=True)
    assert full.sparse_embedding is not None and np.allclose(full.embedding, corpus[5].embedding, atol=1e-6)
    assert [d.id for d in store.get_documents(["doc-7", "missing", "doc-1"])] == ["doc-7", "doc-1"]
    assert store.delete_documents(["doc-1", "doc-2", "missing"]) == 2
    assert store.count_documents() == len(corpus) - 2
    assert store.get_documents(["doc-1"]) == []
    store.write_documents(corpus)  # re-indexing is idempotent
    assert store.count_documents() == len(corpus)


def test_bm25_ranks_and_reports_source(store):
    results = store.search_bm25("zebra aspirin", top_k=5)
    assert 0 < len(results) <= 5
    assert [r.rank for r in results] == list(range(1, len(results) + 1))
    assert all("aspirin" in r.document.content for r in results)
    assert results[0].sources["bm25"].rank == 1 and results[0].document.embedding is None
    assert results == sorted(results, key=lambda r: -r.score)


@pytest.mark.parametrize(
    "query", ['aspirin AND "fever', "(cell) OR [gene]~2 ^3 {virus} title:heart", "a/b\\c*? && || ! :", ""]
)
def test_query_text_with_lucene_special_characters(store, query):
    results = store.search_bm25(query, top_k=3)
    assert isinstance(results, list)


def _exact_sparse(corpus, query, filt=lambda d: True):
    scores = {d.id: d.sparse_embedding.dot(query) for d in corpus if filt(d)}
    return sorted((s, i) for i, s in scores.items() if s > 0)[::-1]


def test_sparse_matches_exact_dot_product(make_store, store, corpus):
    query = SparseVector.from_arrays(RNG.choice(200, size=30, replace=False), RNG.uniform(0.1, 2.0, size=30))
    expected = _exact_sparse(corpus, query)[:10]
    results = store.search_sparse(query, top_k=10)
    assert [r.id for r in results][:3] == [i for _, i in expected][:3]
    for r, (score, _) in zip(results, expected):
        assert r.score == pytest.approx(score, rel=0.01)  # sparse_vector keeps ~9 significant bits
    forced_term = make_store(index=store.index, sparse_query_mode="term")
    assert [r.id for r in forced_term.search_sparse(query, 10)] == [r.id for r in results]
    if store.server_version() >= (8, 15, 0):
        forced = make_store(index=store.index, sparse_query_mode="sparse_vector")
        assert [r.id for r in forced.search_sparse(query, 10)] == [r.id for r in results]
    else:
        forced = ElasticsearchStore(store.settings.url, index=store.index, sparse_query_mode="sparse_vector")
        with pytest.raises(StoreError, match="unknown query"):
            forced.search_sparse(query, 10)
    pruned = make_store(index=store.index, sparse_top_k=5)
    expected_pruned = _exact_sparse(corpus, query.top_k(5))
    assert [r.id for r in pruned.search_sparse(query, 3)] == [i for _, i in expected_pruned[:3]]
    assert store.search_sparse(SparseVector.empty()) == []


def test_dense_matches_exact_cosine(store, corpus):
    q = RNG.normal(size=DIMS)
    matrix = np.array([d.embedding for d in corpus])
    cos = matrix @ q / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(q))
    order = np.argsort(-cos)[:5]
    results = store.search_dense(q.tolist(), top_k=5)
    assert [r.id for r in results] == [corpus[i].id for i in order]
    assert [r.score for r in results] == pytest.approx(cos[order].tolist(), abs=1e-4)
    with pytest.raises(ConfigurationError, match="query vector has 3 dimensions but index"):
        store.search_dense([1.0, 2.0, 3.0])


def test_filters_apply_to_every_query_type(store, corpus):
    filters = {"lang": "en", "year": {"gte": 2003, "lt": 2008}, "tags": {"nin": ["t0"]}}

    def ok(meta):
        return meta["lang"] == "en" and 2003 <= meta["year"] < 2008 and "t0" not in meta["tags"]

    allowed = {d.id for d in corpus if ok(d.meta)}
    assert allowed
    query = SparseVector.from_arrays(np.arange(200), np.ones(200))
    for results in (
        store.search_bm25("study", top_k=40, filters=filters),
        store.search_sparse(query, top_k=40, filters=filters),
        store.search_dense(corpus[0].embedding, top_k=40, filters=filters),
    ):
        assert {r.id for r in results} == allowed
    assert {r.id for r in store.search_bm25("study", 40, {"tags": "t1"})} == {
        d.id for d in corpus if "t1" in d.meta["tags"]
    }
    assert {r.id for r in store.search_bm25("study", 40, {"year": [2001, 2002]})} == {
        d.id for d in corpus if d.meta["year"] in (2001, 2002)
    }


def test_client_side_fusion_keeps_per_source_ranks(store, corpus):
    fusion = pytest.importorskip("lens_rag.fusion")
    bm25 = store.search_bm25("aspirin fever", top_k=10)
    dense = store.search_dense(corpus[4].embedding, top_k=10)
    fused = fusion.reciprocal_rank_fusion({"bm25": bm25, "dense": dense}, top_k=5)
    assert len(fused) == 5 and fused[0].rank == 1
    ranks = {name: {r.id: r.rank for r in hits} for name, hits in (("bm25", bm25), ("dense", dense))}
    for hit in fused:
        expected = sum(1 / (60 + ranks[n][hit.id]) for n in ranks if hit.id in ranks[n])
        assert hit.score == pytest.approx(expected)
        for name, source in hit.sources.items():
            assert source.rank == ranks[name][hit.id]


async def test_async_twin_gives_the_same_results(make_store, corpus):
    store = make_store()
    result = await store.write_documents_async(corpus)
    assert result.written == len(corpus)
    assert await store.count_documents_async() == len(corpus)
    query = SparseVector.from_arrays(np.arange(0, 200, 3), np.ones(67))
    assert [r.id for r in await store.search_bm25_async("aspirin", 5)] == [
        r.id for r in store.search_bm25("aspirin", 5)
    ]
    assert [r.id for r in await store.search_sparse_async(query, 5)] == [r.id for r in store.search_sparse(query, 5)]
    emb = corpus[2].embedding
    async_dense = await store.search_dense_async(emb, 5, {"lang": "de"})
    assert [(r.id, r.score) for r in async_dense] == [
        (r.id, r.score) for r in store.search_dense(emb, 5, {"lang": "de"})
    ]
    assert await store.delete_documents_async(["doc-0"]) == 1
    assert [d.id for d in await store.get_documents_async(["doc-0", "doc-1"])] == ["doc-1"]
    with pytest.raises(BulkWriteError) as info:
        await store.write_documents_async([Document(id="x", content="bad", meta={"year": "not a year"})])
    assert list(info.value.failed) == ["x"]
    await store.close_async()


def test_bulk_batch_with_invalid_documents_keeps_the_others(make_store, corpus):
    store = make_store(chunk_size=7)
    store.write_documents(corpus[:5])  # year is mapped as long, dims fixed at 8
    batch = [*corpus[5:20]]
    batch.insert(3, Document(id="wrong-dims", content="bad vector", embedding=[0.1] * (DIMS + 1)))
    batch.insert(9, Document(id="wrong-type", content="bad meta", meta={"year": "nineteen"}))
    batch.insert(12, Document(id="", content="no id"))
    with pytest.raises(BulkWriteError) as info:
        store.write_documents(batch)
    err = info.value
    assert set(err.failed) == {"wrong-dims", "wrong-type", ""}
    assert "9 dimensions, the index holds 8" in err.failed["wrong-dims"]
    assert "document_parsing_exception" in err.failed["wrong-type"] or "mapper_parsing" in err.failed["wrong-type"]
    assert err.written == 15
    assert store.count_documents() == 20
    # the server rejects a bad vector too when the client has not seen the index yet
    fresh = make_store(index=store.index)
    fresh._partition = lambda docs: ({d.id: d for d in docs}, {}, None)  # skip client-side checks
    with pytest.raises(BulkWriteError) as info:
        fresh.write_documents([Document(id="srv", content="x", embedding=[1.0] * 3), corpus[30]])
    assert list(info.value.failed) == ["srv"] and info.value.written == 1
    assert "dimension" in info.value.failed["srv"]


def test_store_info_round_trips_in_the_mapping_meta(store):
    """The CLI records which encoders indexed a store; on Elasticsearch it lives in the mapping `_meta`."""
    assert store.info == {}
    store.set_info({"sparse": {"type": "mlm", "model": "splade-tiny"}, "eval_fields": ["bm25"]})
    assert store.info["sparse"]["model"] == "splade-tiny"
    store.set_info({"dense": {"model": "m"}})
    assert store.info == {"dense": {"model": "m"}}
    assert store.count_documents() > 0  # the documents are untouched


def test_vectors_stay_out_of_source_by_default(store, corpus):
    """Vectors are searchable but not stored in `_source` (faster hits); opt in with vectors_in_source=True."""
    (doc,) = store.get_documents(["doc-5"], include_embeddings=True)
    assert doc.embedding is None and doc.sparse_embedding is None
    assert store.search_dense(corpus[5].embedding, top_k=1)[0].id == "doc-5"


# ------------------------------------------------------------------ documents by filter, configuration


def test_count_filter_and_iterate_by_filter(store, corpus):
    en = {d.id for d in corpus if d.meta["lang"] == "en"}
    assert store.count_documents() == len(corpus)
    assert store.count_documents({"lang": "en"}) == len(en)
    assert {d.id for d in store.filter_documents({"lang": "en"})} == en
    assert len(store.filter_documents(limit=7)) == 7
    assert store.filter_documents({"lang": "en"}, limit=0) == []
    first = store.filter_documents({"$or": [{"year": 2001}, {"tags": "t2"}]})[0]
    assert first.content and first.meta and first.embedding is None  # vectors stay out of _source
    pages = list(store.iter_documents(batch_size=7))  # 40 documents over 6 pages
    assert sorted(d.id for d in pages) == sorted(d.id for d in corpus)
    assert len({d.id for d in pages}) == len(corpus)
    it = store.iter_documents({"lang": "de"}, batch_size=3)
    assert next(it).meta["lang"] == "de"
    it.close()  # releases the point in time early
    with pytest.raises(ConfigurationError, match="batch_size must be between 1 and 10000"):
        store.iter_documents(batch_size=0)
    with pytest.raises(ConfigurationError, match="limit must be >= 0"):
        store.filter_documents(limit=-1)
    with pytest.raises(ConfigurationError, match="unknown filter operator 'like'"):
        store.count_documents({"lang": {"like": "e%"}})


def test_top_k_zero_returns_nothing_without_asking(store, corpus):
    query = SparseVector.from_arrays(np.arange(10), np.ones(10))
    assert store.search_bm25("study", 0) == []
    assert store.search_sparse(query, 0) == []
    assert store.search_dense(corpus[0].embedding, 0) == []


def test_delete_by_filter_and_delete_all(store, corpus):
    store.set_info({"encoders": {"dense": {"name": "m"}}})
    old = {d.id for d in corpus if d.meta["year"] < 2003}
    assert store.delete_by_filter({"year": {"lt": 2003}}) == len(old)
    assert store.count_documents() == len(corpus) - len(old)
    assert store.get_documents(sorted(old)) == []
    assert store.delete_by_filter({"year": {"lt": 2003}}) == 0
    with pytest.raises(ConfigurationError, match=r"delete_by_filter needs a filter, got \{\}; to delete every"):
        store.delete_by_filter({})
    assert store.delete_all_documents() == len(corpus) - len(old)
    assert store.count_documents() == 0
    assert store.info == {"encoders": {"dense": {"name": "m"}}}  # the index, mapping and info stay
    store.write_documents(corpus[:3])
    assert store.delete_all_documents(recreate_index=True) == 3
    assert store.count_documents() == 0 and store.info == {"encoders": {"dense": {"name": "m"}}}
    store.write_documents(corpus[:2])  # still writable, dense field recreated
    assert store.search_dense(corpus[1].embedding, top_k=1)[0].id == corpus[1].id


def test_update_by_filter_merges_meta_and_keeps_vectors(make_store, corpus):
    store = make_store(vectors_in_source=True)
    store.write_documents(corpus)
    en = {d.id for d in corpus if d.meta["lang"] == "en"}
    assert store.update_by_filter({"lang": "en"}, {"reviewed": True, "year": 1900}) == len(en)
    assert {d.id for d in store.filter_documents({"reviewed": True})} == en
    doc = next(d for d in store.filter_documents({"reviewed": True}, include_embeddings=True))
    assert doc.meta["year"] == 1900 and doc.meta["lang"] == "en" and doc.meta["tags"]  # merged, not replaced
    assert doc.embedding is not None and doc.sparse_embedding is not None
    original = next(d for d in corpus if d.id == doc.id)
    assert store.search_dense(original.embedding, top_k=1)[0].id == doc.id  # vectors still indexed
    assert store.update_by_filter({"lang": "xx"}, {"a": 1}) == 0
    with pytest.raises(StoreError, match="could not be updated"):
        store.update_by_filter({"lang": "de"}, {"year": "not a number"})  # meta.year is a double


def test_update_by_filter_refuses_to_drop_excluded_vectors(make_store, corpus):
    store = make_store()  # vectors_in_source=False: an update would rewrite documents without them
    store.write_documents([*corpus[:4], Document(id="plain", content="no vectors", meta={"lang": "en"})])
    with pytest.raises(StoreError, match=r"would drop the vectors of \d+ matching document"):
        store.update_by_filter({"lang": {"in": ["en", "de"]}}, {"x": 1})
    assert store.count_documents({"x": 1}) == 0  # nothing changed
    assert store.update_by_filter({"$id": "plain"}, {"x": 1}) == 1
    assert store.get_documents(["plain"])[0].meta == {"lang": "en", "x": 1}


def test_meta_keeps_json_types(make_store):
    store = make_store()
    store.write_documents(
        [
            Document(id="a", content="x", meta={"when": "2020-01-02", "code": "42", "n": 10}),
            Document(id="b", content="x", meta={"n": 10.5}),
        ]
    )
    meta = store.client.indices.get_mapping(index=store.index)[store.index]["mappings"]["properties"]["meta"]
    types = {k: v["type"] for k, v in meta["properties"].items()}
    assert types == {"when": "keyword", "code": "keyword", "n": "double"}
    store.write_documents([Document(id="c", content="x", meta={"when": "soon"})])  # no date mapping to refuse it
    assert store.count_documents({"n": {"gt": 10}}) == 1  # 10.5 kept, not truncated to a long
    with pytest.raises(BulkWriteError, match=r"1 document\(s\) were not written"):
        store.write_documents([Document(id="d", content="x", meta={"n": "11"})])  # no silent coercion
    assert store.count_documents({"code": 42}) == 0 and store.count_documents({"code": "42"}) == 1


def test_index_from_an_older_version_gets_the_new_dynamic_mapping(make_store, es_url):
    store = make_store()
    store.server_version()
    body = store._index_body(None)
    for key in ("date_detection", "numeric_detection"):
        body["mappings"].pop(key)
    body["mappings"]["dynamic_templates"] = body["mappings"]["dynamic_templates"][:1]
    store.client.indices.create(index=store.index, **body)
    store.write_documents([Document(id="a", content="x", meta={"when": "2020-01-02"})])
    mapping = store.client.indices.get_mapping(index=store.index)[store.index]["mappings"]
    assert mapping["date_detection"] is False
    assert mapping["properties"]["meta"]["properties"]["when"]["type"] == "keyword"


def test_config_round_trip_keeps_secrets_out(make_store, es_url, monkeypatch):
    monkeypatch.setenv("MY_ES_KEY", "c2VjcmV0OnNlY3JldA==")
    store = make_store(api_key="explicit-secret-value", dense_similarity="dot_product", sparse_top_k=50)
    text = json.dumps(store.to_config())
    assert "explicit-secret-value" not in text
    config = json.loads(text)
    assert config["type"] == "elasticsearch_store" and config["api_key_env"] == "ES_API_KEY"
    assert config["index"] == store.index and config["sparse_top_k"] == 50
    same = ElasticsearchStore.from_config(config)
    assert same.to_config() == config
    assert same.settings.api_key is None or same.settings.api_key != "explicit-secret-value"
    named = ElasticsearchStore.from_config({**config, "api_key_env": "MY_ES_KEY"})
    assert named.settings.api_key == "c2VjcmV0OnNlY3JldA==" and named.to_config()["api_key_env"] == "MY_ES_KEY"
    with pytest.raises(ConfigurationError, match=r"unknown ElasticsearchStore config keys \['api_key'\]"):
        ElasticsearchStore.from_config({**config, "api_key": "x"})
    open_store = ElasticsearchStore.from_config({**config, "api_key_env": "UNSET_VAR_FOR_TEST"})
    assert open_store.count_documents() == 0  # connects (no auth on this server) and finds no index yet


async def test_async_by_filter_twins(make_store, corpus):
    store = make_store(vectors_in_source=True)
    await store.write_documents_async(corpus)
    de = {d.id for d in corpus if d.meta["lang"] == "de"}
    assert await store.count_documents_async({"lang": "de"}) == len(de)
    assert {d.id for d in await store.filter_documents_async({"lang": "de"})} == de
    assert len(await store.filter_documents_async(limit=5)) == 5
    seen = [d.id async for d in store.iter_documents_async({"lang": "de"}, batch_size=6)]
    assert sorted(seen) == sorted(de)
    assert await store.update_by_filter_async({"lang": "de"}, {"flag": "x"}) == len(de)
    assert await store.count_documents_async({"flag": "x"}) == len(de)
    assert await store.delete_by_filter_async({"flag": "x"}) == len(de)
    assert await store.delete_all_documents_async() == len(corpus) - len(de)
    assert await store.count_documents_async() == 0
    await store.close_async()
