"""Client-side LENS / SPLADE vectors in a langchain-elasticsearch index, and a retriever that queries them.

langchain-elasticsearch's `SparseVectorStrategy` only works with ELSER deployed in the cluster, and
its `ElasticsearchRetriever(body_func=…)` ignores `k` (sync) and fails on ``ainvoke(q, k=3)``. Here
the vectors are computed by a lens-rag sparse encoder on the client, stored in a `sparse_vector`
field next to the documents langchain-elasticsearch wrote (text in ``text``, metadata in
``metadata``), and queried with the same dot product on any 8.11+ server (`sparse_vector` query
from 8.15, boosted `term` queries before — see :func:`lens_rag.stores.elasticsearch.queries.sparse_clause`).

Usage::

    from langchain_elasticsearch import ElasticsearchStore
    from langchain_lens_rag.elasticsearch import ElasticsearchSparseRetriever, add_sparse_vectors
    from lens_rag import MLMSparseEncoder

    encoder = MLMSparseEncoder()
    add_sparse_vectors(es_client, "my-index", encoder)                 # once, and after adding texts
    retriever = ElasticsearchSparseRetriever(client=es_client, index_name="my-index", encoder=encoder, k=5)
    retriever.invoke("what causes scurvy?", k=3)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, PrivateAttr

from langchain_lens_rag._convert import to_lc_document
from lens_rag.documents import Document, ScoredDocument, SourceHit
from lens_rag.errors import BulkWriteError, ConfigurationError
from lens_rag.stores.elasticsearch.client import parse_version
from lens_rag.stores.elasticsearch.queries import SparseQueryMode, choose_sparse_mode, sparse_clause
from lens_rag.validation import check_top_k

__all__ = ["DEFAULT_SPARSE_FIELD", "ElasticsearchSparseRetriever", "add_sparse_vectors", "doc_with_id"]

DEFAULT_SPARSE_FIELD = "lens_sparse"


def doc_with_id(hit: dict[str, Any]) -> LCDocument:
    """A `doc_builder` for langchain-elasticsearch searches that keeps the Elasticsearch `_id` as `Document.id`.

    langchain-elasticsearch 1.0 returns documents without ids, so a hybrid could only match them by
    text. Pass it as ``store.as_retriever(search_kwargs={"k": 10, "doc_builder": doc_with_id})`` and
    the hybrid merges its documents with the sparse retriever's by id.
    """
    source = hit.get("_source", {})
    return LCDocument(
        id=hit["_id"], page_content=str(source.get("text", "")), metadata=dict(source.get("metadata") or {})
    )


def _scan(client: Any, index_name: str, text_field: str, batch_size: int) -> Iterator[list[tuple[str, str]]]:
    """Pages of `(id, text)` over the whole index: a point in time walked with search_after, closed at the end."""
    pit = client.open_point_in_time(index=index_name, keep_alive="2m")["id"]
    try:
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {
                "size": batch_size,
                "sort": [{"_shard_doc": "asc"}],
                "_source": [text_field],
                "query": {"match_all": {}},
                "pit": {"id": pit, "keep_alive": "2m"},
            }
            if after is not None:
                body["search_after"] = after
            response = client.search(**body)
            pit = response.get("pit_id", pit)
            hits = response["hits"]["hits"]
            if not hits:
                return
            yield [(h["_id"], str(h["_source"].get(text_field, ""))) for h in hits]
            after = hits[-1]["sort"]
    finally:
        client.close_point_in_time(id=pit)


def add_sparse_vectors(
    client: Any,
    index_name: str,
    encoder: Any,
    *,
    text_field: str = "text",
    vector_field: str = DEFAULT_SPARSE_FIELD,
    batch_size: int = 64,
) -> int:
    """Encode every document's `text_field` with `encoder` and store the vector in `vector_field`.

    Adds a `sparse_vector` mapping for `vector_field` first (a no-op when it exists). Documents whose
    text is empty are skipped. Run it again after adding texts; it re-encodes every document (pass the
    same encoder the retriever uses).

    :param client: an `elasticsearch.Elasticsearch` client (e.g. the one langchain-elasticsearch uses).
    :returns: how many documents got a vector.
    :raises BulkWriteError: naming every document id whose update failed, after the others were written.
    """
    if batch_size < 1:
        raise ConfigurationError(f"batch_size must be >= 1, got {batch_size}")
    if "." in vector_field or not vector_field:
        raise ConfigurationError(f"vector_field must be a plain field name without dots, got {vector_field!r}")
    client.indices.put_mapping(index=index_name, properties={vector_field: {"type": "sparse_vector"}})
    written, failed = 0, {}
    for page in _scan(client, index_name, text_field, batch_size):
        page = [(doc_id, text) for doc_id, text in page if text.strip()]
        if not page:
            continue
        vectors = encoder.encode_documents([text for _, text in page])
        operations: list[dict[str, Any]] = []
        for (doc_id, _), vector in zip(page, vectors):
            operations.append({"update": {"_index": index_name, "_id": doc_id}})
            operations.append({"doc": {vector_field: vector.to_dict()}})
        response = client.bulk(operations=operations, refresh=False)
        for item in response["items"]:
            result = item["update"]
            if result.get("error"):
                failed[result["_id"]] = str(result["error"].get("reason", result["error"]))
            else:
                written += 1
    client.indices.refresh(index=index_name)
    if failed:
        raise BulkWriteError(failed, written=written)
    return written


class ElasticsearchSparseRetriever(BaseRetriever):
    """LENS / SPLADE retrieval over a langchain-elasticsearch index enriched by :func:`add_sparse_vectors`.

    :param client: an `elasticsearch.Elasticsearch` client.
    :param async_client: optionally an `AsyncElasticsearch` for a native `ainvoke` (else the sync
        client runs in a worker thread).
    :param index_name: the index.
    :param encoder: the lens-rag sparse encoder that made the vectors.
    :param k: results per query (``invoke(q, k=…)`` overrides it).
    :param filter: Elasticsearch filter clauses always applied (e.g. ``[{"term": {"metadata.lang.keyword": "en"}}]``);
        a call's ``filter=…`` adds to them.
    :param vector_field, text_field, metadata_field: where the vectors, text and metadata live.
    :param query_mode: ``"auto"`` (`sparse_vector` query on 8.15+, boosted `term` queries on 8.11–8.14).
    :param query_top_k: keep only the query's largest weights (`None`: all).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    client: Any
    index_name: str
    encoder: Any
    async_client: Any = None
    k: int = 4
    filter: list[dict[str, Any]] | None = None
    vector_field: str = DEFAULT_SPARSE_FIELD
    text_field: str = "text"
    metadata_field: str = "metadata"
    query_mode: SparseQueryMode = "auto"
    query_top_k: int | None = None
    _mode: Literal["sparse_vector", "term"] | None = PrivateAttr(default=None)

    def _body(self, query: str, k: int | None, filter: list[dict[str, Any]] | None) -> dict[str, Any]:
        top_k = check_top_k(self.k if k is None else k, name="k")
        if self._mode is None:
            self._mode = choose_sparse_mode(parse_version(self.client.info()["version"]["number"]), self.query_mode)
        vector = self.encoder.encode_queries([query])[0]
        clause = sparse_clause(vector, field=self.vector_field, mode=self._mode, query_top_k=self.query_top_k)
        filters = [*(self.filter or []), *(filter or [])]
        return {
            "query": {"bool": {"must": [clause], "filter": filters}},
            "size": top_k,
            "_source": {"excludes": [self.vector_field, "vector"]},
        }

    def _documents(self, response: Any) -> list[LCDocument]:
        out = []
        for rank, hit in enumerate(response["hits"]["hits"], start=1):
            source = hit.get("_source", {})
            doc = Document(
                id=hit["_id"],
                content=str(source.get(self.text_field, "")),
                meta=dict(source.get(self.metadata_field) or {}),
            )
            score = float(hit["_score"])
            out.append(to_lc_document(ScoredDocument(doc, score, rank, {"sparse": SourceHit(score, rank)})))
        return out

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: list[dict[str, Any]] | None = None,
    ) -> list[LCDocument]:
        body = self._body(query, k, filter)
        if body["size"] == 0:
            return []
        return self._documents(self.client.search(index=self.index_name, **body))

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: list[dict[str, Any]] | None = None,
    ) -> list[LCDocument]:
        body = await asyncio.to_thread(self._body, query, k, filter)  # query encoding is CPU-bound
        if body["size"] == 0:
            return []
        if self.async_client is not None:
            response = await self.async_client.search(index=self.index_name, **body)
        else:
            response = await asyncio.to_thread(self.client.search, index=self.index_name, **body)
        return self._documents(response)
