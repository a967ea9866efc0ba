"""Dense encoder: a thin wrapper over sentence-transformers with query and document prompts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lens_rag.encoders.pooling import validate_texts
from lens_rag.errors import ConfigurationError, ModelLoadError
from lens_rag.models import DEFAULT_DENSE_MODEL, resolve_model

__all__ = ["SentenceTransformerDenseEncoder"]

logger = logging.getLogger(__name__)


class SentenceTransformerDenseEncoder:
    """Dense embeddings from any sentence-transformers model.

    Prompts are prepended as text (`query_prompt + query`), which works for every model; e5-style
    models want e.g. `query_prompt="query: "`, `document_prompt="passage: "`. sentence-transformers
    sorts inputs by length and truncates at the model's `max_seq_length`.

    :param model: `"all-MiniLM-L6-v2"` (packaged, offline), a local path or a Hub name.
    :param query_prompt: text prepended to every query (`None`: none).
    :param document_prompt: text prepended to every document (`None`: none).
    :param batch_size: texts per forward pass.
    :param normalize: L2-normalise the embeddings (dot product = cosine).
    :param progress: show a progress bar for more than one batch.
    :param device: torch device; `None` lets sentence-transformers choose.

    Usage::

        enc = SentenceTransformerDenseEncoder()
        docs = enc.encode_documents_array(["Scurvy is caused by a lack of vitamin C."])  # (1, 384) float32
    """

    def __init__(
        self,
        model: str = DEFAULT_DENSE_MODEL,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        batch_size: int = 32,
        normalize: bool = True,
        progress: bool = True,
        device: str | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"model must be a model name or path, got {model!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigurationError(f"batch_size must be a positive integer, got {batch_size!r}")
        for name, p in (("query_prompt", query_prompt), ("document_prompt", document_prompt)):
            if p is not None and not isinstance(p, str):
                raise ConfigurationError(f"{name} must be a string or None, got {type(p).__name__}")
        self.model = model
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt
        self.batch_size = batch_size
        self.normalize = normalize
        self.progress = progress
        self.device = device
        self.name = Path(model.rstrip("/")).name
        self._model: Any = None

    def warm_up(self) -> None:
        """Load the model once; safe to call repeatedly.

        :raises ModelLoadError: if the model cannot be loaded.
        """
        if self._model is not None:
            return
        from sentence_transformers import SentenceTransformer

        path = resolve_model(self.model)
        try:
            self._model = SentenceTransformer(path, device=self.device)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"could not load sentence-transformers model={self.model!r} ({path}): {e}") from e
        logger.info("loaded dense encoder %s (%s d)", path, self.dimension)

    def close(self) -> None:
        """Release the model."""
        self._model = None

    @property
    def dimension(self) -> int:
        """Embedding size (loads the model)."""
        self.warm_up()
        get = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        return int(get())

    def _encode(self, texts: Sequence[str], prompt: str | None) -> np.ndarray:
        texts = validate_texts(texts)
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if prompt is not None:
            texts = [prompt + t for t in texts]
        emb = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            show_progress_bar=self.progress and len(texts) > self.batch_size,
            convert_to_numpy=True,
        )
        return np.ascontiguousarray(emb, dtype=np.float32)

    def encode_queries_array(self, texts: Sequence[str]) -> np.ndarray:
        """`[n, dimension]` float32 query embeddings.

        :raises ConfigurationError: on an empty or non-string text.
        """
        return self._encode(texts, self.query_prompt)

    def encode_documents_array(self, texts: Sequence[str]) -> np.ndarray:
        """`[n, dimension]` float32 document embeddings.

        :raises ConfigurationError: on an empty or non-string text.
        """
        return self._encode(texts, self.document_prompt)

    def encode_queries(self, texts: Sequence[str]) -> list[list[float]]:
        """Query embeddings as lists of floats."""
        return self.encode_queries_array(texts).tolist()

    def encode_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Document embeddings as lists of floats."""
        return self.encode_documents_array(texts).tolist()

    def to_config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (see :meth:`from_config`)."""
        return {
            "type": "sentence-transformers",
            "model": self.model,
            "query_prompt": self.query_prompt,
            "document_prompt": self.document_prompt,
            "batch_size": self.batch_size,
            "normalize": self.normalize,
            "progress": self.progress,
            "device": self.device,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SentenceTransformerDenseEncoder:
        """Rebuild from :meth:`to_config` output; missing keys take their defaults."""
        return cls(**{k: v for k, v in config.items() if k != "type"})
