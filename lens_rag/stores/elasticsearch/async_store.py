"""The async half of `ElasticsearchStore`: native `AsyncElasticsearch`, same names with `_async`, same results.

Validation, request bodies and response parsing are shared with the sync methods; only the I/O differs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Self

import elasticsearch
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_streaming_bulk

from lens_rag.documents import Document, ScoredDocument
from lens_rag.errors import BulkWriteError, ConfigurationError, StoreError
from lens_rag.filters import FilterNode, Filters, parse_filters
from lens_rag.sparse import SparseVector
from lens_rag.stores.base import WriteResult
from lens_rag.stores.elasticsearch import bulk, by_filter, queries
from lens_rag.stores.elasticsearch.client import ConnectionSettings, parse_version
from lens_rag.stores.elasticsearch.mappings import DENSE_FIELD, VECTOR_FIELDS, dense_field_mapping
from lens_rag.validation import check_sparse_query, check_top_k

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
        _has_expansion_field: bool
        # filters: mapping-aware filters and by-filter methods
        _field_types: dict[str, str]
        _vectors_excluded: bool
        _legacy_dynamic: bool

        def _learn_mapping(self, mappings: Mapping[str, Any]) -> None: ...
        @staticmethod
        def _mapping_of(response: Mapping[str, Any]) -> dict[str, Any]: ...
        def _missing_types(self, node: FilterNode | None) -> bool: ...
        @staticmethod
        def _dynamic_settings() -> dict[str, Any]: ...
        def _bm25_body(self, query: str, top_k: int, filters: Filters | FilterNode | None) -> dict[str, Any]: ...
        def _expansion_mapping(self, batch: Mapping[str, Document]) -> dict[str, Any] | None: ...

        def _errors(self, action: str) -> AbstractContextManager[None]: ...
        def _index_body(self, dims: int | None) -> dict[str, Any]: ...
        def _check_mapping(self, response: dict[str, Any]) -> None: ...
        def _partition(
            self, documents: Sequence[Document]
        ) -> tuple[dict[str, Document], dict[str, str], int | None]: ...
        def _bulk_kwargs(self) -> dict[str, Any]: ...
        def _progress_bar(self, total: int, desc: str) -> Any: ...
        def _sparse_body(
            self, query: SparseVector, top_k: int, filters: Filters | FilterNode | None
        ) -> dict[str, Any]: ...
        def _dense_body(
            self, query: Sequence[float], top_k: int, filters: Filters | FilterNode | None
        ) -> dict[str, Any] | None: ...
        @staticmethod
        def _search_kwargs(body: dict[str, Any]) -> dict[str, Any]: ...
        @staticmethod
        def _connection_lost(e: Exception, written: int, total: int) -> Exception: ...
        def close(self) -> None: ...
        def _msearch_bodies(self, requests: Sequence[Any]) -> list[dict[str, Any] | None]: ...  # es-ops: multi-search

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
        if self._legacy_dynamic:  # filters: new meta keys keep their JSON type from now on
            with self._errors(f"update the dynamic mapping of index {self.index!r}"):
                await self.async_client.indices.put_mapping(index=self.index, **self._dynamic_settings())
            self._legacy_dynamic = False

    async def delete_index_async(self) -> None:
        with self._errors(f"delete index {self.index!r}"):
            await self.async_client.indices.delete(index=self.index, ignore_unavailable=True)
        self._index_checked = self._has_dense_field = False
        self._field_types, self._legacy_dynamic = {}, False

    async def write_documents_async(self, documents: Sequence[Document]) -> WriteResult:
        """Async twin of :meth:`ElasticsearchStore.write_documents`."""

        batch, failed, dims = self._partition(documents)
        ids: list[str] = []
        if batch:
            await self.ensure_index_async(dims)
            batch, late, _ = self._partition(list(batch.values()))
            failed.update(late)
            expansion = self._expansion_mapping(batch)  # expansion: map the doc2query field first
            if expansion is not None:
                with self._errors(f"add the expansion field to index {self.index!r}"):
                    await self.async_client.indices.put_mapping(**expansion)
                self._has_expansion_field = True
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

    async def _search_async(self, body: dict[str, Any], source: str) -> list[ScoredDocument]:
        with self._errors(f"search index {self.index!r}"):
            response = await self.async_client.search(index=self.index, **self._search_kwargs(body))
        return queries.hits_to_results(
            response.body, source, dense_similarity=self.dense_similarity if source == "dense" else None
        )

    async def search_bm25_async(
        self, query: str, top_k: int = 10, filters: Filters | FilterNode | None = None
    ) -> list[ScoredDocument]:
        top_k, node = check_top_k(top_k), parse_filters(filters)
        if top_k == 0 or not await self._inspect_index_async():
            return []
        await self._types_for_async(node)
        return await self._search_async(self._bm25_body(query, top_k, node), "bm25")

    async def search_sparse_async(
        self, query: SparseVector, top_k: int = 10, filters: Filters | FilterNode | None = None
    ) -> list[ScoredDocument]:
        top_k, node, query = check_top_k(top_k), parse_filters(filters), check_sparse_query(query)
        if top_k == 0 or not await self._inspect_index_async() or len(query) == 0:
            return []
        await self._types_for_async(node)
        return await self._search_async(self._sparse_body(query, top_k, node), "sparse")

    async def search_dense_async(
        self, query: Sequence[float], top_k: int = 10, filters: Filters | FilterNode | None = None
    ) -> list[ScoredDocument]:
        top_k, node = check_top_k(top_k), parse_filters(filters)
        if top_k == 0 or not await self._inspect_index_async():
            return []
        await self._types_for_async(node)
        body = self._dense_body(query, top_k, node)
        return [] if body is None else await self._search_async(body, "dense")

    # ------------------------------------------------------------------ filters: documents by filter (async)
    async def _types_for_async(self, node: FilterNode | None) -> dict[str, str]:
        if self._missing_types(node):
            with self._errors(f"read the mapping of index {self.index!r}"):
                response = dict(await self.async_client.indices.get_mapping(index=self.index))
            self._learn_mapping(self._mapping_of(response))
        return self._field_types

    async def info_async(self) -> dict[str, Any]:
        """Async twin of :attr:`ElasticsearchStore.info`."""
        if not await self._inspect_index_async():
            return {}
        with self._errors(f"read the mapping of index {self.index!r}"):
            response = dict(await self.async_client.indices.get_mapping(index=self.index))
        return dict(self._mapping_of(response).get("_meta", {}).get("lens_rag_info", {}))

    async def set_info_async(self, info: Mapping[str, Any]) -> None:
        """Async twin of :meth:`ElasticsearchStore.set_info`."""
        await self.ensure_index_async()
        with self._errors(f"update the mapping of index {self.index!r}"):
            await self.async_client.indices.put_mapping(index=self.index, meta={"lens_rag_info": dict(info)})

    async def count_documents_async(self, filters: Filters | FilterNode | None = None) -> int:
        """Async twin of :meth:`ElasticsearchStore.count_documents`."""
        node = parse_filters(filters)
        if not await self._inspect_index_async():
            return 0
        query = None if node is None else queries.match_query(node, await self._types_for_async(node))
        with self._errors(f"count documents in index {self.index!r}"):
            if query is None:
                response = await self.async_client.count(index=self.index)
            else:
                response = await self.async_client.count(index=self.index, query=query)
        return int(response["count"])

    async def filter_documents_async(
        self,
        filters: Filters | FilterNode | None = None,
        *,
        limit: int | None = None,
        include_embeddings: bool = False,
    ) -> list[Document]:
        """Async twin of :meth:`ElasticsearchStore.filter_documents`."""
        if limit is not None:
            limit = check_top_k(limit, "limit")
        node = parse_filters(filters)
        if limit is not None and limit <= by_filter.ONE_PAGE:
            if limit == 0 or not await self._inspect_index_async():
                return []
            types = await self._types_for_async(node)
            body = queries.scan_request(
                node, batch_size=limit, pit_id="", field_types=types, include_embeddings=include_embeddings
            )
            del body["pit"]
            body["sort"] = ["_doc"]
            with self._errors(f"read documents from index {self.index!r}"):
                response = await self.async_client.search(index=self.index, **self._search_kwargs(body))
            return [queries.source_to_document(h["_id"], h.get("_source") or {}) for h in response["hits"]["hits"]]
        out: list[Document] = []
        page = by_filter.ONE_PAGE if limit is None else min(limit, by_filter.ONE_PAGE)
        pages = self._scan_async(node, page, include_embeddings)
        try:
            async for doc in pages:
                out.append(doc)
                if limit is not None and len(out) >= limit:
                    break
        finally:
            await pages.aclose()
        return out

    def iter_documents_async(
        self,
        filters: Filters | FilterNode | None = None,
        *,
        batch_size: int = 1000,
        include_embeddings: bool = False,
    ) -> AsyncIterator[Document]:
        """Twin of :meth:`~ElasticsearchStore.iter_documents`: ``async for doc in store.iter_documents_async()``."""
        batch_size = check_top_k(batch_size, "batch_size")
        if not 1 <= batch_size <= by_filter.ONE_PAGE:
            raise ConfigurationError(f"batch_size must be between 1 and {by_filter.ONE_PAGE}, got {batch_size}")
        return self._scan_async(parse_filters(filters), batch_size, include_embeddings)

    async def _scan_async(
        self, node: FilterNode | None, batch_size: int, include_embeddings: bool
    ) -> AsyncGenerator[Document]:
        if not await self._inspect_index_async():
            return
        types = await self._types_for_async(node)
        with self._errors(f"open a point in time on index {self.index!r}"):
            opened = await self.async_client.open_point_in_time(index=self.index, keep_alive=by_filter.KEEP_ALIVE)
        pit_id = str(opened["id"])
        try:
            after: list[Any] | None = None
            while True:
                body = queries.scan_request(
                    node,
                    batch_size=batch_size,
                    pit_id=pit_id,
                    search_after=after,
                    field_types=types,
                    include_embeddings=include_embeddings,
                    keep_alive=by_filter.KEEP_ALIVE,
                )
                with self._errors(f"read documents from index {self.index!r}"):
                    response = await self.async_client.search(**self._search_kwargs(body))
                pit_id = str(response.get("pit_id") or pit_id)
                hits = response["hits"]["hits"]
                for hit in hits:
                    yield queries.source_to_document(hit["_id"], hit.get("_source") or {})
                if len(hits) < batch_size:
                    return
                after = list(hits[-1]["sort"])
        finally:
            try:
                await self.async_client.close_point_in_time(id=pit_id)
            except (elasticsearch.ApiError, elasticsearch.TransportError) as e:  # it expires on its own
                logger.debug("could not close a point in time on %s: %s", self.index, type(e).__name__)

    async def delete_by_filter_async(self, filters: Filters | FilterNode) -> int:
        """Async twin of :meth:`ElasticsearchStore.delete_by_filter`."""
        node = by_filter.required_filter(filters, "delete_by_filter_async", "delete_all_documents_async()")
        if not await self._inspect_index_async():
            return 0
        query = queries.match_query(node, await self._types_for_async(node))
        with self._errors(f"delete documents by filter from index {self.index!r}"):
            try:
                response = await self.async_client.delete_by_query(
                    index=self.index, query=query, refresh=self.refresh != "none", conflicts="proceed"
                )
            except elasticsearch.ApiError as e:
                body = by_filter.failure_body(e)
                if body is not None:
                    by_filter.by_query_count(body, "deleted", self.index)  # raises, naming the failures
                raise
        return by_filter.by_query_count(response.body, "deleted", self.index)

    async def delete_all_documents_async(self, *, recreate_index: bool = False) -> int:
        """Async twin of :meth:`ElasticsearchStore.delete_all_documents`."""
        if not await self._inspect_index_async():
            return 0
        if recreate_index:
            count, info, dims = await self.count_documents_async(), await self.info_async(), self.dense_dims
            await self.delete_index_async()
            await self.ensure_index_async(dims)
            if info:
                await self.set_info_async(info)
            return count
        with self._errors(f"delete all documents from index {self.index!r}"):
            try:
                response = await self.async_client.delete_by_query(
                    index=self.index, query={"match_all": {}}, refresh=self.refresh != "none", conflicts="proceed"
                )
            except elasticsearch.ApiError as e:
                body = by_filter.failure_body(e)
                if body is not None:
                    by_filter.by_query_count(body, "deleted", self.index)  # raises, naming the failures
                raise
        return by_filter.by_query_count(response.body, "deleted", self.index)

    async def update_by_filter_async(self, filters: Filters | FilterNode | None, meta: Mapping[str, Any]) -> int:
        """Async twin of :meth:`ElasticsearchStore.update_by_filter`."""
        node = parse_filters(filters)
        meta = by_filter.check_meta(meta)
        if not meta or not await self._inspect_index_async():
            return 0
        query = queries.match_query(node, await self._types_for_async(node))
        if self._vectors_excluded:
            guarded = {"bool": {"filter": [query, queries.HAS_VECTORS]}}
            with self._errors(f"count documents in index {self.index!r}"):
                at_risk = int((await self.async_client.count(index=self.index, query=guarded))["count"])
            by_filter.refuse_vector_loss(at_risk, self.index)
            query = {"bool": {"filter": [query], "must_not": [queries.HAS_VECTORS]}}
        with self._errors(f"update documents by filter in index {self.index!r}"):
            try:
                response = await self.async_client.update_by_query(
                    index=self.index,
                    query=query,
                    script=queries.update_meta_script(meta),
                    refresh=self.refresh != "none",
                    conflicts="proceed",
                )
            except elasticsearch.ApiError as e:
                body = by_filter.failure_body(e)
                if body is not None:
                    by_filter.by_query_count(body, "updated", self.index)  # raises, naming the failures
                raise
        return by_filter.by_query_count(response.body, "updated", self.index)

    # ------------------------------------------------------------------ es-ops: multi-search (one round trip)
    async def search_many_async(self, requests: Sequence[Any]) -> list[list[ScoredDocument]]:
        """Async twin of :meth:`ElasticsearchStore.search_many`: several searches in one `_msearch` round trip."""
        from lens_rag.stores.elasticsearch import msearch

        checked = msearch.check_requests(requests)
        if not any(msearch.needs_search(r) for r in checked) or not await self._inspect_index_async():
            return [[] for _ in checked]
        for node in msearch.filter_nodes(checked):
            await self._types_for_async(node)
        bodies = self._msearch_bodies(checked)
        if all(body is None for body in bodies):
            return [[] for _ in checked]
        with self._errors(f"search index {self.index!r}"):
            response = await self.async_client.msearch(index=self.index, searches=msearch.msearch_lines(bodies))
        return msearch.parse_responses(
            response.body, checked, bodies, index=self.index, dense_similarity=self.dense_similarity
        )

    # ------------------------------------------------------------------ es-ops: end of multi-search

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
