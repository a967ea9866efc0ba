"""Bad input on the core API, as a new user would try it: each case is a clear error or a documented behaviour.

Kinds: empty, huge, malformed, wrong type, wrong dimension, NaN/inf, out-of-range index, lone surrogate,
int ids. Store cases go through the public `EmbeddedStore` API in memory and check that nothing valid is
lost. (Cases that need the real encoders are in tests/integration/test_bad_input_models.py.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lens_rag.chunking import Chunker
from lens_rag.documents import Document, validate_document
from lens_rag.errors import BulkWriteError, ConfigurationError, DatasetError
from lens_rag.ingest import load_source
from lens_rag.sparse import SparseVector
from lens_rag.stores.embedded import EmbeddedStore
from lens_rag.validation import check_dense_query, check_sparse_query, check_text, check_top_k

pytestmark = pytest.mark.unit

NAN, INF = float("nan"), float("inf")


def _store(dim: int = 4) -> EmbeddedStore:
    store = EmbeddedStore(None, progress=False)
    docs = []
    for i, text in enumerate(["Scurvy is caused by a lack of vitamin C.", "Aspirin lowers fever.", "Volcanoes erupt."]):
        vec = np.zeros(dim, dtype=np.float32)
        vec[i] = 1.0
        docs.append(
            Document(
                id=f"d{i}",
                content=text,
                embedding=vec.tolist(),
                sparse_embedding=SparseVector.from_dict({i: 1.0, 50: 0.5}),
            )
        )
    store.write_documents(docs)
    return store


@pytest.fixture(scope="module")
def store() -> Any:
    s = _store()
    yield s
    s.close()


# ------------------------------------------------------------------ queries: one table, every search method
# (label, call(store), error regex)
QUERY_ERRORS: list[tuple[str, Callable[[EmbeddedStore], Any], str]] = [
    ("top_k None", lambda s: s.search_bm25("fever", top_k=None), "top_k must be an int >= 0, got None"),
    ("top_k float", lambda s: s.search_bm25("fever", top_k=2.5), "top_k must be an int >= 0, got 2.5"),
    ("top_k bool", lambda s: s.search_dense([1, 0, 0, 0], top_k=True), "got True of type bool"),
    ("top_k negative", lambda s: s.search_sparse({1: 1.0}, top_k=-1), "top_k must be >= 0, got -1"),
    ("top_k string", lambda s: s.search_bm25("fever", top_k="5"), "got '5' of type str"),
    ("dense NaN", lambda s: s.search_dense([NAN, 0, 0, 0]), "NaN or infinite"),
    ("dense inf", lambda s: s.search_dense([INF, 0, 0, 0]), "NaN or infinite"),
    ("dense 2-D", lambda s: s.search_dense([[1, 0, 0, 0]]), r"1-D vector, got an array of shape \(1, 4\)"),
    ("dense wrong dimension", lambda s: s.search_dense([1.0, 0.0]), "has 2 dimensions but the store holds 4"),
    ("dense empty", lambda s: s.search_dense([]), "empty vector"),
    ("dense text", lambda s: s.search_dense("fever"), "must be a dense vector"),
    ("dense strings", lambda s: s.search_dense(["a", "b", "c", "d"]), "dense vector of numbers"),
    ("dense None", lambda s: s.search_dense(None), "must be a dense vector"),
    ("sparse NaN", lambda s: s.search_sparse({1: NAN}), "finite"),
    ("sparse index 2**31", lambda s: s.search_sparse({2**31: 1.0}), "too large"),
    ("sparse index 2**40", lambda s: s.search_sparse({2**40: 1.0}), "too large"),
    ("sparse negative index", lambda s: s.search_sparse({-3: 1.0}), ">= 0"),
    ("sparse text", lambda s: s.search_sparse("fever"), "must be a SparseVector"),
    ("sparse dense list", lambda s: s.search_sparse([0.1, 0.2]), "must be a SparseVector"),
]


@pytest.mark.parametrize(("label", "call", "message"), QUERY_ERRORS, ids=[c[0] for c in QUERY_ERRORS])
def test_bad_queries_are_clear_errors(store: EmbeddedStore, label: str, call: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        call(store)
    assert store.count_documents() == 3  # nothing lost


def test_documented_query_edges(store: EmbeddedStore) -> None:
    """Not errors, by design: `top_k=0` returns nothing; an all-zero or empty sparse query matches nothing."""
    assert store.search_bm25("fever", top_k=0) == []
    assert store.search_dense([1, 0, 0, 0], top_k=np.int64(1))[0].id == "d0"  # numpy ints are ints
    assert store.search_sparse(SparseVector.empty()) == []
    assert store.search_sparse({7: 1.0}) == []  # a dimension no document has


# ------------------------------------------------------------------ constructing vectors
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SparseVector(np.array([1]), np.array([NAN], dtype=np.float32)), "NaN or infinite"),
        (lambda: SparseVector(np.array([1]), np.array([-INF], dtype=np.float32)), "NaN or infinite"),
        (lambda: SparseVector(np.array([2**31]), np.array([1.0], dtype=np.float32)), "too large"),
        (lambda: SparseVector(np.array([-1]), np.array([1.0], dtype=np.float32)), ">= 0"),
        (lambda: SparseVector.from_arrays([1, 2], [1.0]), "differ in length"),
        (lambda: SparseVector.from_arrays([0.5], [1.0]), "indices must be integers"),
        (lambda: SparseVector.from_arrays([1], [1e39]), "NaN or infinite"),
        (lambda: SparseVector.from_dict({"vitamin": 1.0}), "not a dimension index"),
        (lambda: check_text("a\ud800b"), "lone surrogate"),
        (lambda: check_top_k(1.0, name="candidate_k"), r"candidate_k must be an int >= 0, got 1\.0 .* \(use 1\)"),
    ],
)
def test_bad_vectors_are_refused_at_construction(build: Callable[[], Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build()


# ------------------------------------------------------------------ writing documents: per-document refusal
def _vec(i: int, dim: int = 4) -> list[float]:
    v = [0.0] * dim
    v[i % dim] = 1.0
    return v


def _forged_sparse(indices: list[int], values: list[float]) -> SparseVector:
    """A SparseVector whose arrays were changed after construction (construction itself refuses these)."""
    v = SparseVector.from_dict({1: 1.0})
    object.__setattr__(v, "indices", np.array(indices, dtype=np.int64))
    object.__setattr__(v, "values", np.array(values, dtype=np.float32))
    return v


BAD_DOCUMENTS: list[tuple[str, Any, str]] = [
    ("int id", Document(id=123, content="int id"), r"id must be a str, got int 123; pass id=str\(123\)"),  # type: ignore[arg-type]
    ("empty id", Document(id="", content="x"), "non-empty"),
    ("lone surrogate in content", Document(id="s1", content="bad \ud800 text"), "lone surrogate"),
    ("lone surrogate in id", Document(id="s\udc80", content="text"), "lone surrogate"),
    ("lone surrogate in meta", Document(id="s2", content="t", meta={"k": "\ud800"}), "lone surrogate"),
    ("empty content", Document(id="e1", content="  \n"), "content is empty"),
    ("None content", Document(id="e2", content=None), "content must be a str"),  # type: ignore[arg-type]
    ("NaN embedding", Document(id="n1", content="t", embedding=[NAN, 0, 0, 0]), "NaN or infinite"),
    ("wrong dimension", Document(id="w1", content="t", embedding=[1.0, 0.0]), "has 2 dimensions, the store holds 4"),
    ("2-D embedding", Document(id="w2", content="t", embedding=[[1.0, 0, 0, 0]]), "1-D"),  # type: ignore[list-item]
    ("string embedding", Document(id="w3", content="t", embedding=["a"] * 4), "list of floats"),  # type: ignore[list-item]
    ("sparse index 2**31", Document(id="x1", content="t", sparse_embedding=_forged_sparse([2**31], [1.0])), "outside"),
    ("sparse NaN", Document(id="x2", content="t", sparse_embedding=_forged_sparse([3], [NAN])), "NaN or infinite"),
    ("sparse dict", Document(id="x3", content="t", sparse_embedding={1: 1.0}), "must be a SparseVector"),  # type: ignore[arg-type]
    ("NaN in meta", Document(id="m1", content="t", meta={"score": NAN}), "JSON has no NaN"),
    ("object in meta", Document(id="m2", content="t", meta={"when": object()}), "not JSON-serialisable"),
    ("meta not a dict", Document(id="m3", content="t", meta=["a"]), "meta must be a dict"),  # type: ignore[arg-type]
    ("not a Document", {"id": "d", "content": "t"}, "expected a lens_rag Document, got dict"),
]


@pytest.mark.parametrize(("label", "bad", "message"), BAD_DOCUMENTS, ids=[c[0] for c in BAD_DOCUMENTS])
def test_bad_document_is_refused_alone_and_the_batch_is_written(label: str, bad: Any, message: str) -> None:
    reason = validate_document(bad, 4)
    assert reason is not None and re.search(message, reason), reason
    store = EmbeddedStore(None, progress=False)
    good = [Document(id=f"g{i}", content=f"good passage {i}", embedding=_vec(i)) for i in range(3)]
    with pytest.raises(BulkWriteError) as info:
        store.write_documents([good[0], bad, good[1], good[2]])
    assert info.value.written == 3
    assert len(info.value.failed) == 1
    assert re.search(message, next(iter(info.value.failed.values())))
    assert store.count_documents() == 3  # nothing valid lost
    assert {d.id for d in store.get_documents(["g0", "g1", "g2"])} == {"g0", "g1", "g2"}
    store.close()


def test_int_and_str_ids_never_collide_silently() -> None:
    store = EmbeddedStore(None, progress=False)
    store.write_documents([Document(id="123", content="the string id")])
    with pytest.raises(BulkWriteError, match=r"pass id=str\(123\)"):
        store.write_documents([Document(id=123, content="the int id")])  # type: ignore[arg-type]
    (doc,) = store.get_documents(["123"])
    assert doc.content == "the string id"  # not replaced
    store.close()


# ------------------------------------------------------------------ huge input
def test_huge_text_document_is_written_and_searchable() -> None:
    """5 MB of text in one document: written and found by BM25 (encoders truncate at their window, with a
    warning — see the integration twin); ingest splits it into window-sized chunks instead."""
    huge = ("Scurvy follows a long lack of vitamin C in sailors' diets. " * 90_000)[:5_000_000]
    store = EmbeddedStore(None, progress=False)
    store.write_documents([Document(id="huge", content=huge), Document(id="small", content="Aspirin lowers fever.")])
    assert store.search_bm25("scurvy", top_k=1)[0].id == "huge"
    assert len(store.get_documents(["huge"])[0].content) == 5_000_000
    store.close()


def test_huge_file_is_chunked_to_the_window(tmp_path: Path) -> None:
    sentence = "Scurvy follows a long lack of vitamin C in sailors' diets. "
    (tmp_path / "huge.txt").write_text(sentence * 5_000, encoding="utf-8")  # 300 kB, one paragraph
    chunker = Chunker()
    docs = list(load_source(tmp_path, progress=False))
    assert len(docs) > 250
    sample = docs[:: max(1, len(docs) // 25)]
    assert all(chunker.count(d.content) <= 254 for d in sample)


def test_huge_single_word_is_cut_to_the_window() -> None:
    blob = "-".join(["x1"] * 30_000)  # 90 kB without a single space: every piece a token
    chunks = Chunker(chunk_size=254, chunk_overlap=0).split(blob)
    assert len(chunks) > 300
    assert max(Chunker().count(c) for c in chunks[:50]) <= 254


# ------------------------------------------------------------------ malformed sources
MALFORMED_LINES = [
    ("not JSON", "{'_id': 'a'}", "not valid JSON"),
    ("truncated JSON", '{"_id": "a", "text": "x"', "not valid JSON"),
    ("array", '["a"]', "expected a JSON object, got list"),
    ("no id", '{"text": "x"}', "no '_id' or 'id'"),
    ("null id", '{"_id": null, "text": "x"}', "no '_id' or 'id'"),
    ("float id", '{"_id": 1.5, "text": "x"}', "ids must be strings or integers"),
    ("no text", '{"_id": "a", "body": "x"}', "no string 'text' or 'content'"),
    ("numeric text", '{"_id": "a", "text": 5}', "no string 'text' or 'content'"),
    ("NaN value", '{"_id": "a", "text": "x", "v": NaN}', "NaN is not valid JSON"),
    ("lone surrogate id", '{"_id": "a\\ud800", "text": "x"}', "lone surrogate"),
]


@pytest.mark.parametrize(("label", "line", "message"), MALFORMED_LINES, ids=[c[0] for c in MALFORMED_LINES])
def test_malformed_jsonl_line_is_reported_with_its_line_number_before_loading(
    tmp_path: Path, label: str, line: str, message: str
) -> None:
    path = tmp_path / "docs.jsonl"
    good = [json.dumps({"_id": f"g{i}", "text": f"good {i}"}) for i in range(300)]
    path.write_text("\n".join([*good, line, *good[:1]]) + "\n", encoding="utf-8")
    reader = load_source(path, progress=False)
    scan = reader.scan()  # before any model or write
    assert scan.error_count == 1 and scan.errors[0].line == 301
    assert re.search(message, scan.errors[0].reason), scan.errors[0].reason
    with pytest.raises(DatasetError, match=rf"docs\.jsonl:301: .*{message}"):
        scan.raise_for_errors()
    with pytest.raises(DatasetError, match=rf"docs\.jsonl, line 301: .*{message}"):
        list(reader)
    skipping = load_source(path, progress=False, on_error="skip")
    assert len(list(skipping)) == 301 and [s.line for s in skipping.skipped] == [301]  # the good ones all load


def test_non_utf8_and_empty_sources(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"gave no documents .*not valid UTF-8 \(byte 0xe9"):
        list(load_source(tmp_path, progress=False))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DatasetError, match="is empty"):
        load_source(empty)
    with pytest.raises(DatasetError, match="does not exist"):
        load_source(tmp_path / "missing.jsonl")


def test_lone_surrogates_in_a_source_are_replaced_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"_id": "a", "text": "vitamin \ud800 C", "source": "pubmed"}) + "\n", encoding="utf-8")
    reader = load_source(path, progress=False)
    (doc,) = list(reader)
    assert doc.content == "vitamin \ufffd C" and validate_document(doc, None) is None
    assert doc.meta["source"] == "pubmed" and doc.meta["source_path"] == str(path)
    assert reader.warnings and reader.warnings[0].line == 1


def test_dense_and_sparse_checks_directly() -> None:
    assert check_dense_query(np.ones(3, dtype=np.float64), 3).dtype == np.float32
    assert check_sparse_query({"5": 1.0}).indices.tolist() == [5]
