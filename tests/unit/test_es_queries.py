"""Elasticsearch request bodies, mappings and bulk parsing as plain dicts — no cluster."""

from __future__ import annotations

import logging

import pytest

from lens_rag.documents import Document
from lens_rag.errors import ConfigurationError, StoreError
from lens_rag.sparse import SparseVector
from lens_rag.stores.elasticsearch import bulk, by_filter, queries
from lens_rag.stores.elasticsearch.mappings import field_types, index_body, mapping_conflicts

pytestmark = pytest.mark.unit

SOURCE = {"excludes": ["embedding", "sparse_embedding"]}


def test_filters_to_dsl_covers_every_operator():
    dsl = queries.filters_to_dsl(
        {
            "lang": "en",
            "source": ["a.md", "b.md"],
            "year": {"gte": 2000, "lt": 2020},
            "draft": {"ne": True},
            "tag": {"nin": ["x"]},
            "missing": None,
            "seen": {"$exists": True},
        }
    )
    assert dsl == {
        "bool": {
            "filter": [
                {"term": {"meta.lang": "en"}},
                {"terms": {"meta.source": ["a.md", "b.md"]}},
                {"range": {"meta.year": {"gte": 2000}}},
                {"range": {"meta.year": {"lt": 2020}}},
                {"exists": {"field": "meta.seen"}},
            ],
            "must_not": [
                {"term": {"meta.draft": True}},
                {"term": {"meta.tag": "x"}},
                {"exists": {"field": "meta.missing"}},
            ],
        }
    }


def test_filters_to_dsl_boolean_logic_and_haystack_syntax():
    haystack = {
        "operator": "OR",
        "conditions": [
            {"field": "meta.year", "operator": ">=", "value": 2000},
            {"operator": "NOT", "conditions": [{"field": "meta.lang", "operator": "==", "value": "de"}]},
        ],
    }
    expected = {
        "bool": {
            "should": [
                {"range": {"meta.year": {"gte": 2000}}},
                {"bool": {"must_not": [{"term": {"meta.lang": "de"}}]}},
            ],
            "minimum_should_match": 1,
        }
    }
    assert queries.filters_to_dsl(haystack) == expected
    assert queries.filters_to_dsl({"$or": [{"year": {"$gte": 2000}}, {"$not": {"lang": "de"}}]}) == expected


def test_filters_to_dsl_empty_and_invalid():
    assert queries.filters_to_dsl(None) is None
    assert queries.filters_to_dsl({}) is None
    with pytest.raises(ConfigurationError, match="unknown filter operator 'like'"):
        queries.filters_to_dsl({"a": {"like": "x"}})


def test_filters_use_the_mapping_types_when_given():
    types = {"meta.year": "double", "meta.lang": "keyword"}
    body = queries.bm25_request("q", 3, {"year": "2010", "lang": {"gt": 5}}, field_types=types)
    assert body["query"] == {
        "bool": {"must": [{"match": {"content": {"query": "q"}}}], "filter": [{"match_none": {}}, {"match_none": {}}]}
    }


def test_bm25_request_is_a_plain_match_without_fuzziness():
    assert queries.bm25_request('title:"x" AND (y)~2', 7) == {
        "query": {"match": {"content": {"query": 'title:"x" AND (y)~2'}}},
        "size": 7,
        "_source": SOURCE,
    }


def test_bm25_request_with_filter():
    body = queries.bm25_request("q", 3, {"lang": "en"})
    assert body["query"] == {
        "bool": {"must": [{"match": {"content": {"query": "q"}}}], "filter": [{"term": {"meta.lang": "en"}}]}
    }
    ored = queries.bm25_request("q", 3, {"$or": [{"lang": "en"}, {"lang": "de"}]})
    assert ored["query"] == {
        "bool": {
            "must": [{"match": {"content": {"query": "q"}}}],
            "filter": [
                {
                    "bool": {
                        "should": [{"term": {"meta.lang": "en"}}, {"term": {"meta.lang": "de"}}],
                        "minimum_should_match": 1,
                    }
                }
            ],
        }
    }  # a `should` is nested, never merged beside `must` (where it would only boost)


@pytest.mark.parametrize("top_k", [0, -1, 2.5, True])
def test_top_k_must_be_positive(top_k):
    with pytest.raises(ConfigurationError, match="top_k must be a positive integer"):
        queries.bm25_request("q", top_k)


def test_sparse_request_sparse_vector_mode_turns_pruning_off():
    q = SparseVector.from_dict({5: 0.5, 17: 1.5})
    assert queries.sparse_request(q, 4, mode="sparse_vector") == {
        "query": {
            "sparse_vector": {"field": "sparse_embedding", "query_vector": {"5": 0.5, "17": 1.5}, "prune": False}
        },
        "size": 4,
        "_source": SOURCE,
    }


def test_sparse_request_term_mode_is_boosted_should_with_filter():
    q = SparseVector.from_dict({5: 0.5, 17: 1.5})
    body = queries.sparse_request(q, 2, {"year": {"gt": 1}}, mode="term")
    assert body["query"] == {
        "bool": {
            "must": [
                {
                    "bool": {
                        "should": [
                            {"term": {"sparse_embedding": {"value": "5", "boost": 0.5}}},
                            {"term": {"sparse_embedding": {"value": "17", "boost": 1.5}}},
                        ],
                        "minimum_should_match": 1,
                    }
                }
            ],
            "filter": [{"range": {"meta.year": {"gt": 1}}}],
        }
    }


def test_sparse_request_prunes_to_query_top_k_and_caps_clauses(caplog):
    q = SparseVector.from_dict({i: float(i) for i in range(1, 11)})
    body = queries.sparse_request(q, 1, mode="sparse_vector", query_top_k=3)
    assert body["query"]["sparse_vector"]["query_vector"] == {"8": 8.0, "9": 9.0, "10": 10.0}
    with caplog.at_level(logging.WARNING):
        body = queries.sparse_request(q, 1, mode="term", max_query_terms=2)
    assert [c["term"]["sparse_embedding"]["value"] for c in body["query"]["bool"]["should"]] == ["9", "10"]
    assert "max_query_terms=2" in caplog.text


def test_choose_sparse_mode_by_version():
    assert queries.choose_sparse_mode((8, 12, 2)) == "term"
    assert queries.choose_sparse_mode((8, 14, 3)) == "term"
    assert queries.choose_sparse_mode((8, 15, 0)) == "sparse_vector"
    assert queries.choose_sparse_mode((9, 1, 0)) == "sparse_vector"
    assert queries.choose_sparse_mode((8, 12, 2), "sparse_vector") == "sparse_vector"
    with pytest.raises(ConfigurationError, match=r"needs 8\.11"):
        queries.choose_sparse_mode((8, 10, 0))
    with pytest.raises(ConfigurationError, match="sparse_query_mode"):
        queries.choose_sparse_mode((8, 12, 0), "fast")  # type: ignore[arg-type]


def test_dense_request_asks_size_once_and_filters_inside_knn():
    body = queries.dense_request([0.1, 0.2], 5, {"lang": "en"})
    assert body == {
        "knn": {
            "field": "embedding",
            "query_vector": [0.1, 0.2],
            "k": 5,
            "num_candidates": 100,
            "filter": {"term": {"meta.lang": "en"}},
        },
        "size": 5,
        "_source": SOURCE,
    }
    assert queries.dense_request([1.0], 50)["knn"]["num_candidates"] == 500
    assert queries.dense_request([1.0], 50, num_candidates=20)["knn"]["num_candidates"] == 50  # never below k
    assert queries.dense_request([1.0], 5000)["knn"]["num_candidates"] == 10_000


def test_hits_to_results_ranks_from_one_and_maps_cosine_back():
    response = {
        "hits": {
            "hits": [
                {"_id": "a", "_score": 1.0, "_source": {"content": "x", "meta": {"k": 1}}},
                {"_id": "b", "_score": 0.5, "_source": {"content": "y"}},
            ]
        }
    }
    dense = queries.hits_to_results(response, "dense", dense_similarity="cosine")
    assert [(d.id, d.score, d.rank) for d in dense] == [("a", 1.0, 1), ("b", 0.0, 2)]
    assert dense[1].sources["dense"].rank == 2
    bm25 = queries.hits_to_results(response, "bm25")
    assert bm25[0].document == Document(id="a", content="x", meta={"k": 1})
    assert bm25[1].score == 0.5


def test_index_body_disables_pruning_only_where_supported():
    old = index_body(analyzer="english", version=(8, 12, 2), dense_dims=384, dense_similarity="cosine")
    props = old["mappings"]["properties"]
    assert props["sparse_embedding"] == {"type": "sparse_vector"}
    assert props["embedding"] == {"type": "dense_vector", "dims": 384, "index": True, "similarity": "cosine"}
    assert props["content"] == {"type": "text", "analyzer": "english"}
    assert old["mappings"]["dynamic"] == "strict"
    for version in [(8, 19, 0), (9, 1, 0)]:
        new = index_body(analyzer="english", version=version, dense_dims=None, dense_similarity="cosine")
        assert new["mappings"]["properties"]["sparse_embedding"]["index_options"] == {"prune": False}
        assert "embedding" not in new["mappings"]["properties"]
    assert (
        "index_options"
        not in index_body(analyzer="english", version=(9, 0, 0), dense_dims=None, dense_similarity="cosine")[
            "mappings"
        ]["properties"]["sparse_embedding"]
    )
    assert (
        "sparse_embedding"
        not in index_body(analyzer="english", version=(8, 10, 0), dense_dims=None, dense_similarity="cosine")[
            "mappings"
        ]["properties"]
    )


def test_mapping_conflicts_are_named():
    wanted = index_body(analyzer="english", version=(8, 12, 2), dense_dims=384, dense_similarity="cosine")["mappings"]
    assert mapping_conflicts(wanted, wanted) == []
    existing = {
        "properties": {
            "content": {"type": "text"},
            "embedding": {"type": "dense_vector", "dims": 768, "similarity": "cosine"},
        }
    }
    problems = mapping_conflicts(existing, wanted)
    assert "'content' uses analyzer 'standard', expected 'english'" in problems
    assert "'embedding' has dims=768, expected 384" in problems
    assert mapping_conflicts({"properties": {"content": {"type": "keyword"}}}, wanted) == [
        "'content' has type 'keyword', expected 'text'"
    ]


def test_index_actions_use_document_id_and_leave_empty_sparse_out():
    doc = Document(id="d1", content="t", meta={"a": 1}, embedding=[1, 2], sparse_embedding=SparseVector.empty())
    (action,) = bulk.index_actions("idx", [doc])
    assert action == {
        "_op_type": "index",
        "_index": "idx",
        "_id": "d1",
        "_source": {"content": "t", "meta": {"a": 1}, "embedding": [1.0, 2.0]},
    }


def test_validate_document_reasons():
    assert bulk.validate_document(Document(id="a", content="x"), None) is None
    assert "non-empty" in bulk.validate_document(Document(id="", content="x"), None)
    assert "content is empty" in bulk.validate_document(Document(id="a", content=" "), None)
    assert "3 dimensions, the index holds 2" in bulk.validate_document(
        Document(id="a", content="x", embedding=[1, 2, 3]), 2
    )
    assert "NaN" in bulk.validate_document(Document(id="a", content="x", embedding=[float("nan")]), None)
    assert "JSON" in bulk.validate_document(Document(id="a", content="x", meta={"o": object()}), None)


def test_item_failure():
    assert bulk.item_failure({"index": {"_id": "a", "status": 201}}) is None
    assert bulk.item_failure({"delete": {"_id": "a", "status": 404, "result": "not_found"}}) is None
    doc_id, reason = bulk.item_failure(
        {
            "index": {
                "_id": "b",
                "status": 400,
                "error": {
                    "type": "document_parsing_exception",
                    "reason": "bad",
                    "caused_by": {"type": "x", "reason": "y"},
                },
            }
        }
    )
    assert doc_id == "b"
    assert reason == "HTTP 400 document_parsing_exception: bad (caused by x: y)"


def test_vectors_are_excluded_from_source_unless_asked():
    body = index_body(analyzer="english", version=(8, 12, 2), dense_dims=384, dense_similarity="cosine")
    assert body["mappings"]["_source"] == {"excludes": ["sparse_embedding", "embedding"]}
    kept = index_body(
        analyzer="english", version=(8, 12, 2), dense_dims=384, dense_similarity="cosine", vectors_in_source=True
    )
    assert "_source" not in kept["mappings"]


def test_index_body_keeps_json_types_for_meta():
    mappings = index_body(analyzer="english", version=(8, 12, 2), dense_dims=None, dense_similarity="cosine")[
        "mappings"
    ]
    assert mappings["date_detection"] is False and mappings["numeric_detection"] is False
    templates = {name: spec for t in mappings["dynamic_templates"] for name, spec in t.items()}
    assert templates["meta_strings"]["mapping"] == {"type": "keyword", "ignore_above": 4096}
    assert templates["meta_longs"] == {
        "path_match": "meta.*",
        "match_mapping_type": "long",
        "mapping": {"type": "double", "coerce": False},
    }
    assert templates["meta_doubles"]["mapping"] == {"type": "double", "coerce": False}


def test_field_types_walks_nested_meta():
    mappings = {
        "properties": {
            "content": {"type": "text"},
            "meta": {
                "dynamic": "true",
                "properties": {
                    "year": {"type": "double"},
                    "author": {"properties": {"name": {"type": "keyword"}}},
                    "flag": {"type": "boolean"},
                },
            },
        }
    }
    assert field_types(mappings) == {"meta.year": "double", "meta.author.name": "keyword", "meta.flag": "boolean"}
    assert field_types({}) == {}


def test_scan_and_by_query_bodies():
    body = queries.scan_request({"lang": "en"}, batch_size=50, pit_id="P", search_after=[3, 7])
    assert body == {
        "query": {"bool": {"filter": [{"term": {"meta.lang": "en"}}]}},
        "size": 50,
        "sort": [{"_shard_doc": "asc"}],
        "pit": {"id": "P", "keep_alive": "2m"},
        "_source": SOURCE,
        "track_total_hits": False,
        "search_after": [3, 7],
    }
    assert queries.scan_request(None, batch_size=1, pit_id="P", include_embeddings=True)["_source"] is True
    assert queries.match_query(None) == {"match_all": {}}
    assert queries.match_query({"$id": "a"}) == {"ids": {"values": ["a"]}}
    script = queries.update_meta_script({"a": 1})
    assert script["params"] == {"meta": {"a": 1}} and "putAll(params.meta)" in script["source"]


def test_by_filter_helpers():
    with pytest.raises(
        ConfigurationError, match=r"delete_by_filter needs a filter, got \{\}; to delete every document"
    ):
        by_filter.required_filter({}, "delete_by_filter", "delete_all_documents()")
    with pytest.raises(ConfigurationError, match="non-empty string keys"):
        by_filter.check_meta({1: "x"})
    with pytest.raises(ConfigurationError, match="meta must be JSON"):
        by_filter.check_meta({"a": float("nan")})
    assert by_filter.by_query_count({"deleted": 3, "failures": []}, "deleted", "i") == 3
    with pytest.raises(StoreError, match=r"1 document\(s\) of index 'i' could not be updated \(2 were\)"):
        by_filter.by_query_count({"updated": 2, "failures": [{"cause": {"type": "x"}}]}, "updated", "i")
    with pytest.raises(StoreError, match="would drop the vectors of 4 matching document"):
        by_filter.refuse_vector_loss(4, "i")
    by_filter.refuse_vector_loss(0, "i")
