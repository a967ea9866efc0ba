"""Bulk actions and per-item results (pure functions shared by the sync and async write paths)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lens_rag.documents import Document
from lens_rag.documents import validate_document as validate_common
from lens_rag.stores.elasticsearch.mappings import (
    CONTENT_FIELD,
    DENSE_FIELD,
    EXPANSION_FIELD,
    META_FIELD,
    SPARSE_FIELD,
)

__all__ = ["delete_actions", "document_source", "has_expansion", "index_actions", "item_failure", "validate_document"]


def validate_document(doc: Any, dense_dims: int | None) -> str | None:
    """Why `doc` cannot be written (checked before sending), or `None`. The server checks the rest."""
    reason = validate_common(doc, dense_dims)
    if reason is None and len(doc.id.encode()) > 512:
        return "id is longer than Elasticsearch's 512-byte _id limit; use a shorter stable id"
    return reason.replace("the store holds", "the index holds") if reason else None


def has_expansion(doc: Document) -> bool:
    """Whether `doc` carries doc2query text (``meta["bm25_expansion"]``, see :mod:`lens_rag.expansion`)."""
    expansion = doc.meta.get(EXPANSION_FIELD)
    return isinstance(expansion, str) and bool(expansion.strip())


def document_source(doc: Document) -> dict[str, Any]:
    """The `_source` written for a document; empty sparse vectors are left out (ES rejects `{}`)."""
    source: dict[str, Any] = {CONTENT_FIELD: doc.content, META_FIELD: doc.meta}
    expansion = doc.meta.get(EXPANSION_FIELD)
    if isinstance(expansion, str):  # doc2query text: a searchable text field, not a keyword under meta
        source[META_FIELD] = {k: v for k, v in doc.meta.items() if k != EXPANSION_FIELD}
        if expansion.strip():
            source[EXPANSION_FIELD] = expansion
    if doc.embedding is not None:
        source[DENSE_FIELD] = [float(x) for x in doc.embedding]
    if doc.sparse_embedding is not None and len(doc.sparse_embedding):
        source[SPARSE_FIELD] = doc.sparse_embedding.to_dict()
    return source


def index_actions(index: str, documents: Iterable[Document]) -> Iterable[dict[str, Any]]:
    """`index` actions with `_id` = `Document.id`: writing again replaces, so re-indexing is idempotent."""
    for doc in documents:
        yield {"_op_type": "index", "_index": index, "_id": doc.id, "_source": document_source(doc)}


def delete_actions(index: str, ids: Iterable[str]) -> Iterable[dict[str, Any]]:
    for doc_id in ids:
        yield {"_op_type": "delete", "_index": index, "_id": doc_id}


def item_failure(item: Mapping[str, Any]) -> tuple[str, str] | None:
    """`(id, reason)` for a failed bulk item, `None` for a success (a delete of a missing id is no failure)."""
    op, result = next(iter(item.items()))
    status = int(result.get("status", 200))
    if status < 300 or (op == "delete" and status == 404):
        return None
    error = result.get("error")
    if isinstance(error, Mapping):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, Mapping) and cause.get("reason"):
            reason += f" (caused by {cause.get('type', 'error')}: {cause['reason']})"
    else:
        reason = str(error or result.get("exception") or f"HTTP {status}")
    return str(result.get("_id", "?")), f"HTTP {status} {reason}"
