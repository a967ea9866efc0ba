"""Elasticsearch request bodies and response parsing as pure functions, shared by sync and async code.

Every builder returns the full `search` body (`query` or `knn`, `size` once, `_source` without
vectors), so tests compare plain dicts and no cluster is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from lens_rag.documents import Document, ScoredDocument, SourceHit
from lens_rag.errors import ConfigurationError
from lens_rag.filters import FilterNode, Filters, filters_to_es
from lens_rag.sparse import SparseVector
from lens_rag.stores.elasticsearch.mappings import (
    CONTENT_FIELD,
    DENSE_FIELD,
    EXPANSION_FIELD,
    META_FIELD,
    SPARSE_FIELD,
    VECTOR_FIELDS,
)

__all__ = [
    "DEFAULT_MAX_QUERY_TERMS",
    "SparseQueryMode",
    "bm25_request",
    "choose_sparse_mode",
    "dense_request",
    "filters_to_dsl",
    "hits_to_results",
    "match_query",
    "scan_request",
    "source_to_document",
    "sparse_clause",
    "sparse_request",
    "update_meta_script",
]

logger = logging.getLogger(__name__)

SparseQueryMode = Literal["auto", "sparse_vector", "term"]
# Lucene's boolean clause limit is 1024 on older servers (`indices.query.bool.max_clause_count`);
# newer ones size it from the heap. Stay below the old default unless the caller raises it.
DEFAULT_MAX_QUERY_TERMS = 1024
MAX_NUM_CANDIDATES = 10_000
_SOURCE_EXCLUDES = {"excludes": list(VECTOR_FIELDS)}


def filters_to_dsl(
    filters: Filters | FilterNode | None, field_types: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """Translate a lens-rag filter into an Elasticsearch query for filter context; `None` when empty.

    See :func:`lens_rag.filters.filters_to_es` (this is the same, kept under its first name).

    :param filters: any filter :func:`lens_rag.filters.parse_filters` accepts.
    :param field_types: the index's mapped types by field path (``{"meta.year": "double"}``).
    :raises ConfigurationError: if `filters` is malformed.
    """
    return filters_to_es(filters, field_types=field_types, meta_field=META_FIELD)


def _with_filter(
    query: dict[str, Any], filters: Filters | FilterNode | None, field_types: Mapping[str, str] | None
) -> dict[str, Any]:
    dsl = filters_to_dsl(filters, field_types)
    if dsl is None:
        return query
    inner = dsl.get("bool")
    if isinstance(inner, dict) and set(inner) <= {"filter", "must_not"}:
        return {"bool": {"must": [query], **inner}}  # flat: the filter's own clauses
    return {"bool": {"must": [query], "filter": [dsl]}}


def _check_top_k(top_k: int) -> None:
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ConfigurationError(f"top_k must be a positive integer, got {top_k!r}")


def bm25_request(
    query: str,
    top_k: int = 10,
    filters: Filters | FilterNode | None = None,
    *,
    field_types: Mapping[str, str] | None = None,
    expansion_field: str | None = None,
) -> dict[str, Any]:
    """BM25 `match` on `content`: no fuzziness, no query-string syntax (special characters are plain text).

    :param field_types: the index's mapped metadata types, so filters stay type-strict (see `filters_to_dsl`).
    :param expansion_field: the doc2query field when the index has one: `content` and it are then scored
        as one field (``combined_fields``, BM25F), as the embedded store scores their concatenation.
    """
    _check_top_k(top_k)
    match: dict[str, Any] = {"match": {CONTENT_FIELD: {"query": query}}}
    if expansion_field is not None:
        match = {"combined_fields": {"query": query, "fields": [CONTENT_FIELD, expansion_field]}}
    return {"query": _with_filter(match, filters, field_types), "size": top_k, "_source": _SOURCE_EXCLUDES}


def choose_sparse_mode(
    version: tuple[int, int, int], mode: SparseQueryMode = "auto"
) -> Literal["sparse_vector", "term"]:
    """`sparse_vector` query from 8.15, boosted `term` queries on 8.11–8.14 (same dot product).

    :raises ConfigurationError: on an unknown mode, or for servers older than 8.11 (no `sparse_vector` field).
    """
    if mode not in ("auto", "sparse_vector", "term"):
        raise ConfigurationError(f"sparse_query_mode must be 'auto', 'sparse_vector' or 'term', got {mode!r}")
    if version < (8, 11, 0):
        raise ConfigurationError(
            f"Elasticsearch {'.'.join(map(str, version))} has no sparse_vector field; sparse search needs 8.11 or newer"
        )
    if mode != "auto":
        return mode
    return "sparse_vector" if version >= (8, 15, 0) else "term"


def sparse_clause(
    query: SparseVector,
    *,
    field: str = SPARSE_FIELD,
    mode: Literal["sparse_vector", "term"] = "sparse_vector",
    query_top_k: int | None = None,
    max_query_terms: int = DEFAULT_MAX_QUERY_TERMS,
) -> dict[str, Any]:
    """The query clause scoring `field` (a `sparse_vector` field) by its dot product with `query`.

    Shared by our store and by the adapters that query a framework's own index (any field name).
    See :func:`sparse_request` for `mode`, `query_top_k` and `max_query_terms`.
    """
    if max_query_terms < 1:
        raise ConfigurationError(f"max_query_terms must be >= 1, got {max_query_terms}")
    vector = query.top_k(query_top_k)
    if len(vector) > max_query_terms:
        logger.warning(
            "sparse query has %s terms, more than max_query_terms=%s; keeping the %s largest weights "
            "(raise max_query_terms with indices.query.bool.max_clause_count to keep more)",
            len(vector),
            max_query_terms,
            max_query_terms,
        )
        vector = vector.top_k(max_query_terms)
    weights = vector.to_dict()
    if mode == "sparse_vector":
        return {"sparse_vector": {"field": field, "query_vector": weights, "prune": False}}
    if mode == "term":
        should = [{"term": {field: {"value": name, "boost": w}}} for name, w in weights.items()]
        return {"bool": {"should": should, "minimum_should_match": 1}}
    raise ConfigurationError(f"mode must be 'sparse_vector' or 'term', got {mode!r}")


def sparse_request(
    query: SparseVector,
    top_k: int = 10,
    filters: Filters | FilterNode | None = None,
    *,
    mode: Literal["sparse_vector", "term"] = "sparse_vector",
    query_top_k: int | None = None,
    max_query_terms: int = DEFAULT_MAX_QUERY_TERMS,
    field_types: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Dot product of `query` with each document's `sparse_embedding`.

    :param query: the encoded query; weights must be positive.
    :param mode: ``"sparse_vector"`` (ES ≥ 8.15, pruning off) or ``"term"`` (a `bool`/`should` of
        `term` queries boosted by the query weights, for 8.11–8.14).
    :param query_top_k: keep only the query's `query_top_k` largest weights (faster, may cost nDCG).
    :param max_query_terms: hard cap on query terms, below `indices.query.bool.max_clause_count`;
        longer queries keep their largest weights and a warning is logged.
    :raises ConfigurationError: if `top_k`, `query_top_k` or `max_query_terms` is not positive.
    """
    _check_top_k(top_k)
    clause = sparse_clause(query, mode=mode, query_top_k=query_top_k, max_query_terms=max_query_terms)
    return {"query": _with_filter(clause, filters, field_types), "size": top_k, "_source": _SOURCE_EXCLUDES}


def num_candidates_for(top_k: int, num_candidates: int | None = None, factor: float = 10.0) -> int:
    """`num_candidates` for kNN: explicit value, else `factor × top_k` with a floor of 100; never below `top_k`."""
    n = num_candidates if num_candidates is not None else max(100, round(factor * top_k))
    return min(max(n, top_k), MAX_NUM_CANDIDATES)


def dense_request(
    query: Sequence[float],
    top_k: int = 10,
    filters: Filters | FilterNode | None = None,
    *,
    num_candidates: int | None = None,
    num_candidates_factor: float = 10.0,
    field_types: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Top-level kNN on `embedding` (filter applied inside kNN, so `top_k` results still come back)."""
    _check_top_k(top_k)
    vector = [float(x) for x in query]
    if not vector:
        raise ConfigurationError("dense query vector is empty; encode the query with the store's dense encoder")
    knn: dict[str, Any] = {
        "field": DENSE_FIELD,
        "query_vector": vector,
        "k": top_k,
        "num_candidates": num_candidates_for(top_k, num_candidates, num_candidates_factor),
    }
    dsl = filters_to_dsl(filters, field_types)
    if dsl is not None:
        knn["filter"] = dsl
    return {"knn": knn, "size": top_k, "_source": _SOURCE_EXCLUDES}


def match_query(filters: Filters | FilterNode | None, field_types: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The filter as a query (``match_all`` when empty), for count, delete-by-query and update-by-query."""
    dsl = filters_to_dsl(filters, field_types)
    return {"match_all": {}} if dsl is None else dsl


def scan_request(
    filters: Filters | FilterNode | None,
    *,
    batch_size: int,
    pit_id: str,
    search_after: Sequence[Any] | None = None,
    field_types: Mapping[str, str] | None = None,
    include_embeddings: bool = False,
    keep_alive: str = "2m",
) -> dict[str, Any]:
    """One page of a point-in-time scan in index order (``_shard_doc``), continuing after `search_after`."""
    body: dict[str, Any] = {
        "query": {"bool": {"filter": [match_query(filters, field_types)]}},
        "size": batch_size,
        "sort": [{"_shard_doc": "asc"}],
        "pit": {"id": pit_id, "keep_alive": keep_alive},
        "_source": True if include_embeddings else _SOURCE_EXCLUDES,
        "track_total_hits": False,
    }
    if search_after is not None:
        body["search_after"] = list(search_after)
    return body


HAS_VECTORS: dict[str, Any] = {
    "bool": {
        "should": [{"exists": {"field": DENSE_FIELD}}, {"exists": {"field": SPARSE_FIELD}}],
        "minimum_should_match": 1,
    }
}

UPDATE_META_SCRIPT = (
    "if (ctx._source.meta == null) { ctx._source.meta = new HashMap(); } ctx._source.meta.putAll(params.meta);"
)


def update_meta_script(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A painless script merging `meta` into each document's metadata (top-level keys replaced, as `dict.update`)."""
    return {"source": UPDATE_META_SCRIPT, "lang": "painless", "params": {"meta": dict(meta)}}


def source_to_document(doc_id: str, source: Mapping[str, Any]) -> Document:
    """A `Document` from a hit's `_source`; vectors are parsed when present."""
    sparse = source.get(SPARSE_FIELD)
    dense = source.get(DENSE_FIELD)
    meta = dict(source.get(META_FIELD) or {})
    if isinstance(source.get(EXPANSION_FIELD), str):  # doc2query text goes back where it was written
        meta[EXPANSION_FIELD] = source[EXPANSION_FIELD]
    return Document(
        id=doc_id,
        content=source.get(CONTENT_FIELD, ""),
        meta=meta,
        embedding=[float(x) for x in dense] if dense is not None else None,
        sparse_embedding=SparseVector.from_dict(sparse) if sparse else None,
    )


def hits_to_results(
    response: Mapping[str, Any], source: str, *, dense_similarity: str | None = None
) -> list[ScoredDocument]:
    """Turn a search response into ranked `ScoredDocument`s labelled with `source`.

    For dense hits with `cosine`/`dot_product` similarity Elasticsearch returns `(1 + sim) / 2`;
    pass `dense_similarity` to report the similarity itself, as the embedded store does.
    """
    results: list[ScoredDocument] = []
    for rank, hit in enumerate(response.get("hits", {}).get("hits", []), start=1):
        score = float(hit.get("_score") or 0.0)
        if dense_similarity in ("cosine", "dot_product"):
            score = 2.0 * score - 1.0
        doc = source_to_document(hit["_id"], hit.get("_source") or {})
        results.append(ScoredDocument(document=doc, score=score, rank=rank, sources={source: SourceHit(score, rank)}))
    return results
