"""Plain data types that flow between encoders, stores, retrievers and the adapters."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lens_rag.sparse import SPARSE_INDEX_LIMIT, SparseVector

__all__ = ["Document", "ScoredDocument", "SourceHit"]


@dataclass
class Document:
    """A passage to index: a stable id, its text and metadata, and optionally its embeddings.

    :param id: stable identifier; writing a document with an existing id replaces it.
    :param content: the passage text (BM25 indexes it).
    :param meta: JSON-serialisable metadata; filters match on it.
    :param embedding: dense vector, when a dense encoder has run.
    :param sparse_embedding: lexicon vector, when a sparse encoder has run.
    """

    id: str
    content: str
    meta: dict[str, Any] = field(default_factory=dict)
    embedding: list[float] | None = None
    sparse_embedding: SparseVector | None = None

    def without_embeddings(self) -> Document:
        return replace(self, embedding=None, sparse_embedding=None)


@dataclass(frozen=True)
class SourceHit:
    """Where one retriever placed a document: its raw score and 1-based rank."""

    score: float
    rank: int


@dataclass
class ScoredDocument:
    """A retrieved document with its final score and rank, and each source's own score and rank.

    After fusion, `sources` maps retriever name (e.g. `"bm25"`, `"sparse"`, `"dense"`) to the
    :class:`SourceHit` it came from; a single retriever fills one entry. Users ask for these —
    the peers drop them after fusion.
    """

    document: Document
    score: float
    rank: int = 0
    sources: dict[str, SourceHit] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.document.id


def validate_document(doc: Any, dense_dim: int | None) -> str | None:
    """Why `doc` cannot be written to a store, or `None`. Every store checks the same rules.

    One document's reason never affects the others of its batch: stores write the valid ones
    and report each refused id in :class:`~lens_rag.errors.BulkWriteError`.

    :param dense_dim: the store's dense dimension, `None` while it holds no vectors.
    :returns: a one-line reason that says how to fix the document, or `None` if it can be written.
    """
    if not isinstance(doc, Document):
        return f"expected a lens_rag Document, got {type(doc).__name__}"
    if not isinstance(doc.id, str):
        # 123 and "123" would otherwise name the same record and one would silently replace the other
        return (
            f"id must be a str, got {type(doc.id).__name__} {doc.id!r}; pass id=str({doc.id!r}) "
            "(ids are compared as strings, so 123 and '123' would be the same document)"
        )
    if not doc.id:
        return "id must be a non-empty string"
    reason = _utf8_reason(doc.id, "id")
    if reason is not None:
        return reason
    if not isinstance(doc.content, str):
        return f"content must be a str, got {type(doc.content).__name__}; pass the passage text"
    if not doc.content.strip():
        return "content is empty; drop the document or give it text"
    reason = _utf8_reason(doc.content, "content")
    if reason is not None:
        return reason
    if doc.embedding is not None:
        reason = _embedding_reason(doc.embedding, dense_dim)
        if reason is not None:
            return reason
    if doc.sparse_embedding is not None:
        reason = _sparse_reason(doc.sparse_embedding)
        if reason is not None:
            return reason
    if not isinstance(doc.meta, dict):
        return f"meta must be a dict, got {type(doc.meta).__name__}"
    try:
        json.dumps(doc.meta, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError as e:
        return f"meta holds a lone surrogate {e.object[e.start : e.end]!r}, which is not valid Unicode; remove it"
    except (TypeError, ValueError) as e:
        hint = "; JSON has no NaN or Infinity, use None" if "Out of range float" in str(e) else ""
        return f"meta is not JSON-serialisable ({e}){hint}"
    return None


def _utf8_reason(text: str, what: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return (
            f"{what} holds a lone surrogate {text[e.start : e.end]!r} at character {e.start}, which is not valid "
            "Unicode; decode the source with errors='replace' or remove it"
        )
    return None


def _embedding_reason(embedding: Any, dense_dim: int | None) -> str | None:
    try:
        vector = np.asarray(embedding, dtype=np.float64)
    except (TypeError, ValueError) as e:
        return f"embedding must be a list of floats ({e})"
    if vector.ndim != 1:
        return f"embedding must be a 1-D list of floats, got shape {vector.shape}"
    if vector.size == 0:
        return "embedding is empty; leave it None or encode the text"
    if dense_dim is not None and vector.size != dense_dim:
        return f"embedding has {vector.size} dimensions, the store holds {dense_dim}"
    with np.errstate(over="ignore"):
        if not np.all(np.isfinite(vector.astype(np.float32))):
            return "embedding has NaN or infinite values (or values too large for float32)"
    return None


def _sparse_reason(vector: Any) -> str | None:
    if not isinstance(vector, SparseVector):
        return f"sparse_embedding must be a SparseVector, got {type(vector).__name__}; use SparseVector.from_dict"
    idx, val = vector.indices, vector.values
    if idx.shape != val.shape or idx.ndim != 1:
        return f"sparse_embedding indices and values differ in shape ({idx.shape} vs {val.shape})"
    if not idx.size:
        return None
    if int(idx.min()) < 0 or int(idx.max()) >= SPARSE_INDEX_LIMIT:
        return (
            f"sparse_embedding has indices outside [0, {SPARSE_INDEX_LIMIT}) (min {int(idx.min())}, "
            f"max {int(idx.max())}); indices are the sparse encoder's vocabulary ids"
        )
    if not np.all(np.isfinite(val)):
        return "sparse_embedding has NaN or infinite weights"
    if float(val.min()) <= 0:
        return "sparse_embedding has non-positive weights (Elasticsearch sparse_vector needs them > 0)"
    return None
