"""The async half of `ElasticsearchStore`: native `AsyncElasticsearch`, same names with `_async`, same results.

Validation, request bodies and response parsing are shared with the sync methods; only the I/O differs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Self

import elasticsearch
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_streaming_bulk

from lens_rag.documents import Document, ScoredDocument
from lens_rag.errors import BulkWriteError, StoreError
from lens_rag.filters import Filters
from lens_rag.sparse import SparseVector
from lens_rag.stores.base import WriteResult
from lens_rag.stores.elasticsearch import bulk, queries
from lens_rag.stores.elasticsearch.client import ConnectionSettings, parse_version
from lens_rag.stores.elasticsearch.mappings import DENSE_FIELD, VECTOR_FIELDS, dense_field_mapping

if TYPE_CHECKING:
    from lens_rag.stores.elasticsearch.store import RefreshPolicy

__all__ = ["AsyncMethods"]

logger = logging.getLogger(__name__)


# Declares, for the type checker only, what the mixin uses from `ElasticsearchStore`; at run time
# the mixin derives from `object`. (A Protocol base would not do: mypy cannot infer the type of a
# protocol attribute that a subclass method assigns.)
if TYPE_CHECKING:

    class _SyncCore:
        """What :class:`AsyncMethods` uses from :class:`ElasticsearchStore` (settings, state, shared helpers)."""

        settings: ConnectionSettings
        index: str
        dense_dims: int | None
        dense_similarity: str
        refresh: RefreshPolicy
        _version: tuple[int, int, int] | None
        _async_client: Any
        _async_client_loop: asyncio.AbstractEventLoop | None  # config-async: the loop `_async_client` belongs to
        _index_checked: bool
        _has_dense_field: bool

        def _errors(self, action: str) -> AbstractContextManager[None]: ...
        def _index_body(self, dims: int | None) -> dict[str, Any]: ...
        def _check_mapping(self, response: dict[str, Any]) -> None: ...
        def _partition(
            self, documents: Sequence[Document]
        ) -> tuple[dict[str, Document], dict[str, str], int | None]: ...
        def _bulk_kwargs(self) -> dict[str, Any]: ...
        def _progress_bar(self, total: int, desc: str) -> Any: ...
        def _sparse_body(self, query: SparseVector, top_k: int, filters: Filters | None) -> dict[str, Any]: ...
        def _dense_body(self, query: Sequence[float], top_k: int, filters: Filters | None) -> dict[str, Any] | None: ...
        @staticmethod
        def _search_kwargs(body: dict[str, Any]) -> dict[str, Any]: ...
        @staticmethod
        def _connection_lost(e: Exception, written: int, total: int) -> Exception: ...
        def close(self) -> None: ...

    _Base = _SyncCore
else:
    _Base = object


class AsyncMethods(_Base):
    """Mixin giving :class:`ElasticsearchStore` its `AsyncStore` methods."""

    # --- config-async: the async client is bound to one event loop -----------------------------------------
    @property
    def async_client(self) -> AsyncElasticsearch:
        """The running event loop's async client, created on first use in each loop.

        An `AsyncElasticsearch` (its aiohttp session) belongs to the loop that first used it; from a later
        ``asyncio.run`` it would fail, so a store used from another loop gets a new client (the old one is
        dropped: its loop is gone, or it is still closed by `close_async` from that loop).
        """
        loop = asyncio.get_running_loop()
        if self._async_client is None or getattr(self, "_async_client_loop", None) is not loop:
            if self._async_client is not None:
                logger.debug("new AsyncElasticsearch client for another event loop")
            self._async_client = AsyncElasticsearch(**self.settings.client_kwargs())
            self._async_client_loop = loop
        return self._async_client

    # --- config-async: end

    async def server_version_async(self) -> tuple[int, int, int]:
        if self._version is None:
            with self._errors("read the server version"):
                info = await self.async_client.info()
            self._version = parse_version(info["version"]["number"])
        return self._version

    async def _inspect_index_async(self) -> bool:
        if self._index_checked:
            return True
        await self.server_version_async()
        with self._errors(f"read the mapping of index {self.index!r}"):
            if not await self.async_client.indices.exists(index=self.index):
                return False
            self._check_mapping(dict(await self.async_client.indices.get_mapping(index=self.index)))
        return True

    async def ensure_index_async(self, dense_dims: int | None = None) -> None:
        """Async twin of :meth:`ElasticsearchStore.ensure_index`."""

        if not await self._inspect_index_async():
            with self._errors(f"create index {self.index!r}"):
                try:
                    await self.async_client.indices.create(index=self.index, **self._index_body(dense_dims))
                    logger.info("created Elasticsearch index %s", self.index)
                except elasticsearch.BadRequestError as e:
                    if e.error != "resource_already_exists_exception":
                        raise
                self._check_mapping(dict(await self.async_client.indices.get_mapping(index=self.index)))
        if dense_dims is not None and not self._has_dense_field:
            with self._errors(f"add the dense field to index {self.index!r}"):
                await self.async_client.indices.put_mapping(
                    index=self.index, properties={DENSE_FIELD: dense_field_mapping(dense_dims, self.dense_similarity)}
                )
            self._has_dense_field, self.dense_dims = True, dense_dims

    async def delete_index_async(self) -> None:
        with self._errors(f"delete index {self.index!r}"):
            await self.async_client.indices.delete(index=self.index, ignore_unavailable=True)
        self._index_checked = self._has_dense_field = False

    async def write_documents_async(self, documents: Sequence[Document]) -> WriteResult:
        """Async twin of :meth:`ElasticsearchStore.write_documents`."""

        batch, failed, dims = self._partition(documents)
        ids: list[str] = []
        if batch:
            await self.ensure_index_async(dims)
            batch, late, _ = self._partition(list(batch.values()))
            failed.update(late)
            try:
                with self._errors(f"write to index {self.index!r}"), self._progress_bar(len(batch), "indexing") as bar:
                    actions = bulk.index_actions(self.index, batch.values())
                    async for _, item in async_streaming_bulk(self.async_client, actions, **self._bulk_kwargs()):
                        failure = bulk.item_failure(item)
                        if failure is None:
                            ids.append(str(next(iter(item.values())).get("_id")))
                        else:
                            failed[failure[0]] = failure[1]
                        bar.update(1)
            except StoreError as e:
                raise self._connection_lost(e, len(ids), len(batch)) from e.__cause__
            await self._refresh_after_write_async()
        if failed:
            raise BulkWriteError(failed, written=len(ids))
        return WriteResult(written=len(ids), ids=ids)

    async def _refresh_after_write_async(self) -> None:
        if self.refresh == "end":
            with self._errors(f"refresh index {self.index!r}"):
                await self.async_client.indices.refresh(index=self.index)

    async def delete_documents_async(self, ids: Sequence[str]) -> int:
        """Async twin of :meth:`ElasticsearchStore.delete_documents`."""

        if not ids or not await self._inspect_index_async():
            return 0
        deleted = 0
        failed: dict[str, str] = {}
        with self._errors(f"delete from index {self.index!r}"):
            actions = bulk.delete_actions(self.index, ids)
            async for _, item in async_streaming_bulk(self.async_client, actions, **self._bulk_kwargs()):
                failure = bulk.item_failure(item)
                if failure is not None:
                    failed[failure[0]] = failure[1]
                elif item["delete"].get("result") == "deleted":
                    deleted += 1
        await self._refresh_after_write_async()
        if failed:
            raise StoreError(f"could not delete {len(failed)} document(s) from {self.index!r}: {failed}")
        return deleted

    async def get_documents_async(self, ids: Sequence[str], *, include_embeddings: bool = False) -> list[Document]:
        if not ids or not await self._inspect_index_async():
            return []
        excludes = None if include_embeddings else list(VECTOR_FIELDS)
        with self._errors(f"get documents from index {self.index!r}"):
            response = await self.async_client.mget(index=self.index, ids=list(ids), source_excludes=excludes)
        return [
            queries.source_to_document(d["_id"], d.get("_source") or {}) for d in response["docs"] if d.get("found")
        ]

    async def count_documents_async(self) -> int:
        if not await self._inspect_index_async():
            return 0
        with self._errors(f"count documents in index {self.index!r}"):
            return int((await self.async_client.count(index=self.index))["count"])

    async def _search_async(self, body: dict[str, Any], source: str) -> list[ScoredDocument]:
        with self._errors(f"search index {self.index!r}"):
            response = await self.async_client.search(index=self.index, **self._search_kwargs(body))
        return queries.hits_to_results(
            response.body, source, dense_similarity=self.dense_similarity if source == "dense" else None
        )

    async def search_bm25_async(
        self, query: str, top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]:
        body = queries.bm25_request(query, top_k, filters)
        if not await self._inspect_index_async():
            return []
        return await self._search_async(body, "bm25")

    async def search_sparse_async(
        self, query: SparseVector, top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]:
        if not await self._inspect_index_async() or len(query) == 0:
            return []
        return await self._search_async(self._sparse_body(query, top_k, filters), "sparse")

    async def search_dense_async(
        self, query: Sequence[float], top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]:
        if not await self._inspect_index_async():
            return []
        body = self._dense_body(query, top_k, filters)
        return [] if body is None else await self._search_async(body, "dense")

    async def close_async(self) -> None:
        """Close the async client (call from the event loop that used it; another loop's client is dropped)."""
        client, self._async_client = self._async_client, None
        if client is not None and getattr(self, "_async_client_loop", None) is asyncio.get_running_loop():
            await client.close()
        self._async_client_loop = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close_async()
        self.close()
