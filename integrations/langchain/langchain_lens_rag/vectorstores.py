"""A LangChain `VectorStore` over lens-rag's stores (embedded or Elasticsearch)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from langchain_core.documents import Document as LCDocument
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from lens_rag.documents import Document
from lens_rag.errors import ConfigurationError

__all__ = ["LensRagVectorStore"]


def _plain(doc: Document) -> LCDocument:
    # A vector store returns documents as they were added; scores travel beside them (LangChain's convention).
    return LCDocument(id=doc.id, page_content=doc.content, metadata=dict(doc.meta))


class LensRagVectorStore(VectorStore):
    """Dense vectors (any LangChain `Embeddings`) and text in a lens-rag store, searchable by cosine.

    The same store also answers lens-rag's BM25 and sparse retrievers, so a LangChain app can index
    through this class and query with :class:`~langchain_lens_rag.HybridRetriever`.

    :param embedding: the LangChain embeddings (e.g. :class:`~langchain_lens_rag.LensRagEmbeddings`).
    :param store: an `EmbeddedStore` or `ElasticsearchStore`; `None` keeps an in-memory embedded store.
    :param sparse_encoder: optionally a lens-rag sparse encoder, so added texts also get sparse vectors.

    Usage::

        from langchain_lens_rag import LensRagEmbeddings, LensRagVectorStore
        vs = LensRagVectorStore(LensRagEmbeddings(), store=EmbeddedStore("my-index"))
        vs.add_texts(["Scurvy is caused by a lack of vitamin C."], ids=["scurvy"])
        vs.similarity_search_with_score("vitamin C", k=1, filter={"lang": "en"})
    """

    def __init__(self, embedding: Embeddings, store: Any = None, sparse_encoder: Any = None) -> None:
        if store is None:
            from lens_rag.stores.embedded import EmbeddedStore

            store = EmbeddedStore(None)
        self._embedding = embedding
        self.store = store
        self.sparse_encoder = sparse_encoder

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    # ---------------------------------------------------------------- writing
    @staticmethod
    def _check_lengths(texts: Sequence[str], metadatas: Sequence[Any] | None, ids: Sequence[Any] | None) -> None:
        if metadatas is not None and len(metadatas) != len(texts):
            raise ConfigurationError(f"metadatas has {len(metadatas)} entries for {len(texts)} texts")
        if ids is not None and len(ids) != len(texts):
            raise ConfigurationError(f"ids has {len(ids)} entries for {len(texts)} texts")

    def _documents(
        self,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]] | None,
        ids: Sequence[str | None] | None,
        dense: Sequence[Sequence[float]],
        sparse: Sequence[Any] | None,
    ) -> list[Document]:
        return [
            Document(
                id=str(ids[i]) if ids is not None and ids[i] is not None else str(uuid.uuid4()),
                content=text,
                meta=dict(metadatas[i]) if metadatas is not None else {},
                embedding=[float(x) for x in dense[i]],
                sparse_embedding=sparse[i] if sparse is not None else None,
            )
            for i, text in enumerate(texts)
        ]

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        texts = list(texts)
        self._check_lengths(texts, metadatas, ids)
        if not texts:
            return []
        dense = self._embedding.embed_documents(texts)
        sparse = self.sparse_encoder.encode_documents(texts) if self.sparse_encoder is not None else None
        return list(self.store.write_documents(self._documents(texts, metadatas, ids, dense, sparse)).ids)

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        texts = list(texts)
        self._check_lengths(texts, metadatas, ids)
        if not texts:
            return []
        dense = await self._embedding.aembed_documents(texts)
        sparse = (
            await asyncio.to_thread(self.sparse_encoder.encode_documents, texts)
            if self.sparse_encoder is not None
            else None
        )
        docs = self._documents(texts, metadatas, ids, dense, sparse)
        write_async = getattr(self.store, "write_documents_async", None)
        result = await write_async(docs) if write_async is not None else self.store.write_documents(docs)
        return list(result.ids)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete by id (unknown ids are ignored); ``ids=None`` deletes nothing and returns False."""
        if not ids:
            return False
        self.store.delete_documents([str(i) for i in ids])
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        if not ids:
            return False
        delete_async = getattr(self.store, "delete_documents_async", None)
        if delete_async is not None:
            await delete_async([str(i) for i in ids])
        else:
            self.store.delete_documents([str(i) for i in ids])
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[LCDocument]:
        found = self.store.get_documents([str(i) for i in ids])
        return [_plain(d) for d in found]

    # ---------------------------------------------------------------- searching
    def similarity_search_by_vector_with_score(
        self, embedding: list[float], k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[LCDocument, float]]:
        """Cosine similarity in [-1, 1]; `filter` uses lens-rag's filter language."""
        hits = self.store.search_dense(embedding, top_k=k, filters=filter)
        return [(_plain(h.document), h.score) for h in hits]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[LCDocument, float]]:
        return self.similarity_search_by_vector_with_score(self._embedding.embed_query(query), k=k, filter=filter)

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[LCDocument, float]]:
        vector = await self._embedding.aembed_query(query)
        search_async = getattr(self.store, "search_dense_async", None)
        if search_async is None:
            return self.similarity_search_by_vector_with_score(vector, k=k, filter=filter)
        hits = await search_async(vector, top_k=k, filters=filter)
        return [(_plain(h.document), h.score) for h in hits]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[LCDocument]:
        return [d for d, _ in self.similarity_search_by_vector_with_score(embedding, k=k, filter=filter)]

    def similarity_search(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[LCDocument]:
        return [d for d, _ in self.similarity_search_with_score(query, k=k, filter=filter)]

    async def asimilarity_search(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[LCDocument]:
        return [d for d, _ in await self.asimilarity_search_with_score(query, k=k, filter=filter)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return lambda cosine: (cosine + 1.0) / 2.0  # cosine in [-1, 1] -> relevance in [0, 1]

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        store: Any = None,
        sparse_encoder: Any = None,
        **kwargs: Any,
    ) -> LensRagVectorStore:
        vs = cls(embedding, store=store, sparse_encoder=sparse_encoder)
        vs.add_texts(texts, metadatas, ids=ids)
        return vs
