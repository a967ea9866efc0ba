"""`SparseVector`: the lexicon embedding every sparse encoder returns and every store indexes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from lens_rag.errors import ConfigurationError

__all__ = ["SPARSE_INDEX_LIMIT", "SparseVector", "feature_name", "parse_feature_name"]

#: Sparse dimension indices must be below this (exclusive): stores keep them as int32 (CSR/CSC
#: matrices, the embedding cache), and a matrix of `max index + 1` columns must still fit in int32.
SPARSE_INDEX_LIMIT = 2**31 - 1

# Elasticsearch `sparse_vector` feature names may not contain "." and must be strings; plain
# decimal dimension ids are the simplest safe names and map back to indices without a vocabulary.
_FEATURE_PREFIX = ""


def feature_name(index: int) -> str:
    """The Elasticsearch-safe feature name for a dimension index (its decimal string)."""
    return f"{_FEATURE_PREFIX}{int(index)}"


def parse_feature_name(name: str) -> int:
    """Inverse of :func:`feature_name`.

    :raises ConfigurationError: if the name is not a dimension written by :func:`feature_name`.
    """
    try:
        return int(name[len(_FEATURE_PREFIX) :])
    except ValueError as e:
        raise ConfigurationError(
            f"sparse feature name {name!r} is not a dimension index; lens-rag writes features as decimal strings"
        ) from e


@dataclass(frozen=True)
class SparseVector:
    """A sparse vector with strictly positive weights, indices sorted ascending and unique.

    Construct with :meth:`from_arrays` or :meth:`from_dict` to sort, merge and validate. The
    dataclass itself trusts the order of its arguments (encoders build millions of these) but
    still refuses, at construction, what would corrupt a store: NaN/inf weights, indices outside
    `[0, SPARSE_INDEX_LIMIT)`, arrays of different lengths or more than one dimension.

    :param indices: dimension ids (int64, ascending, unique).
    :param values: weights (float32, all > 0).

    Usage::

        v = SparseVector.from_dict({3: 0.5, 10: 1.25})
        v.dot(v)  # 1.8125
    """

    indices: npt.NDArray[np.int64]
    values: npt.NDArray[np.float32]

    def __post_init__(self) -> None:
        idx, val = self.indices, self.values
        if not (isinstance(idx, np.ndarray) and idx.dtype == np.int64):
            idx = _as_array(idx, np.int64, "indices")
            object.__setattr__(self, "indices", idx)
        if not (isinstance(val, np.ndarray) and val.dtype == np.float32):
            val = _as_array(val, np.float32, "values")
            object.__setattr__(self, "values", val)
        _check_arrays(idx, val)

    @classmethod
    def from_arrays(
        cls, indices: Iterable[int] | npt.ArrayLike, values: Iterable[float] | npt.ArrayLike
    ) -> SparseVector:
        """Validate, sort and deduplicate (summing duplicates); drop zero weights.

        :raises ConfigurationError: on mismatched lengths, negative indices, or negative/NaN weights.
        """
        # Anything that is not an ndarray is iterated (ArrayLike's scalar members fail here, as intended).
        try:
            with np.errstate(over="ignore"):  # float32 overflow becomes inf, refused below
                raw_idx = np.asarray(
                    list(cast(Iterable[int], indices)) if not isinstance(indices, np.ndarray) else indices
                ).ravel()
                val = np.asarray(
                    list(cast(Iterable[float], values)) if not isinstance(values, np.ndarray) else values,
                    dtype=np.float32,
                ).ravel()
        except (TypeError, ValueError, OverflowError) as e:
            raise ConfigurationError(f"SparseVector indices and values must be numbers ({e})") from e
        if raw_idx.size and raw_idx.dtype.kind not in "iu":
            raise ConfigurationError(
                f"SparseVector indices must be integers, got dtype {raw_idx.dtype} ({str(raw_idx[:5].tolist())[:60]})"
            )
        if raw_idx.dtype.kind == "u" and raw_idx.size and int(raw_idx.max()) >= SPARSE_INDEX_LIMIT:
            raise ConfigurationError(f"SparseVector indices must be < {SPARSE_INDEX_LIMIT}, got {int(raw_idx.max())}")
        idx = raw_idx.astype(np.int64)
        _check_arrays(idx, val)
        if val.size and val.min() < 0:
            raise ConfigurationError(
                "SparseVector values must be finite and positive (Elasticsearch sparse_vector rejects others); "
                f"got min={float(val.min())}"
            )
        order = np.argsort(idx, kind="stable")
        idx, val = idx[order], val[order]
        if idx.size > 1 and np.any(idx[1:] == idx[:-1]):
            uniq, start = np.unique(idx, return_index=True)
            val = np.add.reduceat(val, start).astype(np.float32)
            idx = uniq
        keep = val > 0
        return cls(idx[keep], val[keep])

    @classmethod
    def from_dict(cls, weights: Mapping[int | str, float]) -> SparseVector:
        """Build from `{index: weight}`; string keys are parsed with :func:`parse_feature_name`."""
        keys = [k if isinstance(k, int) else parse_feature_name(str(k)) for k in weights]
        return cls.from_arrays(keys, list(weights.values()))

    @classmethod
    def empty(cls) -> SparseVector:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))

    def __len__(self) -> int:
        return int(self.indices.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparseVector):
            return NotImplemented
        return bool(np.array_equal(self.indices, other.indices) and np.array_equal(self.values, other.values))

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, float]:
        """`{feature_name: weight}` with string keys safe for an Elasticsearch `sparse_vector` field."""
        return {feature_name(i): float(v) for i, v in zip(self.indices.tolist(), self.values.tolist())}

    def to_index_dict(self) -> dict[int, float]:
        return dict(zip(self.indices.tolist(), self.values.tolist()))

    def top_k(self, k: int | None) -> SparseVector:
        """Keep the `k` largest weights (ties broken by lower index); `None` keeps everything.

        :raises ConfigurationError: if `k` < 1.
        """
        if k is None or k >= len(self):
            return self
        if k < 1:
            raise ConfigurationError(f"top_k must be >= 1 or None (keep all), got {k}")
        order = np.lexsort((self.indices, -self.values))[:k]
        order.sort()
        return SparseVector(self.indices[order], self.values[order])

    def dot(self, other: SparseVector) -> float:
        _, a, b = np.intersect1d(self.indices, other.indices, assume_unique=True, return_indices=True)
        return float(np.dot(self.values[a].astype(np.float64), other.values[b].astype(np.float64)))

    def norm(self) -> float:
        return float(np.linalg.norm(self.values.astype(np.float64)))

    def normalize(self) -> SparseVector:
        """L2-normalised copy; an empty or zero vector is returned unchanged."""
        n = self.norm()
        if n == 0.0:
            return self
        return SparseVector(self.indices, (self.values / n).astype(np.float32))

    def to_json(self) -> dict[str, Any]:
        return {"indices": self.indices.tolist(), "values": self.values.tolist()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SparseVector:
        return cls.from_arrays(data["indices"], data["values"])


def _as_array(data: Any, dtype: type[np.generic], what: str) -> Any:
    try:
        return np.asarray(data, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as e:
        raise ConfigurationError(f"SparseVector {what} must be numbers, got {str(data)[:60]!r} ({e})") from e


def _check_arrays(idx: npt.NDArray[np.int64], val: npt.NDArray[np.float32]) -> None:
    """Refuse what would corrupt a store: mismatched or multi-dimensional arrays, bad indices, NaN/inf."""
    if idx.ndim != 1 or val.ndim != 1:
        raise ConfigurationError(
            f"SparseVector indices and values must be 1-D arrays, got shapes {idx.shape} and {val.shape}"
        )
    if idx.shape != val.shape:
        raise ConfigurationError(
            f"SparseVector indices and values differ in length ({idx.size} vs {val.size}); pass one weight per index"
        )
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0:
            raise ConfigurationError(f"SparseVector indices must be >= 0, got {lo}")
        if hi >= SPARSE_INDEX_LIMIT:
            raise ConfigurationError(
                f"SparseVector index {hi} is too large: indices must be < {SPARSE_INDEX_LIMIT} (2**31 - 1, stores keep "
                "them as int32); indices are vocabulary ids of the sparse encoder"
            )
        if not np.isfinite(val).all():
            raise ConfigurationError(
                "SparseVector values must be finite and positive (Elasticsearch sparse_vector rejects others); "
                f"got {int(np.count_nonzero(~np.isfinite(val)))} NaN or infinite weight(s)"
            )
