"""`LensRagDocumentStore`: lens-rag's embedded store (or any lens-rag store) as a Haystack document store."""

from __future__ import annotations

import asyncio
from typing import Any

from haystack import Document, default_from_dict, default_to_dict
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy
from haystack.errors import FilterError
from haystack_integrations.common.lens_rag.convert import to_filter_node, to_haystack_document, to_lens_document

from lens_rag.config import from_config
from lens_rag.errors import LensRagError
from lens_rag.filters import FilterNode
from lens_rag.stores.base import Store

__all__ = ["LensRagDocumentStore"]


class LensRagDocumentStore:
    """lens-rag's embedded store as a Haystack document store: one directory (or memory), no server.

    BM25, sparse (LENS / SPLADE) and dense search run in the store; filters are Haystack's syntax,
    translated to SQL over the documents' metadata. Documents with an existing id are replaced
    (`DuplicatePolicy.NONE` means `OVERWRITE`), as lens-rag's indexing expects.

    :param path: directory of the store (created on first write); `None` keeps it in memory.
    :param bm25_k1: BM25 term-frequency saturation (Lucene's 1.2).
    :param bm25_b: BM25 length normalisation (Lucene's 0.75).
    :param language: stemmer and stopword language for BM25 (`None`: neither).
    :param progress_bar: show progress bars on long store work (BM25 indexing).
    :param store_config: instead of the embedded store, any lens-rag store from its `to_config()`
        (e.g. ``{"type": "elasticsearch_store", "index": "docs"}``; secrets are environment variable names).

    Usage::

        store = LensRagDocumentStore("my-index")
        store.write_documents([Document(content="Scurvy is caused by a lack of vitamin C.")])
        store.filter_documents({"field": "meta.lang", "operator": "==", "value": "en"})
    """

    def __init__(
        self,
        path: str | None = None,
        *,
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        language: str | None = "english",
        progress_bar: bool = False,
        store_config: dict[str, Any] | None = None,
    ) -> None:
        self.path = path
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.language = language
        self.progress_bar = progress_bar
        self.store_config = store_config
        self._store: Store | None = None  # built lazily by `store`

    @property
    def store(self) -> Any:
        """The core lens-rag store (built on first use; it opens its files or connects lazily).

        Typed `Any`: the store methods take filter trees (`lens_rag.filters.FilterNode`), which the `Store`
        protocol's `Filters` annotation does not list yet.
        """
        if self._store is None:
            if self.store_config is not None:
                self._store = from_config(self.store_config)
            else:
                from lens_rag.stores.embedded import EmbeddedStore

                self._store = EmbeddedStore(
                    self.path,
                    bm25_k1=self.bm25_k1,
                    bm25_b=self.bm25_b,
                    language=self.language,
                    progress=self.progress_bar,
                )
        return self._store

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            path=self.path,
            bm25_k1=self.bm25_k1,
            bm25_b=self.bm25_b,
            language=self.language,
            progress_bar=self.progress_bar,
            store_config=self.store_config,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LensRagDocumentStore:
        return default_from_dict(cls, data)

    def close(self) -> None:
        """Release the store's files or connections (reopened on next use)."""
        if self._store is not None:
            self._store.close()

    # ------------------------------------------------------------------ sync API

    def count_documents(self) -> int:
        """How many documents the store holds."""
        return self.store.count_documents()

    def count_documents_by_filter(self, filters: dict[str, Any]) -> int:
        """How many documents match Haystack `filters`."""
        return self.store.count_documents(to_filter_node(filters))

    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """The documents matching Haystack `filters` (all when `None`), in insertion order, with embeddings.

        :raises FilterError: on a malformed filter.
        """
        docs = self.store.filter_documents(to_filter_node(filters), include_embeddings=True)
        return [to_haystack_document(d) for d in docs]

    def write_documents(self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE) -> int:
        """Write documents; an existing id is replaced (`NONE`, `OVERWRITE`), kept (`SKIP`) or refused (`FAIL`).

        :returns: how many documents were written.
        :raises ValueError: if `documents` is not a list of `Document`, or the store refuses one.
        :raises DuplicateDocumentError: with `FAIL`, if an id exists (nothing is written then).
        """
        batch = _dedupe(documents, policy)
        if policy in (DuplicatePolicy.FAIL, DuplicatePolicy.SKIP) and batch:
            batch = _drop_existing(batch, self.store.get_documents(list(batch)), policy)
        if not batch:
            return 0
        try:
            return self.store.write_documents([to_lens_document(d) for d in batch.values()]).written
        except LensRagError as e:
            raise ValueError(str(e)) from e

    def delete_documents(self, document_ids: list[str]) -> None:
        """Delete documents by id; unknown ids are ignored."""
        self.store.delete_documents(list(document_ids))

    def delete_all_documents(self) -> None:
        """Delete every document; the store stays usable."""
        self.store.delete_all_documents()

    def delete_by_filter(self, filters: dict[str, Any]) -> int:
        """Delete the documents matching Haystack `filters`; returns how many."""
        return int(self.store.delete_by_filter(_required(filters, "delete_by_filter")))

    def update_by_filter(self, filters: dict[str, Any], meta: dict[str, Any]) -> int:
        """Merge `meta` into the metadata of the documents matching `filters`; returns how many."""
        return int(self.store.update_by_filter(_required(filters, "update_by_filter"), meta))

    # ------------------------------------------------------------------ async API

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        # The core store's native async twin when it has one (Elasticsearch), else the sync method off the loop.
        native = getattr(self.store, f"{name}_async", None)
        if native is not None:
            return await native(*args, **kwargs)
        return await asyncio.to_thread(getattr(self.store, name), *args, **kwargs)

    async def count_documents_async(self) -> int:
        """The async twin of :meth:`count_documents`."""
        return int(await self._call("count_documents"))

    async def count_documents_by_filter_async(self, filters: dict[str, Any]) -> int:
        """The async twin of :meth:`count_documents_by_filter`."""
        return int(await self._call("count_documents", to_filter_node(filters)))

    async def filter_documents_async(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """The async twin of :meth:`filter_documents`."""
        docs = await self._call("filter_documents", to_filter_node(filters), include_embeddings=True)
        return [to_haystack_document(d) for d in docs]

    async def write_documents_async(
        self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE
    ) -> int:
        """The async twin of :meth:`write_documents`."""
        batch = _dedupe(documents, policy)
        if policy in (DuplicatePolicy.FAIL, DuplicatePolicy.SKIP) and batch:
            batch = _drop_existing(batch, await self._call("get_documents", list(batch)), policy)
        if not batch:
            return 0
        try:
            result = await self._call("write_documents", [to_lens_document(d) for d in batch.values()])
        except LensRagError as e:
            raise ValueError(str(e)) from e
        return int(result.written)

    async def delete_documents_async(self, document_ids: list[str]) -> None:
        """The async twin of :meth:`delete_documents`."""
        await self._call("delete_documents", list(document_ids))

    async def delete_all_documents_async(self) -> None:
        """The async twin of :meth:`delete_all_documents`."""
        await self._call("delete_all_documents")

    async def delete_by_filter_async(self, filters: dict[str, Any]) -> int:
        """The async twin of :meth:`delete_by_filter`."""
        return int(await self._call("delete_by_filter", _required(filters, "delete_by_filter")))

    async def update_by_filter_async(self, filters: dict[str, Any], meta: dict[str, Any]) -> int:
        """The async twin of :meth:`update_by_filter`."""
        return int(await self._call("update_by_filter", _required(filters, "update_by_filter"), meta))


def _required(filters: dict[str, Any], method: str) -> FilterNode:
    node = to_filter_node(filters)
    if node is None:
        raise FilterError(f"{method} needs a filter; to delete everything call delete_all_documents()")
    return node


def _dedupe(documents: Any, policy: DuplicatePolicy) -> dict[str, Document]:
    """Check the input and resolve ids repeated within one write (FAIL raises, SKIP keeps the first, else the last)."""
    if not isinstance(documents, list) or not all(isinstance(d, Document) for d in documents):
        raise ValueError("write_documents expects a list of haystack Documents")
    batch: dict[str, Document] = {}
    for doc in documents:
        if doc.id in batch and policy == DuplicatePolicy.FAIL:
            raise DuplicateDocumentError(f"document id {doc.id!r} appears twice in this write")
        if doc.id in batch and policy == DuplicatePolicy.SKIP:
            continue
        batch[doc.id] = doc
    return batch


def _drop_existing(
    batch: dict[str, Document], existing_docs: list[Any], policy: DuplicatePolicy
) -> dict[str, Document]:
    existing = {d.id for d in existing_docs}
    if existing and policy == DuplicatePolicy.FAIL:
        raise DuplicateDocumentError(f"documents with ids {sorted(existing)[:10]} already exist")
    return {i: d for i, d in batch.items() if i not in existing}
