"""Plain data types that flow between encoders, stores, retrievers and the adapters."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

from lens_rag.sparse import SparseVector

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

    :param dense_dim: the store's dense dimension, `None` while it holds no vectors.
    """
    if not isinstance(doc, Document):
        return f"expected a lens_rag Document, got {type(doc).__name__}"
    if not isinstance(doc.id, str) or not doc.id:
        return "id must be a non-empty string"
    if not isinstance(doc.content, str) or not doc.content.strip():
        return "content is empty; drop the document or give it text"
    if doc.embedding is not None:
        if dense_dim is not None and len(doc.embedding) != dense_dim:
            return f"embedding has {len(doc.embedding)} dimensions, the store holds {dense_dim}"
        if not all(math.isfinite(float(x)) for x in doc.embedding):
            return "embedding has NaN or infinite values"
    if doc.sparse_embedding is not None and len(doc.sparse_embedding) and float(doc.sparse_embedding.values.min()) <= 0:
        return "sparse_embedding has non-positive weights (Elasticsearch sparse_vector needs them > 0)"
    try:
        json.dumps(doc.meta)
    except (TypeError, ValueError) as e:
        return f"meta is not JSON-serialisable ({e})"
    return None
