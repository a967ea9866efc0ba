"""Build core encoders from a component's serialisable parameters (through `lens_rag.config`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lens_rag.config import from_config
from lens_rag.encoders.base import DenseEncoder, SparseEncoder

__all__ = ["make_dense_encoder", "make_sparse_encoder"]

# A LENS directory holds a clustered head; anything else is a masked LM with its MLM head.
_LENS_FILES = ("lens_config.json", "lens_head.safetensors", "lm_head.pth")


def make_sparse_encoder(model: str, encoder_kwargs: dict[str, Any] | None = None, **params: Any) -> SparseEncoder:
    """`LENSEncoder` for a LENS directory, else `MLMSparseEncoder` (SPLADE family); `None` params keep defaults.

    :param model: an alias (``"splade-tiny"``), a local path or a Hugging Face name.
    :param encoder_kwargs: further constructor arguments of the core encoder (e.g. LENS ``instruction``).
    """
    kind = "lens" if any((Path(model) / name).is_file() for name in _LENS_FILES) else "mlm"
    config = {"type": kind, "model": model, **{k: v for k, v in params.items() if v is not None}}
    config.update(encoder_kwargs or {})
    return from_config(config)  # type: ignore[no-any-return]


def make_dense_encoder(model: str, encoder_kwargs: dict[str, Any] | None = None, **params: Any) -> DenseEncoder:
    """`SentenceTransformerDenseEncoder` for `model`; `None` params keep the encoder's defaults."""
    config = {"type": "sentence-transformers", "model": model, **{k: v for k, v in params.items() if v is not None}}
    config.update(encoder_kwargs or {})
    return from_config(config)  # type: ignore[no-any-return]
