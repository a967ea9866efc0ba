"""`LensRagDocumentStore` against Haystack's own document-store contract suites (sync, extended, async).

The store runs in memory (no files, no models), so the whole suite is unit-tier. Every test of
`DocumentStoreBaseExtendedTests` and of the async suites runs; the only overrides are the two the suite
asks implementations to provide (`test_write_documents`, whose default behaviour is store-specific, and
`assert_documents_are_equal`, see below). Inherited tests that skip themselves: `delete_all_documents`
has no `recreate_index` parameter (an embedded store has no index to recreate), so the sync
and async `with`/`without_recreate_index` tests (4) skip.
"""

from __future__ import annotations

import math

import pytest
from haystack import Document
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy
from haystack.errors import FilterError
from haystack.testing.document_store import DocumentStoreBaseExtendedTests
from haystack.testing.document_store_async import (
    CountDocumentsAsyncTest,
    CountDocumentsByFilterAsyncTest,
    DeleteAllAsyncTest,
    DeleteByFilterAsyncTest,
    DeleteDocumentsAsyncTest,
    FilterDocumentsAsyncTest,
    UpdateByFilterAsyncTest,
    WriteDocumentsAsyncTest,
)
from haystack_integrations.document_stores.lens_rag import LensRagDocumentStore

pytestmark = pytest.mark.unit


def _same(received: list[Document], expected: list[Document]) -> None:
    # The store keeps dense vectors as float32 (as every vector database does), so a float64 embedding
    # comes back rounded to ~1e-7; everything else must be identical, in the same order.
    assert [d.id for d in received] == [d.id for d in expected]
    for got, want in zip(received, expected, strict=True):
        assert got.content == want.content
        assert got.meta == want.meta
        assert got.sparse_embedding == want.sparse_embedding
        assert (got.embedding is None) == (want.embedding is None)
        if want.embedding is not None:
            assert len(got.embedding) == len(want.embedding)
            assert all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7) for a, b in zip(got.embedding, want.embedding))


class TestLensRagDocumentStore(
    DocumentStoreBaseExtendedTests,
    CountDocumentsAsyncTest,
    CountDocumentsByFilterAsyncTest,
    DeleteAllAsyncTest,
    DeleteByFilterAsyncTest,
    DeleteDocumentsAsyncTest,
    FilterDocumentsAsyncTest,
    UpdateByFilterAsyncTest,
    WriteDocumentsAsyncTest,
):
    @pytest.fixture
    def document_store(self) -> LensRagDocumentStore:
        store = LensRagDocumentStore()  # in memory
        yield store
        store.close()

    @staticmethod
    def assert_documents_are_equal(received: list[Document], expected: list[Document]) -> None:
        _same(received, expected)

    def test_write_documents(self, document_store: LensRagDocumentStore) -> None:
        # Default policy (NONE) replaces an existing id, as lens-rag's re-indexing expects.
        doc = Document(id="1", content="first")
        assert document_store.write_documents([doc]) == 1
        assert document_store.write_documents([Document(id="1", content="second")]) == 1
        assert [d.content for d in document_store.filter_documents()] == ["second"]

    async def test_write_documents_async(self, document_store: LensRagDocumentStore) -> None:
        assert await document_store.write_documents_async([Document(id="1", content="first")]) == 1
        assert await document_store.write_documents_async([Document(id="1", content="second")]) == 1
        assert [d.content for d in await document_store.filter_documents_async()] == ["second"]


@pytest.mark.parametrize("policy", [DuplicatePolicy.FAIL, DuplicatePolicy.SKIP, DuplicatePolicy.OVERWRITE])
def test_duplicates_within_one_write(policy: DuplicatePolicy) -> None:
    store = LensRagDocumentStore()
    docs = [Document(id="a", content="one"), Document(id="a", content="two")]
    if policy == DuplicatePolicy.FAIL:
        with pytest.raises(DuplicateDocumentError, match="appears twice"):
            store.write_documents(docs, policy=policy)
        assert store.count_documents() == 0
        return
    assert store.write_documents(docs, policy=policy) == 1
    expected = "one" if policy == DuplicatePolicy.SKIP else "two"
    assert [d.content for d in store.filter_documents()] == [expected]


def test_fail_policy_writes_nothing_when_one_id_exists() -> None:
    store = LensRagDocumentStore()
    store.write_documents([Document(id="a", content="one")])
    with pytest.raises(DuplicateDocumentError, match="'a'"):
        store.write_documents([Document(id="b", content="new"), Document(id="a", content="x")], DuplicatePolicy.FAIL)
    assert store.count_documents() == 1


def test_delete_by_filter_needs_a_filter() -> None:
    with pytest.raises(FilterError, match="delete_all_documents"):
        LensRagDocumentStore().delete_by_filter({})


def test_count_documents_by_filter_and_sparse_round_trip() -> None:
    from haystack.dataclasses import SparseEmbedding

    store = LensRagDocumentStore()
    sparse = SparseEmbedding(indices=[3, 10], values=[0.5, 1.25])
    store.write_documents(
        [Document(id="a", content="alpha", meta={"y": 1}, sparse_embedding=sparse), Document(id="b", content="b")]
    )
    assert store.count_documents_by_filter({"field": "meta.y", "operator": "==", "value": 1}) == 1
    assert store.filter_documents({"field": "id", "operator": "==", "value": "a"})[0].sparse_embedding == sparse


def test_persistent_store_reopens_from_dict(tmp_path) -> None:
    store = LensRagDocumentStore(str(tmp_path / "idx"), bm25_k1=0.9)
    store.write_documents([Document(id="a", content="kept on disk")])
    store.close()
    again = LensRagDocumentStore.from_dict(store.to_dict())
    assert again.bm25_k1 == 0.9
    assert [d.id for d in again.filter_documents()] == ["a"]
    again.close()


def test_construction_does_no_io(tmp_path) -> None:
    LensRagDocumentStore(str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()
