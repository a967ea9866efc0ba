"""A sparse retriever for elasticsearch-haystack's `ElasticsearchDocumentStore` that works on Elasticsearch 8.11+.

elasticsearch-haystack's own `ElasticsearchSparseEmbeddingRetriever` sends a `sparse_vector` query,
which Elasticsearch 8.11–8.14 rejects ("unknown query [sparse_vector]"). This one asks the server its
version once and sends lens-rag's request: `sparse_vector` from 8.15, boosted `term` queries before
(the same dot product). It reads the user's store as it is: its client, index, sparse field and
filter translation, so swapping this component in changes nothing else.
"""

from __future__ import annotations

from typing import Any, Literal

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.dataclasses import SparseEmbedding
from haystack.document_stores.types import FilterPolicy
from haystack.document_stores.types.filter_policy import apply_filter_policy
from haystack_integrations.common.lens_rag.convert import to_lens_sparse
from haystack_integrations.document_stores.elasticsearch import ElasticsearchDocumentStore
from haystack_integrations.document_stores.elasticsearch.filters import _normalize_filters

from lens_rag.errors import ConfigurationError
from lens_rag.stores.elasticsearch.client import parse_version
from lens_rag.stores.elasticsearch.queries import (
    DEFAULT_MAX_QUERY_TERMS,
    SparseQueryMode,
    choose_sparse_mode,
    sparse_clause,
)
from lens_rag.validation import check_top_k

__all__ = ["LensRagElasticsearchSparseRetriever"]


@component
class LensRagElasticsearchSparseRetriever:
    """Sparse (LENS / SPLADE) retrieval on an `ElasticsearchDocumentStore`, on any Elasticsearch from 8.11.

    :param document_store: the user's `ElasticsearchDocumentStore`, created with `sparse_vector_field`.
    :param filters: Haystack filters applied to every query (see `filter_policy`).
    :param top_k: how many documents to return.
    :param filter_policy: how runtime filters combine with `filters`.
    :param query_mode: ``"auto"`` (by server version), ``"sparse_vector"`` or ``"term"``.
    :param max_query_terms: most query terms sent (below the server's boolean clause limit).
    :param return_embedding: return the documents' vectors too (slower on large `top_k`).

    Usage::

        store = ElasticsearchDocumentStore(hosts=url, index="docs", sparse_vector_field="sparse_vec")
        retriever = LensRagElasticsearchSparseRetriever(document_store=store)
        retriever.run(query_sparse_embedding=LensRagSparseTextEmbedder().run(text=q)["sparse_embedding"])
    """

    def __init__(
        self,
        *,
        document_store: ElasticsearchDocumentStore,
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        filter_policy: str | FilterPolicy = FilterPolicy.REPLACE,
        query_mode: SparseQueryMode = "auto",
        max_query_terms: int = DEFAULT_MAX_QUERY_TERMS,
        return_embedding: bool = False,
    ) -> None:
        if not isinstance(document_store, ElasticsearchDocumentStore):
            raise ValueError(
                f"document_store must be an ElasticsearchDocumentStore, got {type(document_store).__name__}"
            )
        if not document_store._sparse_vector_field:
            raise ConfigurationError(
                "the ElasticsearchDocumentStore has no sparse_vector_field; create it with "
                "ElasticsearchDocumentStore(..., sparse_vector_field='sparse_vec') and index sparse embeddings"
            )
        self.document_store = document_store
        self.filters = filters
        self.top_k = check_top_k(top_k)
        self.filter_policy = FilterPolicy.from_str(filter_policy) if isinstance(filter_policy, str) else filter_policy
        self.query_mode = query_mode
        self.max_query_terms = max_query_terms
        self.return_embedding = return_embedding
        self._mode: Literal["sparse_vector", "term"] | None = None
        self._field: str = document_store._sparse_vector_field

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            document_store=self.document_store.to_dict(),
            filters=self.filters,
            top_k=self.top_k,
            filter_policy=self.filter_policy.value,
            query_mode=self.query_mode,
            max_query_terms=self.max_query_terms,
            return_embedding=self.return_embedding,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LensRagElasticsearchSparseRetriever:
        params = data["init_parameters"]
        params["document_store"] = ElasticsearchDocumentStore.from_dict(params["document_store"])
        return default_from_dict(cls, data)

    def _body(self, query: SparseEmbedding, filters: dict[str, Any] | None, top_k: int | None, version: Any) -> Any:
        if self._mode is None:
            self._mode = choose_sparse_mode(parse_version(version), self.query_mode)
        top_k = check_top_k(self.top_k if top_k is None else top_k)
        clause = sparse_clause(
            to_lens_sparse(query), field=self._field, mode=self._mode, max_query_terms=self.max_query_terms
        )
        query_dsl: dict[str, Any] = {"bool": {"must": [clause]}}
        merged = apply_filter_policy(self.filter_policy, self.filters, filters)
        if merged:
            query_dsl["bool"]["filter"] = _normalize_filters(merged)
        out: dict[str, Any] = {"query": query_dsl, "size": top_k}
        if not self.return_embedding:
            out["_source"] = {"excludes": ["embedding", self._field]}
        return out

    def _documents(self, response: Any) -> dict[str, list[Document]]:
        return {"documents": [self.document_store._deserialize_document(hit) for hit in response["hits"]["hits"]]}

    @component.output_types(documents=list[Document])
    def run(
        self, query_sparse_embedding: SparseEmbedding, filters: dict[str, Any] | None = None, top_k: int | None = None
    ) -> dict[str, list[Document]]:
        """Documents ranked by sparse dot product (best first, `score` set).

        :param query_sparse_embedding: the encoded query (e.g. from `LensRagSparseTextEmbedder`).
        :param filters: runtime Haystack filters.
        :param top_k: overrides the instance's `top_k` (``0`` returns none).
        """
        client = self.document_store.client
        version = client.info()["version"]["number"] if self._mode is None else None
        body = self._body(query_sparse_embedding, filters, top_k, version)
        if body["size"] == 0:
            return {"documents": []}
        return self._documents(client.search(index=self.document_store._index, **body))

    @component.output_types(documents=list[Document])
    async def run_async(
        self, query_sparse_embedding: SparseEmbedding, filters: dict[str, Any] | None = None, top_k: int | None = None
    ) -> dict[str, list[Document]]:
        """The async twin of :meth:`run` (the store's `AsyncElasticsearch` client)."""
        client = self.document_store.async_client
        version = (await client.info())["version"]["number"] if self._mode is None else None
        body = self._body(query_sparse_embedding, filters, top_k, version)
        if body["size"] == 0:
            return {"documents": []}
        return self._documents(await client.search(index=self.document_store._index, **body))
