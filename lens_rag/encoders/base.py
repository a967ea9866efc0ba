"""Encoder interfaces. Queries and documents are encoded differently (instruction, pooled positions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from lens_rag.sparse import SparseVector

__all__ = ["DenseEncoder", "SparseEncoder"]


@runtime_checkable
class SparseEncoder(Protocol):
    """Turns texts into :class:`SparseVector`s. Loads its model lazily in `warm_up()`."""

    name: str

    def warm_up(self) -> None: ...

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]: ...

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]: ...


@runtime_checkable
class DenseEncoder(Protocol):
    """Turns texts into dense vectors (lists of floats, `dimension` long)."""

    name: str

    @property
    def dimension(self) -> int: ...

    def warm_up(self) -> None: ...

    def encode_queries(self, texts: Sequence[str]) -> list[list[float]]: ...

    def encode_documents(self, texts: Sequence[str]) -> list[list[float]]: ...
