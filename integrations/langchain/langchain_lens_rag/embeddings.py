"""lens-rag's dense encoder as LangChain `Embeddings`."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.embeddings import Embeddings

__all__ = ["LensRagEmbeddings"]


class LensRagEmbeddings(Embeddings):
    """Dense embeddings from a lens-rag dense encoder (queries and documents encoded as the model expects).

    :param encoder: a lens-rag dense encoder; `None` uses the offline default (all-MiniLM-L6-v2).
        The model loads on first use.

    Usage::

        from langchain_lens_rag import LensRagEmbeddings
        vectors = LensRagEmbeddings().embed_documents(["Scurvy is caused by a lack of vitamin C."])
    """

    def __init__(self, encoder: Any = None) -> None:
        if encoder is None:
            from lens_rag.encoders.dense import SentenceTransformerDenseEncoder

            encoder = SentenceTransformerDenseEncoder()
        self.encoder = encoder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in self.encoder.encode_documents(list(texts))] if texts else []

    def embed_query(self, text: str) -> list[float]:
        return list(map(float, self.encoder.encode_queries([text])[0]))

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)  # CPU-bound model work, off the loop

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)
