from __future__ import annotations

import numpy as np
import pytest

from lens_rag.errors import ConfigurationError
from lens_rag.sparse import SparseVector, feature_name, parse_feature_name

pytestmark = pytest.mark.unit


def test_from_arrays_sorts_merges_duplicates_and_drops_zeros() -> None:
    v = SparseVector.from_arrays([5, 2, 5, 9], [1.0, 0.5, 0.25, 0.0])
    assert v.indices.tolist() == [2, 5]
    assert v.values.tolist() == [0.5, 1.25]
    assert v.indices.dtype == np.int64 and v.values.dtype == np.float32


@pytest.mark.parametrize(
    ("indices", "values", "message"),
    [
        ([1, 2], [1.0], "differ in length"),
        ([-1], [1.0], "indices must be >= 0"),
        ([1], [-0.5], "finite and positive"),
        ([1], [float("nan")], "finite and positive"),
    ],
)
def test_from_arrays_rejects_bad_input(indices: list[int], values: list[float], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SparseVector.from_arrays(indices, values)


def test_to_dict_has_elasticsearch_safe_string_keys_and_round_trips() -> None:
    v = SparseVector.from_dict({3: 0.5, 10: 1.25})
    d = v.to_dict()
    assert d == {"3": 0.5, "10": 1.25}
    assert all("." not in k for k in d)
    assert SparseVector.from_dict(d) == v
    assert parse_feature_name(feature_name(42)) == 42
    with pytest.raises(ConfigurationError, match="not a dimension index"):
        parse_feature_name("vitamin.c")


def test_dot_norm_normalize() -> None:
    a = SparseVector.from_dict({1: 1.0, 2: 2.0, 7: 3.0})
    b = SparseVector.from_dict({2: 4.0, 7: 1.0, 9: 5.0})
    assert a.dot(b) == pytest.approx(2 * 4 + 3 * 1)
    assert a.normalize().norm() == pytest.approx(1.0)
    assert SparseVector.empty().normalize() == SparseVector.empty()


def test_top_k_keeps_largest_and_stays_sorted() -> None:
    v = SparseVector.from_dict({1: 0.1, 4: 0.9, 6: 0.5, 8: 0.9})
    top = v.top_k(2)
    assert top.indices.tolist() == [4, 8]
    assert v.top_k(None) is v
    assert v.top_k(10) is v
    with pytest.raises(ConfigurationError, match="top_k must be >= 1"):
        v.top_k(0)


def test_json_round_trip() -> None:
    v = SparseVector.from_dict({3: 0.5, 10: 1.25})
    assert SparseVector.from_json(v.to_json()) == v
