"""Type conversions between Haystack and lens-rag: documents, sparse embeddings, scored hits.

Every adapter in this package goes through these functions; none of them holds retrieval logic.
Per-source scores and ranks (what each retriever gave a document before fusion) travel in
``Document.meta[SOURCES_META_KEY]`` as ``{"bm25": {"score": 12.3, "rank": 1}, ...}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from haystack import Document as HaystackDocument
from haystack.dataclasses import SparseEmbedding
from haystack.errors import FilterError

from lens_rag.documents import Document, ScoredDocument, SourceHit
from lens_rag.errors import ConfigurationError
from lens_rag.filters import FilterNode, from_haystack_filters
from lens_rag.sparse import SparseVector

__all__ = [
    "SOURCES_META_KEY",
    "to_filter_node",
    "to_haystack_document",
    "to_haystack_documents",
    "to_haystack_sparse",
    "to_lens_document",
    "to_lens_sparse",
    "to_scored",
]

#: `Document.meta` key holding each retriever's own score and rank for the document.
SOURCES_META_KEY = "lens_rag_sources"


def to_lens_sparse(embedding: SparseEmbedding) -> SparseVector:
    """A Haystack `SparseEmbedding` as a validated lens-rag `SparseVector` (zero weights dropped)."""
    return SparseVector.from_arrays(list(embedding.indices), list(embedding.values))


def to_haystack_sparse(vector: SparseVector) -> SparseEmbedding:
    """A lens-rag `SparseVector` as a Haystack `SparseEmbedding` (plain Python ints and floats)."""
    return SparseEmbedding(indices=vector.indices.tolist(), values=vector.values.tolist())


def to_lens_document(doc: HaystackDocument) -> Document:
    """The lens-rag view of a Haystack document (id, content, meta, both embeddings).

    Haystack's `score` is a retrieval result, not data, and is not stored; `blob` is not supported
    by lens-rag stores and is dropped by the callers that accept it (the store refuses it).
    """
    return Document(
        id=doc.id,
        content=doc.content if doc.content is not None else "",
        meta=dict(doc.meta),
        embedding=list(doc.embedding) if doc.embedding is not None else None,
        sparse_embedding=to_lens_sparse(doc.sparse_embedding) if doc.sparse_embedding is not None else None,
    )


def _sources_meta(sources: Mapping[str, SourceHit]) -> dict[str, dict[str, float | int]]:
    return {name: {"score": float(hit.score), "rank": int(hit.rank)} for name, hit in sources.items()}


def to_haystack_document(hit: ScoredDocument | Document, *, with_sources: bool = True) -> HaystackDocument:
    """A Haystack document from a lens-rag hit (score set, per-source scores in meta) or document.

    :param hit: a `ScoredDocument` (search result) or a plain `Document` (stored data).
    :param with_sources: write `hit.sources` to ``meta[SOURCES_META_KEY]``.
    """
    doc = hit.document if isinstance(hit, ScoredDocument) else hit
    meta = dict(doc.meta)
    if isinstance(hit, ScoredDocument) and with_sources and hit.sources:
        meta[SOURCES_META_KEY] = _sources_meta(hit.sources)
    return HaystackDocument(
        id=doc.id,
        content=doc.content,
        meta=meta,
        score=float(hit.score) if isinstance(hit, ScoredDocument) else None,
        embedding=list(doc.embedding) if doc.embedding is not None else None,
        sparse_embedding=to_haystack_sparse(doc.sparse_embedding) if doc.sparse_embedding is not None else None,
    )


def to_haystack_documents(hits: Sequence[ScoredDocument]) -> list[HaystackDocument]:
    return [to_haystack_document(h) for h in hits]


def to_scored(docs: Sequence[HaystackDocument], source: str | None = None) -> list[ScoredDocument]:
    """Haystack results (best first) as lens-rag hits: score from `doc.score`, rank from the position.

    Per-source scores already in ``meta[SOURCES_META_KEY]`` come back as `sources`, so a joiner
    downstream of another joiner keeps them all; `source` adds this list's own entry.
    """
    scored = []
    for rank, doc in enumerate(docs, start=1):
        meta = dict(doc.meta)
        raw = meta.pop(SOURCES_META_KEY, None) or {}
        sources = {name: SourceHit(float(h["score"]), int(h["rank"])) for name, h in raw.items()}
        score = float(doc.score) if doc.score is not None else 0.0
        if source is not None:
            sources[source] = SourceHit(score, rank)
        lens_doc = to_lens_document(dataclasses.replace(doc, meta=meta))
        scored.append(ScoredDocument(document=lens_doc, score=score, rank=rank, sources=sources))
    return scored


def to_filter_node(filters: Mapping[str, Any] | None) -> FilterNode | None:
    """Haystack filters as a lens-rag filter tree (`None`: no filter); `FilterError` where Haystack raises it."""
    if not filters:
        return None
    try:
        return from_haystack_filters(filters)
    except ConfigurationError as e:
        raise FilterError(str(e)) from e
