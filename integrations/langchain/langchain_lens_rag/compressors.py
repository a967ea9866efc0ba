"""lens-rag's cross-encoder reranker as a LangChain document compressor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor
from langchain_core.documents import Document as LCDocument
from pydantic import ConfigDict

from langchain_lens_rag._convert import RESULT_KEY, result_entry, scored_from_lc
from lens_rag.errors import ConfigurationError

__all__ = ["CrossEncoderCompressor"]


class CrossEncoderCompressor(BaseDocumentCompressor):
    """Reorders documents with a lens-rag reranker; use it in `ContextualCompressionRetriever`.

    Each returned document keeps its metadata and gains ``relevance_score`` (the reranker's score)
    and lens-rag's result entry (``metadata["lens_rag"]``, with the first stage's score and rank
    under ``sources``).

    :param reranker: e.g. ``CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L6-v2")``.
    :param top_n: how many documents to keep (`None`: all).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    reranker: Any
    top_n: int | None = 3

    def _hits(self, documents: Sequence[LCDocument]) -> list[Any]:
        if self.top_n is not None and (isinstance(self.top_n, bool) or self.top_n < 0):
            raise ConfigurationError(f"top_n must be None or an integer >= 0, got {self.top_n!r}")
        return [scored_from_lc(d, rank=i + 1, source="first_stage") for i, d in enumerate(documents)]

    @staticmethod
    def _back(documents: Sequence[LCDocument], reranked: Sequence[Any]) -> list[LCDocument]:
        by_id = {scored_from_lc(d, 1, "x").id: d for d in documents}
        out = []
        for hit in reranked:
            original = by_id[hit.id]
            metadata = {**original.metadata, "relevance_score": hit.score, RESULT_KEY: result_entry(hit)}
            out.append(LCDocument(id=original.id, page_content=original.page_content, metadata=metadata))
        return out

    def compress_documents(
        self, documents: Sequence[LCDocument], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[LCDocument]:
        if not documents:
            return []
        return self._back(documents, self.reranker.rerank(query, self._hits(documents), top_k=self.top_n))

    async def acompress_documents(
        self, documents: Sequence[LCDocument], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[LCDocument]:
        if not documents:
            return []
        return self._back(documents, await self.reranker.rerank_async(query, self._hits(documents), top_k=self.top_n))
