"""Small pieces both trainers use (adaptation and the cluster head)."""

from __future__ import annotations

import resource
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["peak_rss_mib", "sparse_rows_to_csr"]


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sparse_rows_to_csr(vectors: Sequence[Any], dim: int) -> Any:
    """Stack :class:`~lens_rag.sparse.SparseVector` rows into a float32 scipy CSR matrix `[len(vectors), dim]`."""
    from scipy import sparse

    indptr = np.zeros(len(vectors) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(v.indices) for v in vectors])
    indices = np.concatenate([v.indices for v in vectors]) if vectors else np.zeros(0, np.int64)
    data = np.concatenate([v.values for v in vectors]) if vectors else np.zeros(0, np.float32)
    return sparse.csr_matrix((data.astype(np.float32), indices.astype(np.int32), indptr), shape=(len(vectors), dim))
