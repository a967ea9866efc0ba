"""One filter, one answer: the embedded store (SQLite), Elasticsearch and the `matches()` reference agree.

A fixed table of 20 documents with mixed metadata (ints, floats, strings, ISO dates, booleans, lists,
nested objects, missing keys and None) is written to an `EmbeddedStore`, to a bare SQLite table
filtered with `filters_to_sql`, and to a real Elasticsearch index (ES_URL). Every operator, the
boolean operators and Haystack's syntax must select exactly the ids `matches()` selects, on every
backend, through `filter_documents`, `count_documents` and filtered searches.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

import pytest

from lens_rag.documents import Document
from lens_rag.filters import filters_to_sql, matches
from lens_rag.stores.elasticsearch import ElasticsearchStore
from lens_rag.stores.embedded import EmbeddedStore

pytestmark = pytest.mark.integration

META: list[dict[str, Any]] = [
    {
        "year": 1999,
        "score": 0.5,
        "lang": "en",
        "date": "1999-12-31",
        "draft": False,
        "tags": ["a", "b"],
        "nums": [1, 2],
        "author": {"name": "Ada"},
        "rating": 3,
    },
    {
        "year": 2000,
        "score": 1.5,
        "lang": "de",
        "date": "2000-01-01T10:00:00",
        "draft": True,
        "tags": ["b"],
        "rating": 4.5,
    },
    {"year": 2005, "score": -1.0, "lang": "fr", "date": "2005-06-15", "draft": False, "tags": [], "rating": 5},
    {"year": 2010, "lang": "en", "date": "2010-01-01", "tags": ["c", None], "nums": [10, 20, 30]},
    {"year": None, "score": 2.0, "lang": "EN", "draft": True, "tags": ["a"], "author": {"name": "Bob"}},
    {"score": 0.0, "lang": "", "date": "2020-02-29", "draft": False, "nums": [], "rating": 1},
    {"year": 2020, "score": 10.25, "lang": "de", "tags": ["a", "c"], "author": {"name": "Ada"}, "rating": 2.5},
    {"year": 2021, "lang": None, "date": "2021-03-04T05:06:07", "draft": True, "tags": None, "nums": [-1]},
    {},
    {"year": 2000, "score": 1.5, "lang": "en", "date": "2000-01-01", "draft": False, "tags": ["b", "a"], "nums": [1]},
    {"year": -5, "score": 0.001, "lang": "ja", "tags": ["日本"], "author": {"name": None}},
    {"year": 3000, "score": 99.9, "lang": "zz", "draft": False, "tags": ["z"], "rating": 0},
    {"year": 1999, "lang": "en-GB", "date": "1999-01-01", "tags": ["a", "b", "c"], "nums": [1, 2, 3]},
    {"year": 2015, "score": 7.0, "draft": True, "author": {"name": "Cy"}, "rating": 4},
    {"year": 2001, "score": 3.5, "lang": "de", "date": "2001-09-09", "tags": ["d"], "nums": [100]},
    {"year": 2002, "lang": "en", "draft": False, "tags": ["a"], "nums": [2, 2], "rating": 3.0},
    {"score": 2.0, "lang": "fr", "date": "2016-06-06", "tags": ["b"]},
    {"year": 2017, "score": 0.25, "lang": "de", "draft": True, "nums": [0], "author": {}},
    {"year": 2018, "lang": "en", "date": "2018-08-08T08:08:08", "tags": ["c"], "rating": 5},
    {"year": 2019, "score": 5.0, "lang": "en", "draft": False, "tags": ["a", "d"], "nums": [5, 50]},
]
DIMS = 3
DOCS = [
    Document(
        id=f"d{i:02d}",
        content=f"common passage number {i}",
        meta=meta,
        embedding=[1.0, (i + 1) / 20.0, ((i * 7) % 5) / 5.0],
    )
    for i, meta in enumerate(META)
]
ALL_IDS = {d.id for d in DOCS}


def _haystack(*conditions: dict[str, Any], operator: str = "AND") -> dict[str, Any]:
    return {"operator": operator, "conditions": list(conditions)}


def _hs(field: str, operator: str, value: Any) -> dict[str, Any]:
    return {"field": field, "operator": operator, "value": value}


FILTERS: list[Any] = [
    # eq, per type
    {"lang": "en"},
    {"year": 2000},
    {"year": 2000.0},
    {"score": 1.5},
    {"draft": True},
    {"draft": False},
    {"tags": "a"},
    {"nums": 2},
    {"author.name": "Ada"},
    {"date": "2000-01-01"},
    {"lang": ""},
    {"tags": "日本"},
    # operands of another type never match (no coercion)
    {"year": "2000"},
    {"lang": 5},
    {"draft": 1},
    {"year": True},
    {"tags": 1},
    {"year": {"gt": "1000"}},
    {"lang": {"lt": 100}},
    {"draft": {"ne": 0}},
    # ne
    {"lang": {"ne": "en"}},
    {"draft": {"$ne": True}},
    {"tags": {"ne": "a"}},
    {"year": {"ne": 2000}},
    # in / nin
    {"lang": ["en", "de"]},
    {"year": {"in": [1999, 2020, 42]}},
    {"tags": {"$in": ["c", "z"]}},
    {"lang": {"in": [None, "fr"]}},
    {"lang": {"in": []}},
    {"year": {"in": [2000, "2000", True]}},
    {"lang": {"nin": ["en", "de"]}},
    {"tags": {"nin": ["a"]}},
    {"year": {"nin": []}},
    {"lang": {"nin": [None]}},
    {"rating": {"$nin": [3, 5]}},
    # ranges
    {"year": {"gt": 2000}},
    {"year": {"gte": 2000, "lt": 2010}},
    {"score": {"lte": 1.5}},
    {"score": {"gt": -1.0}},
    {"rating": {"gte": 4}},
    {"rating": {"lt": 3}},
    {"date": {"gte": "2000-01-01"}},
    {"date": {"lt": "2000-01-01T12:00:00"}},
    {"lang": {"gt": "en"}},
    {"lang": {"lte": "EN"}},
    {"nums": {"gte": 20}},
    {"nums": {"gt": 2, "lt": 10}},
    {"tags": {"lt": "b"}},
    # exists / None
    {"year": {"exists": True}},
    {"year": {"exists": False}},
    {"tags": {"$exists": True}},
    {"tags": {"exists": False}},
    {"author.name": {"exists": True}},
    {"nums": None},
    {"lang": None},
    {"lang": {"ne": None}},
    # ids
    {"$id": ["d01", "d05", "nope"]},
    {"$id": {"ne": "d00"}},
    {"$id": "d03", "lang": "en"},
    # boolean logic
    {"$or": [{"lang": "en"}, {"draft": True}]},
    {"$and": [{"year": {"gte": 2000}}, {"$not": {"lang": "en"}}]},
    {"$not": {"tags": "a"}},
    {"$not": {"$or": [{"year": {"lt": 2000}}, {"year": None}]}},
    {"lang": "en", "$or": [{"tags": "a"}, {"nums": {"gte": 10}}]},
    {"$or": [{"$and": [{"draft": False}, {"score": {"gt": 1}}]}, {"$not": {"year": {"exists": True}}}]},
    {"$or": []},
    {"$and": []},
    {"year": {"$not": {"$gt": 2010}}},
    {"$not": {"$not": {"lang": "de"}}},
    {"$not": {"lang": "en", "draft": False}},
    # Haystack's syntax
    _haystack(_hs("meta.year", ">=", 2000), _hs("meta.lang", "!=", "en")),
    _haystack(_hs("meta.draft", "==", True), _hs("meta.lang", "in", ["de", "en"]), operator="NOT"),
    _haystack(_hs("meta.date", "<", "2000-06-01"), _hs("meta.score", "==", None), operator="OR"),
    _hs("meta.year", ">", None),
    _hs("meta.tags", "not in", ["a", "b"]),
    _haystack(_hs("id", "in", ["d02", "d04"]), _haystack(_hs("rating", "<=", 2.5), operator="AND"), operator="OR"),
]


def _expected(filters: Any) -> set[str]:
    return {d.id for d in DOCS if matches(d, filters)}


def _label(filters: Any) -> str:
    return json.dumps(filters, ensure_ascii=True, sort_keys=True)[:80]


def test_the_table_discriminates() -> None:
    """A table whose filters all select everything (or nothing) could not catch a wrong translation."""
    selections = [frozenset(_expected(f)) for f in FILTERS]
    assert len(set(selections)) >= 0.75 * len(FILTERS)
    assert frozenset() in selections and frozenset(ALL_IDS) in selections
    assert sum(0 < len(s) < len(ALL_IDS) for s in selections) >= 0.8 * len(FILTERS)


# ------------------------------------------------------------------------------------------------ SQLite harness


@pytest.fixture(scope="module")
def sqlite_table() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE docs (id TEXT PRIMARY KEY, content TEXT, meta TEXT NOT NULL)")
    db.executemany(
        "INSERT INTO docs VALUES (?, ?, ?)", [(d.id, d.content, json.dumps(d.meta, ensure_ascii=False)) for d in DOCS]
    )
    return db


@pytest.mark.parametrize("filters", FILTERS, ids=_label)
def test_sqlite_matches_reference(sqlite_table: sqlite3.Connection, filters: Any) -> None:
    where, params = filters_to_sql(filters)
    got = {row[0] for row in sqlite_table.execute(f"SELECT id FROM docs WHERE {where}", params)}
    assert got == _expected(filters)


# ------------------------------------------------------------------------------------------------ EmbeddedStore


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedStore:
    if not hasattr(EmbeddedStore, "filter_documents"):
        pytest.skip("EmbeddedStore has no filter_documents yet (store-core is adding it)")
    store = EmbeddedStore(tmp_path_factory.mktemp("parity") / "store", progress=False)
    store.write_documents(DOCS)
    yield store
    store.close()


@pytest.mark.parametrize("filters", FILTERS, ids=_label)
def test_embedded_matches_reference(embedded: EmbeddedStore, filters: Any) -> None:
    expected = _expected(filters)
    assert {d.id for d in embedded.filter_documents(filters)} == expected
    assert embedded.count_documents(filters) == len(expected)


# ------------------------------------------------------------------------------------------------ Elasticsearch


@pytest.fixture(scope="module")
def es_store(es_url: str) -> ElasticsearchStore:
    store = ElasticsearchStore(es_url, index=f"lens-rag-parity-{uuid.uuid4().hex[:10]}", progress=False)
    try:
        store.write_documents(DOCS)
        yield store
    finally:
        store.delete_index()
        store.close()


def test_elasticsearch_keeps_json_types(es_store: ElasticsearchStore) -> None:
    mapping = es_store.client.indices.get_mapping(index=es_store.index)[es_store.index]["mappings"]
    meta = mapping["properties"]["meta"]["properties"]
    assert meta["date"]["type"] == "keyword"  # no date detection
    assert meta["year"]["type"] == meta["rating"]["type"] == meta["score"]["type"] == "double"
    assert meta["draft"]["type"] == "boolean" and meta["tags"]["type"] == "keyword"
    assert meta["author"]["properties"]["name"]["type"] == "keyword"


@pytest.mark.parametrize("filters", FILTERS, ids=_label)
def test_elasticsearch_matches_reference(es_store: ElasticsearchStore, filters: Any) -> None:
    expected = _expected(filters)
    assert {d.id for d in es_store.filter_documents(filters)} == expected
    assert es_store.count_documents(filters) == len(expected)


SEARCH_FILTERS = [
    {"lang": "en"},
    {"year": {"gte": 2000, "lt": 2010}},
    {"$or": [{"draft": True}, {"tags": "c"}]},
    {"$not": {"tags": "a"}},
    {"year": "2000"},
    _haystack(_hs("meta.date", ">=", "2000-01-01"), _hs("meta.rating", "!=", 5)),
]


@pytest.mark.parametrize("filters", SEARCH_FILTERS, ids=_label)
async def test_filtered_searches_agree(es_store: ElasticsearchStore, embedded: EmbeddedStore, filters: Any) -> None:
    """BM25 and dense searches with a filter return exactly the matching documents on both stores (top_k = all)."""
    expected = _expected(filters)
    n = len(DOCS)
    query = [1.0, 0.5, 0.5]
    for store in (es_store, embedded):
        assert {r.document.id for r in store.search_bm25("common passage", n, filters)} == expected, store
        assert {r.document.id for r in store.search_dense(query, n, filters)} == expected, store
    assert {r.document.id for r in await es_store.search_bm25_async("common passage", n, filters)} == expected
    assert {d.id for d in await es_store.filter_documents_async(filters)} == expected
    assert await es_store.count_documents_async(filters) == len(expected)
    await es_store.close_async()  # each test runs in its own event loop


def _random_filters(seed: int, count: int) -> list[Any]:
    """Seeded random trees over the table's keys, with operands of every type (mismatches included)."""
    import random

    rng = random.Random(seed)
    typical: dict[str, list[Any]] = {
        "year": [1999, 2000, 2010, 2020, 2000.0],
        "score": [0.5, 1.5, 2.0, -1.0],
        "lang": ["en", "de", "fr", "", "EN"],
        "date": ["2000-01-01", "1999-12-31", "2010-01-01T00:00:00"],
        "draft": [True, False],
        "tags": ["a", "b", "c"],
        "nums": [1, 2, 10],
        "author.name": ["Ada", "Bob"],
        "rating": [3, 4.5, 5],
        "absent": [1, "x"],
    }
    odd: list[Any] = [None, 0, "2000", True, "a", 1.5]  # operands of another type, now and then
    ops = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "exists"]

    def operand(key: str) -> Any:
        return rng.choice(odd) if rng.random() < 0.2 else rng.choice(typical[key])

    def condition() -> dict[str, Any]:
        key, op = rng.choice(sorted(typical)), rng.choice(ops)
        if op in ("in", "nin"):
            value: Any = [operand(key) for _ in range(rng.randint(0, 3))]
        elif op == "exists":
            value = rng.choice([True, False])
        elif op in ("gt", "gte", "lt", "lte"):
            value = operand(key)
            while value is None or isinstance(value, bool):
                value = operand(key)
        else:
            value = operand(key)
        return {key: {f"${op}": value}}

    def tree(depth: int = 0) -> dict[str, Any]:
        r = rng.random()
        if depth > 1 or r < 0.4:
            return condition()
        if r < 0.6:
            return {"$and": [tree(depth + 1) for _ in range(rng.randint(1, 3))]}
        if r < 0.8:
            return {"$or": [tree(depth + 1) for _ in range(rng.randint(1, 3))]}
        return {"$not": tree(depth + 1)}

    return [tree() for _ in range(count)]


RANDOM_FILTERS = _random_filters(seed=11, count=150)


def test_random_trees_agree_on_every_backend(
    es_store: ElasticsearchStore, embedded: EmbeddedStore, sqlite_table: sqlite3.Connection
) -> None:
    """150 seeded random filters: Elasticsearch, the EmbeddedStore and SQL select exactly what `matches` selects."""
    partial = sum(0 < len(_expected(f)) < len(DOCS) for f in RANDOM_FILTERS)
    assert partial >= 0.5 * len(RANDOM_FILTERS)  # most select some documents but not all
    for filters in RANDOM_FILTERS:
        expected = _expected(filters)
        where, params = filters_to_sql(filters)
        assert {r[0] for r in sqlite_table.execute(f"SELECT id FROM docs WHERE {where}", params)} == expected, filters
        assert {d.id for d in embedded.filter_documents(filters)} == expected, filters
        assert {d.id for d in es_store.filter_documents(filters)} == expected, filters
