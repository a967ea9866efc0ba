"""Encoders: sparse (LENS, SPLADE-family MLM) and dense (sentence-transformers), plus the LENS head builder.

Importing this package does not import torch-heavy modules until an encoder class is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lens_rag.encoders.base import DenseEncoder, SparseEncoder

if TYPE_CHECKING:
    from lens_rag.encoders.dense import SentenceTransformerDenseEncoder
    from lens_rag.encoders.head_builder import ClusteredHead, build_head_command, build_lens_head, save_lens_model
    from lens_rag.encoders.lens import LENSEncoder
    from lens_rag.encoders.mlm import MLMSparseEncoder

__all__ = [
    "ClusteredHead",
    "DenseEncoder",
    "LENSEncoder",
    "MLMSparseEncoder",
    "SentenceTransformerDenseEncoder",
    "SparseEncoder",
    "build_head_command",
    "build_lens_head",
    "save_lens_model",
]

_LAZY = {
    "SentenceTransformerDenseEncoder": "lens_rag.encoders.dense",
    "LENSEncoder": "lens_rag.encoders.lens",
    "MLMSparseEncoder": "lens_rag.encoders.mlm",
    "ClusteredHead": "lens_rag.encoders.head_builder",
    "build_head_command": "lens_rag.encoders.head_builder",
    "build_lens_head": "lens_rag.encoders.head_builder",
    "save_lens_model": "lens_rag.encoders.head_builder",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lens_rag.encoders' has no attribute {name!r}")
