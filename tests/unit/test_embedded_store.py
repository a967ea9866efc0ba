from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lens_rag.documents import Document
from lens_rag.errors import BulkWriteError, ConfigurationError, StoreCorruptedError
from lens_rag.sparse import SparseVector
from lens_rag.stores.base import Store
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


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> EmbeddedStore:
    s = EmbeddedStore(None if request.param == "memory" else tmp_path / "store", progress=False)
    s.write_documents(docs())
    return s


def test_implements_the_store_protocol() -> None:
    assert isinstance(EmbeddedStore(None), Store)


def test_construction_does_no_io(tmp_path: Path) -> None:
    EmbeddedStore(tmp_path / "never-created")
    assert not (tmp_path / "never-created").exists()


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


def test_top_k_zero_and_negative(store: EmbeddedStore) -> None:
    assert store.search_bm25("vitamin", top_k=0) == []
    with pytest.raises(ConfigurationError, match="top_k must be >= 0"):
        store.search_bm25("vitamin", top_k=-1)


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


def test_persistence_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store"
    s = EmbeddedStore(path, progress=False)
    s.write_documents(docs())
    s.delete_documents(["rickets"])
    s.set_info({"dense": {"model": "x"}})
    s.search_bm25("vitamin")  # builds and saves the BM25 index
    s.close()
    again = EmbeddedStore(path, progress=False)
    assert again.count_documents() == 3
    assert again.info == {"dense": {"model": "x"}}
    assert again.search_bm25("lack of vitamin C")[0].id == "scurvy"
    assert again.search_dense([0, 1, 0, 0], top_k=4)[0].id != "rickets"
    assert again.search_sparse(SparseVector.from_dict({2: 1.0}))[0].id == "aspirin"
    again.write_documents([Document(id="new", content="A new passage about vitamin C.", embedding=[1, 1, 0, 0])])
    again.close()
    assert EmbeddedStore(path).count_documents() == 4


def test_partial_failure_writes_the_rest_and_names_the_bad_ids(store: EmbeddedStore) -> None:
    bad = [
        Document(id="ok", content="A valid passage.", embedding=[1, 0, 0, 0]),
        Document(id="short", content="Wrong dims.", embedding=[1.0, 0.0]),
        Document(id="empty", content="   "),
        Document(id="nan", content="NaN vector", embedding=[float("nan"), 0, 0, 0]),
    ]
    with pytest.raises(BulkWriteError) as err:
        store.write_documents(bad)
    assert set(err.value.failed) == {"short", "empty", "nan"}
    assert "2 dimensions, the store holds 4" in err.value.failed["short"]
    assert err.value.written == 1
    assert store.get_documents(["ok"])[0].content == "A valid passage."


def test_corrupted_store_is_reported_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "store"
    s = EmbeddedStore(path)
    s.write_documents(docs())
    s.close()
    (path / "manifest.json").write_text("{not json")
    before = sorted(p.name for p in path.rglob("*"))
    with pytest.raises(StoreCorruptedError, match="cannot be read"):
        EmbeddedStore(path).count_documents()
    assert sorted(p.name for p in path.rglob("*")) == before
    assert (path / "manifest.json").read_text() == "{not json"


def test_missing_segment_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "store"
    s = EmbeddedStore(path)
    s.write_documents(docs())
    s.close()
    seg = json.loads((path / "manifest.json").read_text())["segments"][0]
    for f in (path / "segments" / seg).iterdir():
        f.unlink()
    with pytest.raises(StoreCorruptedError):
        EmbeddedStore(path).count_documents()


def test_refuses_a_non_empty_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("my notes")
    with pytest.raises(StoreCorruptedError, match="not a lens-rag store"):
        EmbeddedStore(tmp_path).write_documents(docs())
    assert (tmp_path / "notes.txt").read_text() == "my notes"


def test_compact_keeps_live_documents(tmp_path: Path) -> None:
    path = tmp_path / "store"
    s = EmbeddedStore(path, progress=False)
    s.write_documents(docs())
    s.write_documents(docs())
    s.delete_documents(["volcano"])
    s.compact()
    assert s.count_documents() == 3
    assert s.search_sparse(SparseVector.from_dict({1: 1.0}))[0].id == "rickets"
    assert s.search_dense([1, 0, 0, 0])[0].id == "scurvy"


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
