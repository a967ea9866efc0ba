"""Encoder interfaces. Queries and documents are encoded differently (instruction, pooled positions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from lens_rag.sparse import SparseVector

__all__ = ["DenseEncoder", "SparseEncoder"]


@runtime_checkable
class SparseEncoder(Protocol):
    """Turns texts into :class:`SparseVector`s.

    Construction does no I/O: the model loads in `warm_up()` (or on first use) and is released by
    `close()`. `to_config()` returns JSON-only constructor arguments with a ``"type"`` registered in
    :mod:`lens_rag.config`, and the class rebuilds it with ``from_config``.
    """

    name: str

    def warm_up(self) -> None: ...

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]: ...

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]: ...

    def to_config(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


@runtime_checkable
class DenseEncoder(Protocol):
    """Turns texts into dense vectors (lists of floats, `dimension` long).

    Lifecycle and configuration as for :class:`SparseEncoder`: `warm_up()`/`close()`, `to_config()`.
    """

    name: str

    @property
    def dimension(self) -> int: ...

    def warm_up(self) -> None: ...

    def encode_queries(self, texts: Sequence[str]) -> list[list[float]]: ...

    def encode_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def to_config(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
