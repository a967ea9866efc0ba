"""Checks every store and retriever applies to user input before it reaches numpy, SQLite or Elasticsearch.

Each check returns the value in the one form the callers work with, or raises
:class:`~lens_rag.errors.ConfigurationError` naming the parameter, the bad value and the fix.

Usage::

    k = check_top_k(top_k)
    q = check_dense_query(query, store_dimension)  # float32, 1-D, finite
    s = check_sparse_query({12: 0.5})  # SparseVector
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral
from typing import Any

import numpy as np
import numpy.typing as npt

from lens_rag.errors import ConfigurationError
from lens_rag.sparse import SPARSE_INDEX_LIMIT, SparseVector

__all__ = ["SPARSE_INDEX_LIMIT", "check_dense_query", "check_sparse_query", "check_text", "check_top_k"]


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_top_k(top_k: Any, name: str = "top_k") -> int:
    """`top_k` as a plain int >= 0 (`0` is valid and returns nothing).

    :param top_k: the value to check; Python and numpy integers are accepted, `bool` is not.
    :param name: the parameter's name, used in the error message.
    :returns: `int(top_k)`.
    :raises ConfigurationError: on `None`, floats, bools, strings, or negative numbers.
    """
    if isinstance(top_k, bool | np.bool_) or not isinstance(top_k, Integral):
        hint = f" (use {int(top_k)})" if isinstance(top_k, float) and top_k.is_integer() and top_k >= 0 else ""
        raise ConfigurationError(
            f"{name} must be an int >= 0, got {_short(top_k)} of type {type(top_k).__name__}{hint}; "
            f"pass a whole number such as {name}=10"
        )
    value = int(top_k)
    if value < 0:
        raise ConfigurationError(f"{name} must be >= 0, got {value}; pass {name}=0 for no results or a positive count")
    return value


def check_dense_query(query: Any, dimension: int | None, name: str = "query") -> npt.NDArray[np.float32]:
    """A dense query vector as a 1-D, finite float32 array of the store's dimension.

    A 2-D query (even of shape `(1, d)`) is refused rather than flattened: pass one vector.

    :param query: a sequence of numbers or an array.
    :param dimension: the store's dense dimension; `None` skips the length check (no vectors yet).
    :param name: the parameter's name, used in the error message.
    :returns: a contiguous float32 array of shape `(dimension,)`.
    :raises ConfigurationError: if the query is not numeric, not 1-D, empty, has NaN/inf, or the wrong length.
    """
    if query is None or isinstance(query, str | bytes | Mapping):
        raise ConfigurationError(
            f"{name} must be a dense vector (a list or 1-D array of floats), got {type(query).__name__}; "
            "encode the text with the dense encoder first"
        )
    try:
        array = np.asarray(query, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ConfigurationError(
            f"{name} must be a dense vector of numbers, got {_short(query)} ({e}); pass a list or 1-D array of floats"
        ) from e
    if array.ndim != 1:
        fix = "pass query[0] for a single query" if array.ndim == 2 and array.shape[0] == 1 else "pass one vector"
        raise ConfigurationError(f"{name} must be a 1-D vector, got an array of shape {array.shape}; {fix}")
    if array.size == 0:
        raise ConfigurationError(f"{name} is an empty vector; encode a non-empty text with the dense encoder")
    if dimension is not None and array.size != dimension:
        raise ConfigurationError(
            f"{name} has {array.size} dimensions but the store holds {dimension}-dimensional vectors; "
            "encode the query with the same dense encoder that indexed the store"
        )
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused just below
        result = array.astype(np.float32)
    if not np.all(np.isfinite(result)):
        bad = int(np.count_nonzero(~np.isfinite(result)))
        raise ConfigurationError(
            f"{name} has {bad} NaN or infinite value(s) (or values too large for float32); "
            "check the encoder output or the vector you built"
        )
    return np.ascontiguousarray(result)


def check_sparse_query(vector: Any, name: str = "query") -> SparseVector:
    """A sparse query as a validated :class:`SparseVector` (finite weights, indices in `[0, 2**31 - 1)`).

    :param vector: a `SparseVector`, or a mapping `{index: weight}` (keys as ints or decimal strings).
    :param name: the parameter's name, used in the error message.
    :returns: the vector (a mapping is converted with :meth:`SparseVector.from_dict`).
    :raises ConfigurationError: on other types, NaN/inf or negative weights, or out-of-range indices.
    """
    if isinstance(vector, Mapping):
        try:
            return SparseVector.from_dict(vector)
        except ConfigurationError as e:
            raise ConfigurationError(f"{name}: {e}") from e
        except (TypeError, ValueError, OverflowError) as e:
            raise ConfigurationError(f"{name} must map dimension indices to weights, got {_short(vector)} ({e})") from e
    if not isinstance(vector, SparseVector):
        raise ConfigurationError(
            f"{name} must be a SparseVector (or a {{index: weight}} dict), got {type(vector).__name__}; "
            "encode the text with the sparse encoder first"
        )
    # SparseVector validates at construction; re-check in case arrays were mutated in place since.
    idx, val = vector.indices, vector.values
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= SPARSE_INDEX_LIMIT):
        raise ConfigurationError(
            f"{name} has sparse indices outside [0, {SPARSE_INDEX_LIMIT}): min={int(idx.min())}, max={int(idx.max())}; "
            "indices are vocabulary ids of the sparse encoder"
        )
    if val.size and not np.all(np.isfinite(val)):
        raise ConfigurationError(f"{name} has NaN or infinite sparse weights; check the encoder output")
    return vector


def check_text(text: Any, name: str = "query") -> str:
    """A text query or passage as a `str` that encodes to UTF-8 (no lone surrogates such as `"\\ud800"`).

    Empty strings pass: what an empty query means is the caller's decision.

    :raises ConfigurationError: if `text` is not a `str` or holds lone surrogates.
    """
    if not isinstance(text, str):
        raise ConfigurationError(f"{name} must be a str, got {type(text).__name__}; pass the text itself")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ConfigurationError(
            f"{name} holds a lone surrogate {text[e.start : e.end]!r} at character {e.start}, which is not valid "
            "Unicode text; decode your input with errors='replace' or remove it"
        ) from e
    return text
