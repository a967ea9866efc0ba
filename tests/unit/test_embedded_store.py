from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lens_rag.documents import Document
from lens_rag.errors import BulkWriteError, ConfigurationError, StoreCorruptedError
from lens_rag.sparse import SparseVector
from lens_rag.stores.base import AsyncStore, Store
from lens_rag.stores.embedded import EmbeddedStore

pytestmark = pytest.mark.unit

TEXTS = {
    "scurvy": "Scurvy is caused by a lack of vitamin C in the diet.",
    "rickets": "Rickets follows a lack of vitamin D and calcium.",
    "aspirin": "Aspirin lowers the risk of heart attack by blocking platelets.",
    "volcano": "Volcanoes erupt where magma reaches the surface.",
}


def docs(dim: int = 4) -> list[Document]:
    out = []
    for i, (doc_id, text) in enumerate(TEXTS.items()):
        vec = np.zeros(dim, dtype=np.float32)
        vec[i % dim] = 1.0
        out.append(
            Document(
                id=doc_id,
                content=text,
                meta={"topic": "vitamin" if "vitamin" in text else "other", "n": i},
                embedding=vec.tolist(),
                sparse_embedding=SparseVector.from_dict({i: 1.0, 100 + i: 0.5, 7: 0.1 * (i + 1)}),
            )
        )
    return out


def random_docs(n: int, start: int = 0, seed: int = 0, dim: int = 8) -> list[Document]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(start, start + n):
        idx = np.unique(rng.integers(0, 300, size=12))
        out.append(
            Document(
                id=f"d{i}",
                content=f"passage number {i} about topic{i % 7} and word{i % 11}",
                meta={"i": i, "mod": i % 5},
                embedding=rng.standard_normal(dim).astype(np.float32).tolist(),
                sparse_embedding=SparseVector(idx.astype(np.int64), rng.uniform(0.1, 2, idx.size).astype(np.float32)),
            )
        )
    return out


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> EmbeddedStore:
    s = EmbeddedStore(None if request.param == "memory" else tmp_path / "store", progress=False)
    s.write_documents(docs())
    return s


def test_implements_the_store_protocols() -> None:
    assert isinstance(EmbeddedStore(None), Store)
    assert isinstance(EmbeddedStore(None), AsyncStore)


def test_construction_does_no_io(tmp_path: Path) -> None:
    s = EmbeddedStore(tmp_path / "never-created")
    assert s.count_documents() == 0 and s.search_bm25("x") == [] and s.info == {}
    assert s.delete_documents(["x"]) == 0
    assert not (tmp_path / "never-created").exists()  # reads and no-op deletes create nothing


def test_bm25_finds_the_relevant_document(store: EmbeddedStore) -> None:
    hits = store.search_bm25("what does a lack of vitamin C cause?", top_k=2)
    assert hits[0].id == "scurvy"
    assert hits[0].rank == 1 and hits[0].sources["bm25"].rank == 1
    assert hits[0].document.embedding is None  # vectors stay out of results
    assert store.search_bm25("zzzz unknown words", top_k=5) == []
    assert store.search_bm25("the of a", top_k=5) == []  # only stopwords


def test_sparse_scores_are_dot_products(store: EmbeddedStore) -> None:
    q = SparseVector.from_dict({1: 2.0, 7: 1.0, 5000: 3.0})  # 5000 is beyond every document: ignored
    hits = store.search_sparse(q, top_k=10)
    by_id = {h.id: h.score for h in hits}
    assert by_id["rickets"] == pytest.approx(2.0 * 1.0 + 0.2)
    assert by_id["scurvy"] == pytest.approx(0.1)
    assert hits[0].id == "rickets"


def test_dense_is_cosine(store: EmbeddedStore) -> None:
    hits = store.search_dense([0.0, 0.0, 3.0, 0.0], top_k=2)
    assert hits[0].id == "aspirin" and hits[0].score == pytest.approx(1.0)
    with pytest.raises(ConfigurationError, match="3 dimensions but the store holds 4"):
        store.search_dense([1.0, 0.0, 0.0], top_k=2)


def test_filters(store: EmbeddedStore) -> None:
    hits = store.search_bm25("lack of vitamin", top_k=10, filters={"topic": "vitamin", "n": {"gte": 1}})
    assert [h.id for h in hits] == ["rickets"]
    assert store.search_dense([1, 0, 0, 0], top_k=10, filters={"n": {"in": [2, 3]}})[0].id in {"aspirin", "volcano"}


def test_boolean_filters_run_in_sql(store: EmbeddedStore) -> None:
    q = SparseVector.from_dict({7: 1.0})  # every document has dimension 7
    either = {"$or": [{"n": 0}, {"n": 3}]}
    assert {h.id for h in store.search_sparse(q, filters=either)} == {"scurvy", "volcano"}
    assert {h.id for h in store.search_sparse(q, filters={"$not": {"topic": "vitamin"}})} == {"aspirin", "volcano"}
    nested = {"$and": [{"topic": "other"}, {"$not": {"n": {"$lt": 3}}}]}
    assert [h.id for h in store.search_dense([1, 1, 1, 1], filters=nested)] == ["volcano"]
    assert store.count_documents({"$or": [{"topic": "vitamin"}, {"n": 2}]}) == 3
    assert store.search_sparse(q, filters={"n": {"in": []}}) == []
    with pytest.raises(ConfigurationError):
        store.search_bm25("vitamin", filters={"n": {"near": 3}})


def test_top_k_validation(store: EmbeddedStore) -> None:
    assert store.search_bm25("vitamin", top_k=0) == []
    assert store.search_dense([1, 0, 0, 0], top_k=0) == []
    assert store.search_sparse(SparseVector.from_dict({1: 1.0}), top_k=0) == []
    for bad in (-1, None, 2.5, "3", True):
        with pytest.raises(ConfigurationError, match="top_k"):
            store.search_bm25("vitamin", top_k=bad)  # type: ignore[arg-type]
    assert len(store.search_bm25("vitamin", top_k=np.int64(1))) == 1  # type: ignore[arg-type]


def test_bad_queries_are_refused(store: EmbeddedStore) -> None:
    with pytest.raises(ConfigurationError, match="NaN or infinite"):
        store.search_dense([float("nan"), 0, 0, 0])
    with pytest.raises(ConfigurationError, match="NaN or infinite"):
        store.search_dense([float("inf"), 0, 0, 0])
    with pytest.raises(ConfigurationError, match="1-D"):
        store.search_dense([[1.0, 0, 0, 0]])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError):
        store.search_sparse({5: float("nan")})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="str"):
        store.search_bm25(["vitamin"])  # type: ignore[arg-type]


def test_overwrite_is_idempotent_and_delete(store: EmbeddedStore) -> None:
    store.write_documents(docs())
    assert store.count_documents() == 4
    changed = Document(id="volcano", content="Volcanoes and vitamin C have nothing in common.", meta={"n": 9})
    store.write_documents([changed])
    assert store.count_documents() == 4
    assert store.get_documents(["volcano"])[0].content.startswith("Volcanoes and vitamin C")
    # The replaced row lost its vectors, and BM25 sees the new text.
    assert "volcano" not in {h.id for h in store.search_dense([0, 0, 0, 1], top_k=4)}
    assert "volcano" in {h.id for h in store.search_bm25("vitamin", top_k=4)}
    assert store.delete_documents(["volcano", "unknown"]) == 1
    assert store.count_documents() == 3
    assert store.get_documents(["volcano"]) == []
    with pytest.raises(ConfigurationError, match="list of ids"):
        store.delete_documents("scurvy")


def test_persistence_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store"
    s = EmbeddedStore(path, progress=False)
    s.write_documents(docs())
    s.delete_documents(["rickets"])
    s.set_info({"dense": {"model": "x"}})
    s.search_bm25("vitamin")  # builds and saves the BM25 index
    s.close()
    assert sorted(p.name for p in path.iterdir() if not p.name.startswith("store.sqlite-")) == ["cache", "store.sqlite"]
    again = EmbeddedStore(path, progress=False)
    assert again.count_documents() == 3
    assert again.info == {"dense": {"model": "x"}}
    assert again.dense_dimension == 4
    assert again.search_bm25("lack of vitamin C")[0].id == "scurvy"
    assert again.search_dense([0, 1, 0, 0], top_k=4)[0].id != "rickets"
    assert again.search_sparse(SparseVector.from_dict({2: 1.0}))[0].id == "aspirin"
    again.write_documents([Document(id="new", content="A new passage about vitamin C.", embedding=[1, 1, 0, 0])])
    again.close()
    assert EmbeddedStore(path).count_documents() == 4


def test_set_info_before_the_first_write_leaves_a_store_that_opens(tmp_path: Path) -> None:
    path = tmp_path / "store"
    EmbeddedStore(path).set_info({"encoders": {"dense": {"name": "m"}}})
    s = EmbeddedStore(path, progress=False)
    assert s.count_documents() == 0 and s.search_bm25("vitamin") == [] and s.dense_dimension is None
    assert s.info == {"encoders": {"dense": {"name": "m"}}}
    s.write_documents(docs())
    assert s.update_info({"extra": 1}) == {"encoders": {"dense": {"name": "m"}}, "extra": 1}
    assert EmbeddedStore(path).info["extra"] == 1 and EmbeddedStore(path).count_documents() == 4
    with pytest.raises(ConfigurationError, match="JSON"):
        s.set_info({"bad": float("nan")})


def test_edit_info_is_an_atomic_check_and_record(tmp_path: Path) -> None:
    s = EmbeddedStore(tmp_path / "s")

    def record(info: dict) -> dict:
        if "encoder" in info and info["encoder"] != "m1":
            raise ConfigurationError("other encoder")
        return {**info, "encoder": "m1"}

    assert s.edit_info(record) == {"encoder": "m1"}
    assert s.edit_info(lambda info: None) == {"encoder": "m1"}
    with pytest.raises(ConfigurationError, match="other encoder"):
        s.edit_info(lambda info: record({"encoder": "m2"}))
    with pytest.raises(ConfigurationError, match="JSON"):
        s.edit_info(lambda info: {"x": object()})
    assert EmbeddedStore(tmp_path / "s").info == {"encoder": "m1"}


def test_partial_failure_writes_the_rest_and_names_the_bad_ids(store: EmbeddedStore) -> None:
    bad = [
        Document(id="ok", content="A valid passage.", embedding=[1, 0, 0, 0]),
        Document(id="short", content="Wrong dims.", embedding=[1.0, 0.0]),
        Document(id="empty", content="   "),
        Document(id="nan", content="NaN vector", embedding=[float("nan"), 0, 0, 0]),
        Document(id="surrogate", content="broken \ud800 text"),
        Document(id=123, content="int id"),  # type: ignore[arg-type]
        Document(id="nanmeta", content="meta with NaN", meta={"x": float("nan")}),
    ]
    with pytest.raises(BulkWriteError) as err:
        store.write_documents(bad)
    assert set(err.value.failed) == {"short", "empty", "nan", "surrogate", "123", "nanmeta"}
    assert "2 dimensions, the store holds 4" in err.value.failed["short"]
    assert "surrogate" in err.value.failed["surrogate"]
    assert err.value.written == 1
    assert store.get_documents(["ok"])[0].content == "A valid passage."
    assert store.count_documents() == 5


def test_corrupted_database_is_reported_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "store"
    s = EmbeddedStore(path)
    s.write_documents(docs())
    s.close()
    for extra in path.glob("store.sqlite-*"):
        extra.unlink()
    (path / "store.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreCorruptedError, match="cannot be read"):
        EmbeddedStore(path).count_documents()
    assert (path / "store.sqlite").read_bytes() == b"this is not a database" * 100


def test_a_truncated_database_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "store"
    s = EmbeddedStore(path, progress=False)
    s.write_documents(random_docs(300))
    s.close()
    db_file = path / "store.sqlite"
    with db_file.open("r+b") as f:
        f.truncate(db_file.stat().st_size // 2)
    for call in (lambda t: t.count_documents(), lambda t: t.search_dense(np.ones(8))):
        with pytest.raises(StoreCorruptedError, match="damaged"):
            call(EmbeddedStore(path, progress=False))


def test_a_format_1_store_is_refused_with_a_fix(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"format": "lens-rag-embedded", "version": 1}')
    with pytest.raises(StoreCorruptedError, match="re-index"):
        EmbeddedStore(tmp_path).count_documents()


def test_a_damaged_vector_blob_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "store"
    EmbeddedStore(path).write_documents(docs())
    with sqlite3.connect(path / "store.sqlite") as conn:
        conn.execute("UPDATE vectors SET sparse_indptr = x'0000'")
    s = EmbeddedStore(path)
    assert s.count_documents() == 4  # texts are fine
    with pytest.raises(StoreCorruptedError, match="vector blob is damaged"):
        s.search_sparse(SparseVector.from_dict({1: 1.0}))


def test_refuses_a_non_empty_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("my notes")
    with pytest.raises(StoreCorruptedError, match="not a lens-rag store"):
        EmbeddedStore(tmp_path).write_documents(docs())
    assert (tmp_path / "notes.txt").read_text() == "my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    other = tmp_path / "other"
    other.mkdir()
    with sqlite3.connect(other / "store.sqlite") as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreCorruptedError, match="something else"):
        EmbeddedStore(other).write_documents(docs())


def test_deleted_and_damaged_caches_are_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import shutil

    path = tmp_path / "store"
    s = EmbeddedStore(path, progress=False)
    s.write_documents(docs())
    expected = [h.id for h in s.search_bm25("lack of vitamin")]
    s.close()
    shutil.rmtree(path / "cache")
    assert [h.id for h in EmbeddedStore(path, progress=False).search_bm25("lack of vitamin")] == expected
    (index_dir,) = [p for p in (path / "cache").iterdir() if p.name.startswith("bm25-")]
    for f in index_dir.iterdir():
        if f.suffix == ".npy":
            f.write_bytes(f.read_bytes()[:20])  # truncated
    (path / "cache" / ".tmp-orphan").mkdir()  # left by a crash mid-save
    assert [h.id for h in EmbeddedStore(path, progress=False).search_bm25("lack of vitamin")] == expected
    assert "rebuilding" in caplog.text
    assert not (path / "cache" / ".tmp-orphan").exists()
    again = EmbeddedStore(path, progress=False)
    assert [h.id for h in again.search_bm25("lack of vitamin")] == expected  # the rebuilt one loads


def test_bm25_cache_is_keyed_by_its_parameters(tmp_path: Path) -> None:
    path = tmp_path / "store"
    base = EmbeddedStore(path, progress=False)
    base.write_documents(docs())
    default = {h.id: h.score for h in base.search_bm25("lack of vitamin")}
    base.close()
    for kwargs in ({"bm25_k1": 0.5}, {"bm25_b": 0.2}):
        other = {h.id: h.score for h in EmbeddedStore(path, progress=False, **kwargs).search_bm25("lack of vitamin")}
        mem = EmbeddedStore(None, progress=False, **kwargs)
        mem.write_documents(docs())
        assert other == pytest.approx({h.id: h.score for h in mem.search_bm25("lack of vitamin")})
        assert other != pytest.approx(default)
    # stemming is part of the key too: "erupts" only finds "erupt" through the English stemmer
    assert [h.id for h in EmbeddedStore(path, progress=False).search_bm25("erupting")] == ["volcano"]
    assert EmbeddedStore(path, progress=False, language=None).search_bm25("erupting") == []


def test_document_store_methods(store: EmbeddedStore) -> None:
    assert store.count_documents() == 4
    assert store.count_documents({"topic": "vitamin"}) == 2
    assert [d.id for d in store.filter_documents({"topic": "other"})] == ["aspirin", "volcano"]
    assert [d.id for d in store.filter_documents(limit=3)] == ["scurvy", "rickets", "aspirin"]
    assert [d.id for d in store.iter_documents(batch_size=1)] == list(TEXTS)
    full = store.filter_documents({"n": 2}, include_embeddings=True)[0]
    assert full.embedding == [0.0, 0.0, 1.0, 0.0]
    assert full.sparse_embedding is not None
    assert full.sparse_embedding.indices.tolist() == [2, 7, 102]
    np.testing.assert_allclose(full.sparse_embedding.values, [1.0, 0.3, 0.5])
    assert store.filter_documents({"n": 2})[0].embedding is None
    assert store.update_by_filter({"topic": "vitamin"}, {"reviewed": True, "n": 10}) == 2
    assert store.get_documents(["rickets"])[0].meta == {"topic": "vitamin", "n": 10, "reviewed": True}
    assert store.count_documents({"reviewed": True}) == 2
    assert store.search_sparse(SparseVector.from_dict({7: 1.0}), filters={"reviewed": True})[0].id == "rickets"
    assert store.delete_by_filter({"n": 10}) == 2
    assert store.count_documents() == 2
    with pytest.raises(ConfigurationError, match="delete_all_documents"):
        store.delete_by_filter({})
    assert store.delete_all_documents() == 2
    assert store.count_documents() == 0 and store.search_dense([1, 0, 0, 0]) == []
    assert store.dense_dimension is None
    store.write_documents([Document(id="x", content="new start", embedding=[1.0, 2.0])])  # a new dimension is fine
    assert store.search_dense([1.0, 2.0])[0].id == "x"


def test_a_store_without_vectors_of_a_kind_says_so(tmp_path: Path) -> None:
    s = EmbeddedStore(tmp_path / "s", progress=False)
    assert s.search_dense([1.0, 0.0]) == [] and s.search_sparse(SparseVector.from_dict({1: 1.0})) == []
    s.write_documents([Document(id="a", content="only text here")])
    with pytest.raises(ConfigurationError, match="indexed without a dense encoder"):
        s.search_dense([1.0, 0.0])
    with pytest.raises(ConfigurationError, match="indexed without a sparse encoder"):
        s.search_sparse(SparseVector.from_dict({1: 1.0}))
    assert s.search_bm25("text")[0].id == "a"


def test_two_store_objects_on_one_directory_see_each_others_writes(tmp_path: Path) -> None:
    path = tmp_path / "store"
    a = EmbeddedStore(path, progress=False)
    b = EmbeddedStore(path, progress=False)
    a.write_documents(docs())
    assert b.search_bm25("lack of vitamin C")[0].id == "scurvy"  # b has a BM25 index now
    assert b.search_sparse(SparseVector.from_dict({3: 1.0}))[0].id == "volcano"
    # a writes more and replaces a document: b's long-lived caches must follow, not attach hits to wrong rows
    a.write_documents([Document(id="scurvy", content="Magma and lava only.", embedding=[0, 0, 0, 5])])
    a.write_documents(random_docs(3, dim=4))
    hits = b.search_bm25("lack of vitamin C")
    assert hits[0].id == "rickets"
    for h in hits:
        assert h.document.content == a.get_documents([h.id])[0].content
    assert b.search_bm25("magma lava")[0].id == "scurvy"
    assert {h.id for h in b.search_dense([0, 0, 0, 1], top_k=2)} == {"scurvy", "volcano"}
    assert b.count_documents() == 7
    b.delete_documents(["volcano"])
    assert "volcano" not in {h.id for h in a.search_sparse(SparseVector.from_dict({7: 1.0}), top_k=10)}
    b.compact()  # a new epoch: a's caches start over
    assert a.count_documents() == 6
    assert a.search_bm25("magma lava")[0].id == "scurvy"
    assert a.search_sparse(SparseVector.from_dict({1: 1.0}))[0].id == "rickets"
    b.set_info({"by": "b"})
    assert a.info == {"by": "b"}


def test_concurrent_first_searches_build_the_bm25_index_once(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "store"
    EmbeddedStore(path, progress=False).write_documents(docs() + random_docs(50, dim=4))
    stores = [EmbeddedStore(path, progress=False) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda st: [h.id for h in st.search_bm25("lack of vitamin")], stores))
    assert all(r == results[0] for r in results) and results[0][0] in {"scurvy", "rickets"}
    assert len([p for p in (path / "cache").iterdir() if p.name.startswith("bm25-")]) == 1


def test_iterating_while_another_object_compacts_fails_clearly(tmp_path: Path) -> None:
    from lens_rag.errors import StoreError

    path = tmp_path / "store"
    a, b = EmbeddedStore(path, progress=False), EmbeddedStore(path, progress=False)
    a.write_documents(random_docs(10, dim=4))
    a.delete_documents(["d0"])
    pages = a.iter_documents(batch_size=3)
    assert next(pages).id == "d1"
    b.compact()
    with pytest.raises(StoreError, match="compacted"):
        list(pages)


def test_store_refuses_a_sparse_index_that_would_wrap_int32(store: EmbeddedStore) -> None:
    vec = SparseVector.from_dict({1: 1.0})
    object.__setattr__(vec, "indices", np.array([2**31], dtype=np.int64))  # bypass SparseVector's own check
    with pytest.raises(BulkWriteError) as err:
        store.write_documents([Document(id="huge", content="wraps", sparse_embedding=vec), docs()[0]])
    assert list(err.value.failed) == ["huge"] and err.value.written == 1
    assert store.search_sparse(SparseVector.from_dict({0: 1.0}))[0].id == "scurvy"  # no wrapped column


def _write_in_child(store: EmbeddedStore) -> None:
    store.write_documents([Document(id="child", content="written by a forked child about magma")])


def test_a_store_object_inherited_through_fork_opens_its_own_connection(tmp_path: Path) -> None:
    import multiprocessing

    store = EmbeddedStore(tmp_path / "s", progress=False)
    store.write_documents(docs())
    assert store.search_bm25("magma")[0].id == "volcano"
    child = multiprocessing.get_context("fork").Process(target=_write_in_child, args=(store,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert {h.id for h in store.search_bm25("magma")} == {"volcano", "child"}


def test_incremental_caches_match_a_fresh_store(tmp_path: Path) -> None:
    path = tmp_path / "store"
    s = EmbeddedStore(path, progress=False)
    q_dense = np.random.default_rng(5).standard_normal(8).tolist()
    q_sparse = SparseVector.from_dict({3: 1.0, 50: 0.5, 120: 2.0, 299: 1.0})
    for step in range(12):  # many small appends: the sparse tail blocks get merged on the way
        s.write_documents(random_docs(20, start=step * 20, seed=step))
        s.search_sparse(q_sparse)
        s.search_dense(q_dense)
        if step == 5:
            s.delete_documents([f"d{i}" for i in range(0, 60, 3)])
    fresh = EmbeddedStore(path, progress=False)
    for method, q in (("search_sparse", q_sparse), ("search_dense", q_dense)):
        got = [(h.id, round(h.score, 5)) for h in getattr(s, method)(q, top_k=50)]
        assert got == [(h.id, round(h.score, 5)) for h in getattr(fresh, method)(q, top_k=50)]
    assert s.count_documents() == 240 - 20


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_selective_filters_agree_with_brute_force(tmp_path: Path, where: str) -> None:
    s = EmbeddedStore(None if where == "memory" else tmp_path / "s", progress=False)
    corpus = random_docs(200) + random_docs(200, start=200, seed=1)
    s.write_documents(corpus[:200])
    s.write_documents(corpus[200:])  # two blocks, rows on both sides of the boundary
    s.delete_documents(["d195"])
    rng = np.random.default_rng(3)
    q_dense = rng.standard_normal(8).astype(np.float32)
    q_sparse = SparseVector.from_dict({int(i): 1.0 for i in np.unique(rng.integers(0, 300, 40))})
    for flt in ({"i": {"$in": [3, 190, 195, 199, 200, 201, 390]}}, {"mod": 2}):  # 1.5 % (scores those rows) and 20 %
        keep = [d for d in corpus if d.id != "d195" and all(d.meta[k] in _accepted(v) for k, v in flt.items())]
        dense = {
            d.id: float(np.dot(d.embedding, q_dense) / np.linalg.norm(d.embedding) / np.linalg.norm(q_dense))
            for d in keep
        }
        sparse = {d.id: q_sparse.dot(d.sparse_embedding) for d in keep}
        sparse = {k: v for k, v in sparse.items() if v > 0}
        for method, q, expected in (("search_dense", q_dense, dense), ("search_sparse", q_sparse, sparse)):
            hits = getattr(s, method)(q, top_k=5, filters=flt)
            best = sorted(expected.items(), key=lambda kv: -kv[1])[:5]
            assert [h.id for h in hits] == [k for k, _ in best], (method, flt)
            assert [h.score for h in hits] == pytest.approx([v for _, v in best], rel=1e-4)


def _accepted(cond: object) -> list[object]:
    return list(cond["$in"]) if isinstance(cond, dict) else [cond]


def test_cached_filter_results_follow_writes_deletes_and_updates(tmp_path: Path) -> None:
    path = tmp_path / "store"
    a, b = EmbeddedStore(path, progress=False), EmbeddedStore(path, progress=False)
    a.write_documents(random_docs(40))
    q = np.ones(8, dtype=np.float32)
    flt = {"mod": 1}

    def ids() -> set[str]:
        return {h.id for h in a.search_dense(q, top_k=100, filters=flt)}

    assert ids() == {f"d{i}" for i in range(40) if i % 5 == 1}
    b.write_documents(random_docs(10, start=40, seed=2))  # appended rows: filtered incrementally
    b.delete_documents(["d1", "d6"])
    assert ids() == {f"d{i}" for i in range(50) if i % 5 == 1} - {"d1", "d6"}
    b.update_by_filter({"i": 11}, {"mod": 4})  # a metadata change: filtered again from scratch
    b.update_by_filter({"i": 12}, {"mod": 1})
    assert ids() == ({f"d{i}" for i in range(50) if i % 5 == 1} - {"d1", "d6", "d11"}) | {"d12"}


def test_updating_the_bm25_expansion_refreshes_bm25(tmp_path: Path) -> None:
    s = EmbeddedStore(tmp_path / "s", progress=False)
    s.write_documents(docs())
    assert s.search_bm25("nocturnal") == []
    assert s.update_by_filter({"n": 3}, {"bm25_expansion": "nocturnal rest"}) == 1
    assert [h.id for h in s.search_bm25("nocturnal")] == ["volcano"]
    assert s.get_documents(["volcano"])[0].content == TEXTS["volcano"]


def test_compact_keeps_live_documents(tmp_path: Path) -> None:
    path = tmp_path / "store"
    s = EmbeddedStore(path, progress=False)
    s.write_documents(docs())
    s.write_documents(docs())
    s.delete_documents(["volcano"])
    s.write_documents([Document(id="plain", content="no vectors at all")])
    s.set_info({"keep": True})
    s.compact()
    assert s.count_documents() == 4
    assert s.info == {"keep": True}
    assert s.search_sparse(SparseVector.from_dict({1: 1.0}))[0].id == "rickets"
    assert s.search_dense([1, 0, 0, 0])[0].id == "scurvy"
    assert s.search_bm25("vectors")[0].id == "plain"
    with sqlite3.connect(path / "store.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*), MAX(row) FROM docs").fetchone() == (4, 3)
    reopened = EmbeddedStore(path, progress=False)
    assert {d.id for d in reopened.filter_documents(include_embeddings=True) if d.embedding} == {
        "scurvy",
        "rickets",
        "aspirin",
    }


def test_to_config_round_trip(tmp_path: Path) -> None:
    s = EmbeddedStore(tmp_path / "s", bm25_k1=0.9, bm25_b=0.4, language=None, progress=False)
    config = s.to_config()
    assert config == json.loads(json.dumps(config))
    assert config["type"] == "embedded_store"
    again = EmbeddedStore.from_config(config)
    assert again.to_config() == config
    assert EmbeddedStore.from_config({"type": "embedded_store"}).path is None
    with pytest.raises(ConfigurationError, match="elasticsearch_store"):
        EmbeddedStore.from_config({"type": "elasticsearch_store"})
    with pytest.raises(ConfigurationError, match="bm25_k1"):
        EmbeddedStore(None, bm25_k1=float("nan"))


def test_async_twins(store: EmbeddedStore) -> None:
    async def run() -> None:
        assert (await store.search_bm25_async("lack of vitamin C", top_k=1))[0].id == "scurvy"
        assert (await store.search_dense_async([0, 1, 0, 0], top_k=1))[0].id == "rickets"
        assert await store.count_documents_async({"topic": "vitamin"}) == 2
        assert [d.id async for d in store.iter_documents_async(batch_size=3)] == list(TEXTS)
        assert await store.delete_by_filter_async({"n": 0}) == 1
        assert len(await store.filter_documents_async()) == 3

    asyncio.run(run())


def test_sparse_kernel_matches_a_full_matrix_product() -> None:
    import scipy.sparse as sp

    from lens_rag.stores.embedded import _sparse_scores

    rng = np.random.default_rng(1)
    matrix = sp.random(500, 300, density=0.05, format="csc", dtype=np.float32, random_state=1)
    for size in [15] * 10 + [250] * 10:  # short queries use posting lists, long ones the CSR product
        idx = np.unique(rng.integers(0, 400, size=size))  # some beyond the matrix's 300 columns
        q = SparseVector(idx.astype(np.int64), rng.uniform(0.1, 2, size=idx.size).astype(np.float32))
        dense_q = np.zeros(400, np.float32)
        dense_q[idx] = q.values
        expected = matrix.tocsr() @ dense_q[:300]
        np.testing.assert_allclose(_sparse_scores(matrix, q), expected, atol=1e-5)  # posting lists
        np.testing.assert_allclose(_sparse_scores(matrix, q, matrix.tocsr()), expected, atol=1e-5)  # picks CSR


def _statements(store: EmbeddedStore) -> list[str]:
    """Record the SQL statements `store`'s own connection runs from now on."""
    seen: list[str] = []
    assert store._conn is not None
    store._conn.set_trace_callback(seen.append)
    return seen


def test_a_warm_search_runs_two_statements_and_no_transaction(tmp_path: Path) -> None:
    s = EmbeddedStore(tmp_path / "s", progress=False)
    s.write_documents(docs())
    searches = {
        "bm25": lambda: s.search_bm25("lack of vitamin"),
        "sparse": lambda: s.search_sparse(SparseVector.from_dict({7: 1.0})),
        "dense": lambda: s.search_dense([1, 0, 0, 0]),
        "filtered": lambda: s.search_dense([1, 0, 0, 0], filters={"topic": "vitamin"}),
    }
    for search in searches.values():
        search()  # warms the caches (in a read transaction)
    seen = _statements(s)
    for name, search in searches.items():
        seen.clear()
        assert search(), name
        assert len(seen) == 2 and not any(q.startswith(("BEGIN", "COMMIT")) for q in seen), (name, seen)
    seen.clear()
    assert s.count_documents() == 4 and s.count_documents({"topic": "vitamin"}) == 2
    assert len(seen) == 2  # one generation check each: counts come from the caches
    s.write_documents(random_docs(2, dim=4))  # our own commit: the next search re-reads the snapshot
    seen.clear()
    assert s.count_documents() == 6
    assert any(q == "BEGIN" for q in seen)


def test_a_commit_between_the_check_and_the_fetch_is_not_missed(tmp_path: Path) -> None:
    """A compaction renumbers rows after the fast path scored them: the fetch notices and the search is redone."""
    path = tmp_path / "store"
    reader, writer = EmbeddedStore(path, progress=False), EmbeddedStore(path, progress=False)
    writer.write_documents(random_docs(30, dim=4) + docs())
    query = SparseVector.from_dict({3: 1.0, 7: 0.5})
    reader.search_sparse(query, top_k=5)  # warm
    fetch = reader._fetch
    calls = []

    def commit_then_fetch(conn: Any, rows: Any) -> Any:
        if not calls:  # once, after the fast path checked the generation and scored with the old rows
            writer.delete_documents([f"d{i}" for i in range(30)])
            writer.compact()  # the four named documents move to rows 0-3
        calls.append(rows)
        return fetch(conn, rows)

    reader._fetch = commit_then_fetch  # type: ignore[method-assign]
    hits = reader.search_sparse(query, top_k=5)
    fresh = EmbeddedStore(path, progress=False).search_sparse(query, top_k=5)
    assert [(h.id, h.document.content, h.score) for h in hits] == [(h.id, h.document.content, h.score) for h in fresh]
    assert len(calls) == 2  # the fast path, then the read transaction
    assert hits and {h.id for h in hits} <= set(TEXTS) and reader.count_documents() == 4


def test_filters_equal_in_python_but_not_in_the_filter_language_are_cached_apart(tmp_path: Path) -> None:
    s = EmbeddedStore(tmp_path / "s", progress=False)
    s.write_documents([Document(id="t", content="a flag", meta={"flag": True}, embedding=[1, 0])])
    s.write_documents([Document(id="one", content="a flag", meta={"flag": 1}, embedding=[1, 0])])
    for flag, want in ((True, "t"), (1, "one"), (True, "t")):  # True == 1 and hash(True) == hash(1) in Python
        assert [h.id for h in s.search_dense([1, 0], filters={"flag": flag})] == [want]
        assert [h.id for h in s.search_bm25("flag", filters={"flag": flag})] == [want]
        assert s.count_documents({"flag": flag}) == 1
