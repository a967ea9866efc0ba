"""`ElasticsearchStore`: the `Store`/`AsyncStore` protocols on a real Elasticsearch cluster (Basic licence).

Requests come from the pure builders in :mod:`.queries`; the sync methods live here and their
async twins (native `AsyncElasticsearch`) in :mod:`.async_store`, sharing all validation and parsing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import elasticsearch
from elasticsearch import Elasticsearch
from elasticsearch.helpers import streaming_bulk
from tqdm.auto import tqdm

from lens_rag.documents import Document, ScoredDocument
from lens_rag.errors import BulkWriteError, ConfigurationError, StoreError
from lens_rag.filters import Filters
from lens_rag.sparse import SparseVector
from lens_rag.stores.base import WriteResult
from lens_rag.stores.elasticsearch import bulk, queries
from lens_rag.stores.elasticsearch.async_store import AsyncMethods
from lens_rag.stores.elasticsearch.client import ConnectionSettings, parse_version, translate_error
from lens_rag.stores.elasticsearch.mappings import (
    DENSE_FIELD,
    SIMILARITIES,
    VECTOR_FIELDS,
    dense_field_mapping,
    index_body,
    mapping_conflicts,
)

__all__ = ["ElasticsearchStore", "RefreshPolicy"]

logger = logging.getLogger(__name__)

RefreshPolicy = Literal["end", "wait_for", "none"]
_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_RETRY_STATUSES = (429, 502, 503, 504)


class ElasticsearchStore(AsyncMethods):
    """BM25, sparse (LENS/SPLADE dot product) and dense (kNN) search in one Elasticsearch index.

    Construction validates and stores settings only; the client connects on first use.
    Credentials not passed explicitly are read from ES_URL, ES_API_KEY, ES_USERNAME/ES_PASSWORD
    and ES_CA_CERTS; they are never logged.

    :param url: cluster URL; `None` reads ES_URL, else ``http://localhost:9200``.
    :param index: index name (lowercase).
    :param api_key: API key (encoded, or ``"id:key"``).
    :param basic_auth: ``(username, password)``.
    :param ca_certs: CA bundle path for TLS.
    :param dense_dims: dense vector dimension; `None` takes it from the first embeddings written.
    :param dense_similarity: ``"cosine"`` (default), ``"dot_product"``, ``"l2_norm"`` or ``"max_inner_product"``.
    :param analyzer: analyzer of `content` for BM25 (default ``"english"``).
    :param sparse_query_mode: ``"auto"`` (``sparse_vector`` query on ≥ 8.15, boosted ``term``
        queries on 8.11–8.14), or force either.
    :param sparse_top_k: prune every sparse query to its largest `sparse_top_k` weights (`None`: keep all).
    :param max_query_terms: hard cap on sparse query terms (keep below `indices.query.bool.max_clause_count`).
    :param num_candidates: kNN `num_candidates`; `None` uses `num_candidates_factor × top_k` (at least 100).
    :param num_candidates_factor: see `num_candidates`.
    :param refresh: ``"end"`` — one refresh after each write/delete call (default); ``"wait_for"`` —
        each bulk chunk waits for a refresh; ``"none"`` — searchable within the index's refresh interval.
    :param chunk_size: documents per bulk request.
    :param max_retries: retries with backoff on connection errors, 429 and 502/503/504.
    :param request_timeout: seconds per request.
    :param progress: show a progress bar for writes larger than one chunk.
    :param server_version: skip asking the server for its version (e.g. ``"8.12.2"``).
    :raises ConfigurationError: on an invalid index name, similarity, mode or number.

    Usage::

        store = ElasticsearchStore("http://127.0.0.1:9200", index="scifact")
        store.write_documents([Document(id="1", content="Aspirin lowers fever", embedding=[...])])
        store.search_bm25("aspirin", top_k=5)
    """

    def __init__(
        self,
        url: str | None = None,
        index: str = "lens-rag",
        *,
        api_key: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        ca_certs: str | None = None,
        dense_dims: int | None = None,
        dense_similarity: str = "cosine",
        analyzer: str = "english",
        sparse_query_mode: queries.SparseQueryMode = "auto",
        sparse_top_k: int | None = None,
        max_query_terms: int = queries.DEFAULT_MAX_QUERY_TERMS,
        num_candidates: int | None = None,
        num_candidates_factor: float = 10.0,
        refresh: RefreshPolicy | bool = "end",
        chunk_size: int = 500,
        max_retries: int = 3,
        request_timeout: float = 30.0,
        progress: bool = True,
        server_version: str | None = None,
        vectors_in_source: bool = False,
    ) -> None:
        if not isinstance(index, str) or not _INDEX_NAME.match(index):
            raise ConfigurationError(
                f"index={index!r} is not a valid Elasticsearch index name; "
                "use lowercase letters, digits, '-', '_' or '.'"
            )
        if dense_similarity not in SIMILARITIES:
            raise ConfigurationError(f"dense_similarity must be one of {SIMILARITIES}, got {dense_similarity!r}")
        if dense_dims is not None and not 1 <= dense_dims <= 4096:
            raise ConfigurationError(f"dense_dims must be between 1 and 4096 (Elasticsearch's limit), got {dense_dims}")
        if sparse_query_mode not in ("auto", "sparse_vector", "term"):
            raise ConfigurationError(
                f"sparse_query_mode must be 'auto', 'sparse_vector' or 'term', got {sparse_query_mode!r}"
            )
        if sparse_top_k is not None and sparse_top_k < 1:
            raise ConfigurationError(f"sparse_top_k must be >= 1 or None (keep all terms), got {sparse_top_k}")
        if refresh is True:
            refresh = "end"
        elif refresh is False:
            refresh = "none"
        if refresh not in ("end", "wait_for", "none"):
            raise ConfigurationError(f"refresh must be 'end', 'wait_for', 'none' (or True/False), got {refresh!r}")
        if chunk_size < 1:
            raise ConfigurationError(f"chunk_size must be >= 1, got {chunk_size}")
        if num_candidates is not None and num_candidates < 1:
            raise ConfigurationError(f"num_candidates must be >= 1 or None, got {num_candidates}")
        self.settings = ConnectionSettings.from_env(
            url=url,
            api_key=api_key,
            basic_auth=basic_auth,
            ca_certs=ca_certs,
            request_timeout=request_timeout,
            max_retries=max_retries,
        )
        self.index = index
        self.dense_dims = dense_dims
        self.dense_similarity = dense_similarity
        self.analyzer = analyzer
        self.sparse_query_mode = sparse_query_mode
        self.sparse_top_k = sparse_top_k
        self.max_query_terms = max_query_terms
        self.num_candidates = num_candidates
        self.num_candidates_factor = num_candidates_factor
        self.refresh: RefreshPolicy = refresh
        self.chunk_size = chunk_size
        self.progress = progress
        self.vectors_in_source = vectors_in_source
        self._version = parse_version(server_version) if server_version is not None else None
        self._client: Elasticsearch | None = None
        self._async_client: Any = None
        self._index_checked = False  # index exists and its mapping was checked
        self._has_dense_field = False

    @classmethod
    def from_env(cls, index: str = "lens-rag", **kwargs: Any) -> ElasticsearchStore:
        """A store configured from ES_URL, ES_API_KEY, ES_USERNAME/ES_PASSWORD and ES_CA_CERTS.

        :param index: index name.
        :param kwargs: any other constructor argument; explicit values win over the environment.
        """
        return cls(index=index, **kwargs)

    def __repr__(self) -> str:
        return f"ElasticsearchStore(url={self.settings.safe_url!r}, index={self.index!r})"

    # ------------------------------------------------------------------ shared helpers
    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:

        try:
            yield
        except (elasticsearch.ApiError, elasticsearch.TransportError) as e:
            raise translate_error(e, self.settings, action) from e

    def _index_body(self, dims: int | None) -> dict[str, Any]:
        assert self._version is not None
        return index_body(
            analyzer=self.analyzer,
            version=self._version,
            dense_dims=dims,
            dense_similarity=self.dense_similarity,
            vectors_in_source=self.vectors_in_source,
        )

    def _check_mapping(self, response: dict[str, Any]) -> None:
        """Validate the existing index's mapping against ours; remember its dense dimension."""
        mappings = next(iter(response.values()))["mappings"] if response else {}
        wanted = self._index_body(self.dense_dims)["mappings"]
        problems = mapping_conflicts(mappings, wanted)
        if problems:
            raise ConfigurationError(
                f"index {self.index!r} already exists with an incompatible mapping: {'; '.join(problems)}. "
                "Use another index name, or delete the index (store.delete_index()) and write again"
            )
        dense = mappings.get("properties", {}).get(DENSE_FIELD)
        self._has_dense_field = dense is not None
        if dense is not None:
            self.dense_dims = int(dense["dims"])
        self._index_checked = True

    def _partition(self, documents: Sequence[Document]) -> tuple[dict[str, Document], dict[str, str], int | None]:
        """Valid documents by id (a later duplicate wins), client-side failures, and the dims to map."""
        failed: dict[str, str] = {}
        batch: dict[str, Document] = {}
        dims = self.dense_dims
        for doc in documents:
            reason = bulk.validate_document(doc, dims)
            if reason is not None:
                failed[str(getattr(doc, "id", "?"))] = reason
                continue
            if doc.embedding is not None and dims is None:
                dims = len(doc.embedding)
            batch[doc.id] = doc
        return batch, failed, dims

    def _bulk_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "chunk_size": self.chunk_size,
            "raise_on_error": False,
            "raise_on_exception": True,
            "max_retries": self.settings.max_retries,
            "initial_backoff": 1,
            "max_backoff": 30,
            "retry_on_status": _RETRY_STATUSES,
        }
        if self.refresh == "wait_for":
            kwargs["refresh"] = "wait_for"
        return kwargs

    def _progress_bar(self, total: int, desc: str) -> Any:

        return tqdm(total=total, desc=desc, unit="doc", disable=not self.progress or total <= self.chunk_size)

    def _sparse_body(self, query: SparseVector, top_k: int, filters: Filters | None) -> dict[str, Any]:
        assert self._version is not None
        mode = queries.choose_sparse_mode(self._version, self.sparse_query_mode)
        return queries.sparse_request(
            query, top_k, filters, mode=mode, query_top_k=self.sparse_top_k, max_query_terms=self.max_query_terms
        )

    def _dense_body(self, query: Sequence[float], top_k: int, filters: Filters | None) -> dict[str, Any] | None:
        if not self._has_dense_field:
            return None
        if self.dense_dims is not None and len(query) != self.dense_dims:
            raise ConfigurationError(
                f"query vector has {len(query)} dimensions but index {self.index!r} holds "
                f"{self.dense_dims}-dimensional "
                "embeddings; encode the query with the model that indexed the store"
            )
        return queries.dense_request(
            query, top_k, filters, num_candidates=self.num_candidates, num_candidates_factor=self.num_candidates_factor
        )

    @staticmethod
    def _search_kwargs(body: dict[str, Any]) -> dict[str, Any]:
        kwargs = dict(body)
        kwargs["source"] = kwargs.pop("_source")
        kwargs["track_total_hits"] = False
        return kwargs

    @staticmethod
    def _connection_lost(e: Exception, written: int, total: int) -> Exception:
        e.args = (
            f"{e.args[0] if e.args else e} — {written} of {total} documents were written before the failure; "
            "writing the same documents again is safe (ids are stable)",
        )
        return e

    # ------------------------------------------------------------------ sync client
    @property
    def client(self) -> Elasticsearch:
        """The sync client, created on first use."""
        if self._client is None:
            self._client = Elasticsearch(**self.settings.client_kwargs())
        return self._client

    def server_version(self) -> tuple[int, int, int]:
        """The server's version, asked once."""
        if self._version is None:
            with self._errors("read the server version"):
                self._version = parse_version(self.client.info()["version"]["number"])
        return self._version

    def _inspect_index(self) -> bool:
        """Whether the index exists (mapping checked once); never creates it."""
        if self._index_checked:
            return True
        self.server_version()
        with self._errors(f"read the mapping of index {self.index!r}"):
            if not self.client.indices.exists(index=self.index):
                return False
            self._check_mapping(dict(self.client.indices.get_mapping(index=self.index)))
        return True

    def ensure_index(self, dense_dims: int | None = None) -> None:
        """Create the index if missing (idempotent) and add the dense field once its dimension is known.

        :raises ConfigurationError: if an existing index has an incompatible mapping.
        """

        if not self._inspect_index():
            with self._errors(f"create index {self.index!r}"):
                try:
                    self.client.indices.create(index=self.index, **self._index_body(dense_dims))
                    logger.info("created Elasticsearch index %s", self.index)
                except elasticsearch.BadRequestError as e:
                    if e.error != "resource_already_exists_exception":
                        raise
                self._check_mapping(dict(self.client.indices.get_mapping(index=self.index)))
        if dense_dims is not None and not self._has_dense_field:
            with self._errors(f"add the dense field to index {self.index!r}"):
                self.client.indices.put_mapping(
                    index=self.index, properties={DENSE_FIELD: dense_field_mapping(dense_dims, self.dense_similarity)}
                )
            self._has_dense_field, self.dense_dims = True, dense_dims

    @property
    def info(self) -> dict[str, Any]:
        """Free-form JSON metadata kept in the index mapping's `_meta` (which encoders indexed it)."""
        if not self._inspect_index():
            return {}
        with self._errors(f"read the mapping of index {self.index!r}"):
            mapping = dict(self.client.indices.get_mapping(index=self.index))
        first: dict[str, Any] = next(iter(mapping.values()), {})
        meta = first.get("mappings", {}).get("_meta", {})
        return dict(meta.get("lens_rag_info", {}))

    def set_info(self, info: dict[str, Any]) -> None:
        """Replace the metadata returned by :attr:`info` (creates the index if needed)."""
        self.ensure_index()
        with self._errors(f"update the mapping of index {self.index!r}"):
            self.client.indices.put_mapping(index=self.index, meta={"lens_rag_info": dict(info)})

    def delete_index(self) -> None:
        """Delete the index and everything in it (no error if it does not exist)."""
        with self._errors(f"delete index {self.index!r}"):
            self.client.indices.delete(index=self.index, ignore_unavailable=True)
        self._index_checked = self._has_dense_field = False

    def write_documents(self, documents: Sequence[Document]) -> WriteResult:
        """Index documents with `_id` = `Document.id` in bulk chunks; existing ids are replaced.

        :param documents: documents, optionally with `embedding` and `sparse_embedding`.
        :returns: the ids written.
        :raises BulkWriteError: listing every rejected id and why, after the others were written.
        :raises ConnectionFailedError: if the server stays unreachable after retries.
        """

        batch, failed, dims = self._partition(documents)
        ids: list[str] = []
        if batch:
            self.ensure_index(dims)
            batch, late, _ = self._partition(list(batch.values()))  # dims may have come from the index
            failed.update(late)
            try:
                with self._errors(f"write to index {self.index!r}"), self._progress_bar(len(batch), "indexing") as bar:
                    actions = bulk.index_actions(self.index, batch.values())
                    for _, item in streaming_bulk(self.client, actions, **self._bulk_kwargs()):
                        failure = bulk.item_failure(item)
                        if failure is None:
                            ids.append(str(next(iter(item.values())).get("_id")))
                        else:
                            failed[failure[0]] = failure[1]
                        bar.update(1)
            except StoreError as e:
                raise self._connection_lost(e, len(ids), len(batch)) from e.__cause__
            self._refresh_after_write()
        if failed:
            raise BulkWriteError(failed, written=len(ids))
        return WriteResult(written=len(ids), ids=ids)

    def _refresh_after_write(self) -> None:
        if self.refresh == "end":
            with self._errors(f"refresh index {self.index!r}"):
                self.client.indices.refresh(index=self.index)

    def delete_documents(self, ids: Sequence[str]) -> int:
        """Delete by id; missing ids are ignored.

        :returns: how many documents were deleted.
        """

        if not ids or not self._inspect_index():
            return 0
        deleted = 0
        failed: dict[str, str] = {}
        with self._errors(f"delete from index {self.index!r}"):
            for _, item in streaming_bulk(self.client, bulk.delete_actions(self.index, ids), **self._bulk_kwargs()):
                failure = bulk.item_failure(item)
                if failure is not None:
                    failed[failure[0]] = failure[1]
                elif item["delete"].get("result") == "deleted":
                    deleted += 1
        self._refresh_after_write()
        if failed:
            raise StoreError(f"could not delete {len(failed)} document(s) from {self.index!r}: {failed}")
        return deleted

    def get_documents(self, ids: Sequence[str], *, include_embeddings: bool = False) -> list[Document]:
        """Documents by id, in the order asked; missing ids are skipped."""
        if not ids or not self._inspect_index():
            return []
        excludes = None if include_embeddings else list(VECTOR_FIELDS)
        with self._errors(f"get documents from index {self.index!r}"):
            response = self.client.mget(index=self.index, ids=list(ids), source_excludes=excludes)
        return [
            queries.source_to_document(d["_id"], d.get("_source") or {}) for d in response["docs"] if d.get("found")
        ]

    def count_documents(self) -> int:
        if not self._inspect_index():
            return 0
        with self._errors(f"count documents in index {self.index!r}"):
            return int(self.client.count(index=self.index)["count"])

    def _search(self, body: dict[str, Any], source: str) -> list[ScoredDocument]:
        with self._errors(f"search index {self.index!r}"):
            response = self.client.search(index=self.index, **self._search_kwargs(body))
        return queries.hits_to_results(
            response.body, source, dense_similarity=self.dense_similarity if source == "dense" else None
        )

    def search_bm25(self, query: str, top_k: int = 10, filters: Filters | None = None) -> list[ScoredDocument]:
        """BM25 `match` on `content` (analyzer as configured, no fuzziness)."""
        body = queries.bm25_request(query, top_k, filters)
        if not self._inspect_index():
            return []
        return self._search(body, "bm25")

    def search_sparse(
        self, query: SparseVector, top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]:
        """Dot product with the documents' sparse embeddings (query pruned to `sparse_top_k` if set)."""
        if not self._inspect_index() or len(query) == 0:
            return []
        return self._search(self._sparse_body(query, top_k, filters), "sparse")

    def search_dense(
        self, query: Sequence[float], top_k: int = 10, filters: Filters | None = None
    ) -> list[ScoredDocument]:
        """Approximate kNN (HNSW); scores are the similarity itself (cosine in [-1, 1] by default)."""
        if not self._inspect_index():
            return []
        body = self._dense_body(query, top_k, filters)
        return [] if body is None else self._search(body, "dense")

    def close(self) -> None:
        """Close the sync client (the async one is closed by `close_async`)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> ElasticsearchStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
