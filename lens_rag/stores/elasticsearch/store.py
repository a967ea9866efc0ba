"""`ElasticsearchStore`: the `Store`/`AsyncStore` protocols on a real Elasticsearch cluster (Basic licence).

Requests come from the pure builders in :mod:`.queries`; the sync methods live here and their
async twins (native `AsyncElasticsearch`) in :mod:`.async_store`, sharing all validation and parsing.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import elasticsearch
from elasticsearch import Elasticsearch
from elasticsearch.helpers import streaming_bulk
from tqdm.auto import tqdm

from lens_rag.documents import Document, ScoredDocument
from lens_rag.errors import BulkWriteError, ConfigurationError, StoreError
from lens_rag.filters import FilterNode, Filters, meta_fields, parse_filters
from lens_rag.sparse import SparseVector
from lens_rag.stores.base import WriteResult
from lens_rag.stores.elasticsearch import bulk, by_filter, queries
from lens_rag.stores.elasticsearch.async_store import AsyncMethods
from lens_rag.stores.elasticsearch.client import ConnectionSettings, parse_version, translate_error
from lens_rag.stores.elasticsearch.mappings import (
    DENSE_FIELD,
    EXPANSION_FIELD,
    META_FIELD,
    SIMILARITIES,
    VECTOR_FIELDS,
    dense_field_mapping,
    expansion_field_mapping,
    field_types,
    index_body,
    mapping_conflicts,
    meta_dynamic_templates,
)
from lens_rag.validation import check_dense_query, check_sparse_query, check_top_k

__all__ = ["ElasticsearchStore", "RefreshPolicy"]

logger = logging.getLogger(__name__)

RefreshPolicy = Literal["end", "wait_for", "none"]
_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_RETRY_STATUSES = (429, 502, 503, 504)
_CONFIG_KEYS = (
    "url",
    "index",
    "api_key_env",
    "username_env",
    "password_env",
    "ca_certs",
    "dense_dims",
    "dense_similarity",
    "analyzer",
    "sparse_query_mode",
    "sparse_top_k",
    "max_query_terms",
    "num_candidates",
    "num_candidates_factor",
    "refresh",
    "chunk_size",
    "max_retries",
    "request_timeout",
    "progress",
    "server_version",
    "vectors_in_source",
)


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
    :param vectors_in_source: keep vectors in the stored `_source` (slower searches; needed for
        `include_embeddings=True` reads and for :meth:`update_by_filter` on documents with vectors).
    :param api_key_env: environment variable holding the API key when `api_key` is not given
        (default ``ES_API_KEY``); configs store this name, never the key.
    :param username_env: environment variable holding the user name (default ``ES_USERNAME``).
    :param password_env: environment variable holding the password (default ``ES_PASSWORD``).
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
        api_key_env: str | None = None,
        username_env: str | None = None,
        password_env: str | None = None,
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
        # filters: secrets from named environment variables (to_config stores the names, never the values)
        self._secret_env = {
            "api_key_env": api_key_env or "ES_API_KEY",
            "username_env": username_env or "ES_USERNAME",
            "password_env": password_env or "ES_PASSWORD",
        }
        self._explicit_secret = api_key is not None or basic_auth is not None
        if api_key is None and api_key_env is not None and os.environ.get(api_key_env):
            api_key = os.environ[api_key_env]
        if basic_auth is None and username_env is not None and os.environ.get(username_env):
            basic_auth = (os.environ[username_env], os.environ.get(password_env or "ES_PASSWORD", ""))
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
        self._has_expansion_field = False  # expansion: the index maps the doc2query text field
        self._server_version_arg = server_version
        self._url_arg = url
        self._field_types: dict[str, str] = {}  # filters: mapped types of meta fields, for type-strict filters
        self._vectors_excluded = not vectors_in_source  # filters: the index's _source drops the vectors
        self._legacy_dynamic = False  # filters: index made before date detection was turned off

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
        self._learn_mapping(mappings)
        self._index_checked = True

    # ------------------------------------------------------------------ filters: mapping-aware filters
    def _learn_mapping(self, mappings: Mapping[str, Any]) -> None:
        """Remember the meta fields' types, whether `_source` drops vectors, and whether dynamic mapping is old."""
        self._field_types = field_types(dict(mappings), META_FIELD)
        excludes = mappings.get("_source", {}).get("excludes", [])
        self._vectors_excluded = any(f in excludes for f in VECTOR_FIELDS)
        self._legacy_dynamic = mappings.get("date_detection") not in (False, "false")
        self._has_expansion_field = EXPANSION_FIELD in mappings.get("properties", {})

    @staticmethod
    def _mapping_of(response: Mapping[str, Any]) -> dict[str, Any]:
        first: dict[str, Any] = next(iter(response.values()), {}) if response else {}
        return dict(first.get("mappings", {}))

    def _missing_types(self, node: FilterNode | None) -> bool:
        """Whether the filter names meta fields whose mapped type is not known yet (new since the last look)."""
        return any(f"{META_FIELD}.{key}" not in self._field_types for key in meta_fields(node))

    def _types_for(self, node: FilterNode | None) -> dict[str, str]:
        """Field types for translating `node`, re-reading the mapping if it names fields not seen yet."""
        if self._missing_types(node):
            with self._errors(f"read the mapping of index {self.index!r}"):
                self._learn_mapping(self._mapping_of(dict(self.client.indices.get_mapping(index=self.index))))
        return self._field_types

    @staticmethod
    def _dynamic_settings() -> dict[str, Any]:
        """`put_mapping` arguments that bring an index made by an older lens-rag to today's dynamic meta mapping."""
        return {"date_detection": False, "numeric_detection": False, "dynamic_templates": meta_dynamic_templates()}

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

    def _bm25_body(self, query: str, top_k: int, filters: Filters | FilterNode | None) -> dict[str, Any]:
        expansion = EXPANSION_FIELD if self._has_expansion_field else None
        return queries.bm25_request(query, top_k, filters, field_types=self._field_types, expansion_field=expansion)

    # ------------------------------------------------------------------ expansion: doc2query text field
    def _expansion_mapping(self, batch: Mapping[str, Document]) -> dict[str, Any] | None:
        """`put_mapping` arguments adding the doc2query field, when `batch` carries expansions and it is missing."""
        if self._has_expansion_field or not any(bulk.has_expansion(d) for d in batch.values()):
            return None
        return {"index": self.index, "properties": {EXPANSION_FIELD: expansion_field_mapping(self.analyzer)}}

    def _ensure_expansion_field(self, batch: Mapping[str, Document]) -> None:
        kwargs = self._expansion_mapping(batch)
        if kwargs is not None:
            with self._errors(f"add the expansion field to index {self.index!r}"):
                self.client.indices.put_mapping(**kwargs)
            self._has_expansion_field = True

    def _sparse_body(self, query: SparseVector, top_k: int, filters: Filters | FilterNode | None) -> dict[str, Any]:
        assert self._version is not None
        query = check_sparse_query(query)
        mode = queries.choose_sparse_mode(self._version, self.sparse_query_mode)
        return queries.sparse_request(
            query,
            top_k,
            filters,
            mode=mode,
            query_top_k=self.sparse_top_k,
            max_query_terms=self.max_query_terms,
            field_types=self._field_types,
        )

    def _dense_body(
        self, query: Sequence[float], top_k: int, filters: Filters | FilterNode | None
    ) -> dict[str, Any] | None:
        if not self._has_dense_field:
            return None
        if self.dense_dims is not None and len(query) != self.dense_dims:
            raise ConfigurationError(
                f"query vector has {len(query)} dimensions but index {self.index!r} holds "
                f"{self.dense_dims}-dimensional "
                "embeddings; encode the query with the model that indexed the store"
            )
        vector = check_dense_query(query, self.dense_dims).tolist()
        return queries.dense_request(
            vector,
            top_k,
            filters,
            num_candidates=self.num_candidates,
            num_candidates_factor=self.num_candidates_factor,
            field_types=self._field_types,
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
        if self._legacy_dynamic:  # filters: new meta keys keep their JSON type from now on
            with self._errors(f"update the dynamic mapping of index {self.index!r}"):
                self.client.indices.put_mapping(index=self.index, **self._dynamic_settings())
            self._legacy_dynamic = False

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

    def set_info(self, info: Mapping[str, Any]) -> None:
        """Replace the metadata returned by :attr:`info` (creates the index if needed)."""
        self.ensure_index()
        with self._errors(f"update the mapping of index {self.index!r}"):
            self.client.indices.put_mapping(index=self.index, meta={"lens_rag_info": dict(info)})

    def delete_index(self) -> None:
        """Delete the index and everything in it (no error if it does not exist)."""
        with self._errors(f"delete index {self.index!r}"):
            self.client.indices.delete(index=self.index, ignore_unavailable=True)
        self._index_checked = self._has_dense_field = False
        self._field_types, self._legacy_dynamic = {}, False

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
            self._ensure_expansion_field(batch)
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

    def _search(self, body: dict[str, Any], source: str) -> list[ScoredDocument]:
        with self._errors(f"search index {self.index!r}"):
            response = self.client.search(index=self.index, **self._search_kwargs(body))
        return queries.hits_to_results(
            response.body, source, dense_similarity=self.dense_similarity if source == "dense" else None
        )

    def search_bm25(
        self, query: str, top_k: int = 10, filters: Filters | FilterNode | None = None
    ) -> list[ScoredDocument]:
        """BM25 `match` on `content` (analyzer as configured, no fuzziness); `top_k=0` returns nothing."""
        top_k, node = check_top_k(top_k), parse_filters(filters)
        if top_k == 0 or not self._inspect_index():
            return []
        self._types_for(node)
        return self._search(self._bm25_body(query, top_k, node), "bm25")

    def search_sparse(
        self, query: SparseVector, top_k: int = 10, filters: Filters | FilterNode | None = None
    ) -> list[ScoredDocument]:
        """Dot product with the documents' sparse embeddings (query pruned to `sparse_top_k` if set)."""
        top_k, node, query = check_top_k(top_k), parse_filters(filters), check_sparse_query(query)
        if top_k == 0 or not self._inspect_index() or len(query) == 0:
            return []
        self._types_for(node)
        return self._search(self._sparse_body(query, top_k, node), "sparse")

    def search_dense(
        self, query: Sequence[float], top_k: int = 10, filters: Filters | FilterNode | None = None
    ) -> list[ScoredDocument]:
        """Approximate kNN (HNSW); scores are the similarity itself (cosine in [-1, 1] by default)."""
        top_k, node = check_top_k(top_k), parse_filters(filters)
        if top_k == 0 or not self._inspect_index():
            return []
        self._types_for(node)
        body = self._dense_body(query, top_k, node)
        return [] if body is None else self._search(body, "dense")

    # ------------------------------------------------------------------ filters: documents by filter
    def count_documents(self, filters: Filters | FilterNode | None = None) -> int:
        """How many documents match `filters` (every document without one).

        :param filters: any filter :func:`lens_rag.filters.parse_filters` accepts (Haystack's syntax too).
        :raises ConfigurationError: on a malformed filter.
        """
        node = parse_filters(filters)
        if not self._inspect_index():
            return 0
        query = None if node is None else queries.match_query(node, self._types_for(node))
        with self._errors(f"count documents in index {self.index!r}"):
            response = (
                self.client.count(index=self.index, query=query) if query else self.client.count(index=self.index)
            )
        return int(response["count"])

    def filter_documents(
        self,
        filters: Filters | FilterNode | None = None,
        *,
        limit: int | None = None,
        include_embeddings: bool = False,
    ) -> list[Document]:
        """The documents matching `filters`, in index order (all of them unless `limit`).

        :param filters: any filter :func:`lens_rag.filters.parse_filters` accepts; `None` for all documents.
        :param limit: at most this many (`None`: no limit; read in pages, see :meth:`iter_documents`).
        :param include_embeddings: return the vectors too (only if the index keeps them in `_source`).
        :raises ConfigurationError: on a malformed filter or a negative `limit`.
        """
        if limit is not None:
            limit = check_top_k(limit, "limit")
        node = parse_filters(filters)
        if limit is not None and limit <= by_filter.ONE_PAGE:
            if limit == 0 or not self._inspect_index():
                return []
            body = queries.scan_request(
                node,
                batch_size=limit,
                pit_id="",
                field_types=self._types_for(node),
                include_embeddings=include_embeddings,
            )
            del body["pit"]
            body["sort"] = ["_doc"]
            with self._errors(f"read documents from index {self.index!r}"):
                response = self.client.search(index=self.index, **self._search_kwargs(body))
            return [queries.source_to_document(h["_id"], h.get("_source") or {}) for h in response["hits"]["hits"]]
        out: list[Document] = []
        pages = self._scan(
            node, by_filter.ONE_PAGE if limit is None else min(limit, by_filter.ONE_PAGE), include_embeddings
        )
        try:
            for doc in pages:
                out.append(doc)
                if limit is not None and len(out) >= limit:
                    break
        finally:
            pages.close()
        return out

    def iter_documents(
        self,
        filters: Filters | FilterNode | None = None,
        *,
        batch_size: int = 1000,
        include_embeddings: bool = False,
    ) -> Iterator[Document]:
        """Stream the documents matching `filters` in pages of `batch_size`, over a point in time.

        The iterator sees the index as it was when iteration started (writes made meanwhile are not
        seen); each page keeps the point in time alive for two minutes. Close the iterator (or read it
        to the end) to release it early.

        :param batch_size: documents per request, 1 to 10,000.
        :raises ConfigurationError: on a malformed filter or `batch_size`.
        """
        batch_size = check_top_k(batch_size, "batch_size")
        if not 1 <= batch_size <= by_filter.ONE_PAGE:
            raise ConfigurationError(f"batch_size must be between 1 and {by_filter.ONE_PAGE}, got {batch_size}")
        return self._scan(parse_filters(filters), batch_size, include_embeddings)

    def _scan(self, node: FilterNode | None, batch_size: int, include_embeddings: bool) -> Generator[Document]:
        if not self._inspect_index():
            return
        types = self._types_for(node)
        with self._errors(f"open a point in time on index {self.index!r}"):
            pit_id = str(self.client.open_point_in_time(index=self.index, keep_alive=by_filter.KEEP_ALIVE)["id"])
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
                    response = self.client.search(**self._search_kwargs(body))
                pit_id = str(response.get("pit_id") or pit_id)
                hits = response["hits"]["hits"]
                for hit in hits:
                    yield queries.source_to_document(hit["_id"], hit.get("_source") or {})
                if len(hits) < batch_size:
                    return
                after = list(hits[-1]["sort"])
        finally:
            try:
                self.client.close_point_in_time(id=pit_id)
            except (elasticsearch.ApiError, elasticsearch.TransportError) as e:  # it expires on its own
                logger.debug("could not close a point in time on %s: %s", self.index, type(e).__name__)

    def delete_by_filter(self, filters: Filters | FilterNode) -> int:
        """Delete the documents matching `filters`.

        :returns: how many were deleted.
        :raises ConfigurationError: on a malformed or empty filter (use :meth:`delete_all_documents`).
        """
        node = by_filter.required_filter(filters, "delete_by_filter", "delete_all_documents()")
        if not self._inspect_index():
            return 0
        query = queries.match_query(node, self._types_for(node))
        with self._errors(f"delete documents by filter from index {self.index!r}"):
            try:
                response = self.client.delete_by_query(
                    index=self.index, query=query, refresh=self.refresh != "none", conflicts="proceed"
                )
            except elasticsearch.ApiError as e:
                body = by_filter.failure_body(e)
                if body is not None:
                    by_filter.by_query_count(body, "deleted", self.index)  # raises, naming the failures
                raise
        return by_filter.by_query_count(response.body, "deleted", self.index)

    def delete_all_documents(self, *, recreate_index: bool = False) -> int:
        """Delete every document; the index, its mapping and :attr:`info` stay.

        :param recreate_index: drop and recreate the index instead (faster for large indexes; resets
            the metadata mapping; :attr:`info` is carried over).
        :returns: how many documents were deleted.
        """
        if not self._inspect_index():
            return 0
        if recreate_index:
            count, info, dims = self.count_documents(), self.info, self.dense_dims
            self.delete_index()
            self.ensure_index(dims)
            if info:
                self.set_info(info)
            return count
        with self._errors(f"delete all documents from index {self.index!r}"):
            try:
                response = self.client.delete_by_query(
                    index=self.index, query={"match_all": {}}, refresh=self.refresh != "none", conflicts="proceed"
                )
            except elasticsearch.ApiError as e:
                body = by_filter.failure_body(e)
                if body is not None:
                    by_filter.by_query_count(body, "deleted", self.index)  # raises, naming the failures
                raise
        return by_filter.by_query_count(response.body, "deleted", self.index)

    def update_by_filter(self, filters: Filters | FilterNode | None, meta: Mapping[str, Any]) -> int:
        """Merge `meta` into the metadata of every document matching `filters` (top-level keys replaced).

        Elasticsearch rewrites an updated document from its `_source`; an index that keeps vectors
        out of `_source` (the default, ``vectors_in_source=False``) would lose them, so then documents
        with vectors are refused (re-write them with :meth:`write_documents` instead).

        :param filters: which documents; `None` or ``{}`` for all.
        :param meta: JSON metadata to merge.
        :returns: how many documents were updated.
        :raises ConfigurationError: on a malformed filter or `meta`.
        :raises StoreError: if matching documents have vectors the update would drop, or the server refused some.
        """
        node = parse_filters(filters)
        meta = by_filter.check_meta(meta)
        if not meta or not self._inspect_index():
            return 0
        query = queries.match_query(node, self._types_for(node))
        if self._vectors_excluded:
            with self._errors(f"count documents in index {self.index!r}"):
                guarded = {"bool": {"filter": [query, queries.HAS_VECTORS]}}
                at_risk = int(self.client.count(index=self.index, query=guarded)["count"])
            by_filter.refuse_vector_loss(at_risk, self.index)
            query = {"bool": {"filter": [query], "must_not": [queries.HAS_VECTORS]}}
        with self._errors(f"update documents by filter in index {self.index!r}"):
            try:
                response = self.client.update_by_query(
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

    # ------------------------------------------------------------------ filters: configuration
    def to_config(self) -> dict[str, Any]:
        """This store's settings as JSON: ``{"type": "elasticsearch_store", ...}``, secrets as env var names only.

        A key or password passed as a value is not saved: :meth:`from_config` reads it from the
        environment variables named here (``api_key_env``, ``username_env``, ``password_env``).
        ``url`` is `None` when it came from ``ES_URL``, so a loaded config reads ``ES_URL`` again.
        """
        if self._explicit_secret or self.settings.url != self.settings.safe_url:
            logger.warning(
                "ElasticsearchStore.to_config() does not save credentials; from_config reads them from %s, "
                "or %s and %s",
                self._secret_env["api_key_env"],
                self._secret_env["username_env"],
                self._secret_env["password_env"],
            )
        return {
            "type": "elasticsearch_store",
            "url": None if self._url_arg is None else self.settings.safe_url,
            "index": self.index,
            **self._secret_env,
            "ca_certs": self.settings.ca_certs,
            "dense_dims": self.dense_dims,
            "dense_similarity": self.dense_similarity,
            "analyzer": self.analyzer,
            "sparse_query_mode": self.sparse_query_mode,
            "sparse_top_k": self.sparse_top_k,
            "max_query_terms": self.max_query_terms,
            "num_candidates": self.num_candidates,
            "num_candidates_factor": self.num_candidates_factor,
            "refresh": self.refresh,
            "chunk_size": self.chunk_size,
            "max_retries": self.settings.max_retries,
            "request_timeout": self.settings.request_timeout,
            "progress": self.progress,
            "server_version": self._server_version_arg,
            "vectors_in_source": self.vectors_in_source,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ElasticsearchStore:
        """A store from :meth:`to_config`'s dict (nothing connects until first use).

        :raises ConfigurationError: on unknown keys (secrets as values are refused), a wrong type or bad values.
        """
        from lens_rag.config import config_params

        kind = config.get("type", "elasticsearch_store")
        if kind != "elasticsearch_store":
            raise ConfigurationError(f"ElasticsearchStore.from_config got a config of type {kind!r}")
        params = config_params(config, cls.__name__, _CONFIG_KEYS)
        return cls(**params)

    # ------------------------------------------------------------------ es-ops: multi-search (one round trip)
    def _msearch_bodies(self, requests: Sequence[Any]) -> list[dict[str, Any] | None]:
        """Bodies of checked requests, built by the builders `search_bm25`/`search_sparse`/`search_dense` use."""
        from lens_rag.stores.elasticsearch import msearch

        return msearch.request_bodies(requests, bm25=self._bm25_body, sparse=self._sparse_body, dense=self._dense_body)

    def search_many(self, requests: Sequence[Any]) -> list[list[ScoredDocument]]:
        """Several searches of this index in one `_msearch` round trip; the server runs them side by side.

        Each result list is exactly what the matching ``search_<kind>`` call returns (same checks,
        same bodies, same parsing); :class:`~lens_rag.retrieval.HybridRetriever` uses this for its members.

        :param requests: :class:`~lens_rag.stores.elasticsearch.msearch.SearchRequest` (or plain
            ``(kind, query, top_k, filters)`` tuples), kind ``"bm25"``, ``"sparse"`` or ``"dense"``.
        :returns: one ranked list per request, in request order.
        :raises ConfigurationError: on a malformed request (nothing is sent).
        :raises StoreError: if any of the searches fails (naming which).
        """
        from lens_rag.stores.elasticsearch import msearch

        checked = msearch.check_requests(requests)
        if not any(msearch.needs_search(r) for r in checked) or not self._inspect_index():
            return [[] for _ in checked]
        for node in msearch.filter_nodes(checked):
            self._types_for(node)
        bodies = self._msearch_bodies(checked)
        if all(body is None for body in bodies):
            return [[] for _ in checked]
        with self._errors(f"search index {self.index!r}"):
            response = self.client.msearch(index=self.index, searches=msearch.msearch_lines(bodies))
        return msearch.parse_responses(
            response.body, checked, bodies, index=self.index, dense_similarity=self.dense_similarity
        )

    # ------------------------------------------------------------------ es-ops: end of multi-search

    def close(self) -> None:
        """Close the sync client (the async one is closed by `close_async`)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> ElasticsearchStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
