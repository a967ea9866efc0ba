"""Conversions between LangChain documents and lens-rag's, shared by every component here."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from langchain_core.documents import Document as LCDocument

from lens_rag.documents import Document, ScoredDocument, SourceHit

__all__ = ["RESULT_KEY", "from_lc_document", "merge_filters", "result_entry", "scored_from_lc", "to_lc_document"]

#: Metadata key that always holds lens-rag's score, rank and per-source hits of a result.
RESULT_KEY = "lens_rag"


def result_entry(hit: ScoredDocument) -> dict[str, Any]:
    """A hit's score, rank and each source's own score and rank, as plain JSON."""
    return {
        "score": hit.score,
        "rank": hit.rank,
        "sources": {name: {"score": s.score, "rank": s.rank} for name, s in hit.sources.items()},
    }


def to_lc_document(hit: ScoredDocument) -> LCDocument:
    """A retrieved hit as a LangChain `Document`: `id` is the store id, scores go into `metadata`.

    `metadata["score"]`, `["rank"]` and `["sources"]` (each retriever's own score and rank, e.g.
    ``{"bm25": {"score": 7.1, "rank": 2}}``) are set unless the document's own metadata already has
    those keys; `metadata["lens_rag"]` always holds all three, so nothing of the user's is overwritten.
    """
    result = result_entry(hit)
    metadata = dict(hit.document.meta)
    for key, value in result.items():
        metadata.setdefault(key, value)
    metadata[RESULT_KEY] = result
    return LCDocument(id=hit.document.id, page_content=hit.document.content, metadata=metadata)


def _doc_id(doc: LCDocument) -> str:
    if doc.id:
        return str(doc.id)
    meta_id = doc.metadata.get("id")
    if meta_id is not None:
        return str(meta_id)
    # A document from a foreign retriever without any id: its text is the only stable identity left.
    return "sha1:" + hashlib.sha1(doc.page_content.encode("utf-8", "surrogatepass")).hexdigest()


def from_lc_document(doc: LCDocument, *, id: str | None = None) -> Document:
    """A LangChain `Document` as a lens-rag `Document` (our result metadata is dropped)."""
    ours = doc.metadata.get(RESULT_KEY)
    ours = ours if isinstance(ours, Mapping) else {}
    # Drop what `to_lc_document` added (the result entry, and the top-level copies it set); keep the user's.
    meta = {k: v for k, v in doc.metadata.items() if k != RESULT_KEY and not (k in ours and ours[k] == v)}
    return Document(id=id if id is not None else _doc_id(doc), content=doc.page_content, meta=meta)


def scored_from_lc(doc: LCDocument, rank: int, source: str) -> ScoredDocument:
    """A document returned by any LangChain retriever as a ranked hit (for fusion and reranking).

    The score is the hit's own (`lens_rag`/`score`/`relevance_score` metadata) when it has one, else
    ``1 / rank`` so that min–max fusion still sees the list's order.
    """
    own = doc.metadata.get(RESULT_KEY)
    score: Any = own.get("score") if isinstance(own, Mapping) else None
    for key in ("score", "relevance_score"):
        if score is None:
            score = doc.metadata.get(key)
    value = float(score) if isinstance(score, (int, float)) else 1.0 / rank
    return ScoredDocument(
        document=from_lc_document(doc), score=value, rank=rank, sources={source: SourceHit(value, rank)}
    )


def merge_filters(base: Mapping[str, Any] | None, extra: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The constructor's filters AND the call's (a fixed scope such as a tenant cannot be widened per call)."""
    if not base:
        return dict(extra) if extra else None
    if not extra:
        return dict(base)
    return {"$and": [dict(base), dict(extra)]}
