"""The document-embedding step shared by the sparse and dense document embedders."""

from __future__ import annotations

from typing import Any

from haystack import Document as HaystackDocument

from lens_rag.documents import Document
from lens_rag.indexing import EmbeddingCache

__all__ = ["embed_documents", "text_to_embed"]


def text_to_embed(doc: HaystackDocument, meta_fields: list[str] | None, separator: str) -> str:
    """The document's content, preceded by the values of `meta_fields` it has (as Haystack's embedders do)."""
    parts = [str(doc.meta[key]) for key in meta_fields or [] if doc.meta.get(key) is not None]
    return separator.join([*parts, doc.content or ""])


def embed_documents(component: Any, documents: list[HaystackDocument]) -> list[Any]:
    """Encode `documents` with `component.encoder`, reusing and filling the embedding cache when configured.

    :param component: a document embedder (has `encoder`, `meta_fields_to_embed`, `embedding_separator`,
        `cache_dir`).
    :returns: one vector per document, in order.
    :raises TypeError: if `documents` is not a list of Haystack documents.
    """
    if not isinstance(documents, list) or not all(isinstance(d, HaystackDocument) for d in documents):
        raise TypeError(
            f"{type(component).__name__} expects a list of Documents; embed a query string with the text embedder"
        )
    if not documents:
        return []
    texts = [text_to_embed(d, component.meta_fields_to_embed, component.embedding_separator) for d in documents]
    encoder = component.encoder
    if component.cache_dir is None:
        return list(encoder.encode_documents(texts))
    cache = EmbeddingCache(component.cache_dir)
    keys = [Document(id=d.id, content=t) for d, t in zip(documents, texts, strict=True)]
    found = cache.lookup(encoder, keys)
    missing = [i for i in range(len(keys)) if i not in found]
    if missing:
        fresh = encoder.encode_documents([texts[i] for i in missing])
        cache.store(encoder, [keys[i] for i in missing], fresh)
        found.update(zip(missing, fresh, strict=True))
    return [found[i] for i in range(len(keys))]
