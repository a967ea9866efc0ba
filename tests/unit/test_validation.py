from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from lens_rag.documents import Document, validate_document
from lens_rag.errors import ConfigurationError
from lens_rag.sparse import SPARSE_INDEX_LIMIT, SparseVector
from lens_rag.validation import check_dense_query, check_sparse_query, check_text, check_top_k

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("value", [0, 1, 10, np.int64(5), np.int32(3)])
def test_check_top_k_accepts_ints(value: Any) -> None:
    result = check_top_k(value)
    assert result == int(value) and type(result) is int


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "top_k must be an int >= 0, got None"),
        (2.0, r"got 2\.0 of type float \(use 2\)"),
        (2.5, r"got 2\.5 of type float"),
        (True, "got True of type bool"),
        (np.bool_(True), "of type bool"),
        ("5", "got '5' of type str"),
        (-1, "top_k must be >= 0, got -1"),
    ],
)
def test_check_top_k_rejects(value: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        check_top_k(value)


def test_check_top_k_names_the_parameter() -> None:
    with pytest.raises(ConfigurationError, match="candidate_k must be >= 0"):
        check_top_k(-3, name="candidate_k")


def test_check_dense_query_returns_float32_1d() -> None:
    out = check_dense_query([1, 2, 3], 3)
    assert out.dtype == np.float32 and out.shape == (3,) and out.flags.c_contiguous
    assert check_dense_query(np.arange(4, dtype=np.float64), None).tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("query", "dimension", "message"),
    [
        ([[1.0, 2.0, 3.0]], 3, r"1-D vector, got an array of shape \(1, 3\); pass query\[0\]"),
        (np.ones((2, 3)), None, r"shape \(2, 3\); pass one vector"),
        (1.0, None, r"shape \(\)"),
        ([], None, "empty vector"),
        ([1.0, 2.0], 3, "has 2 dimensions but the store holds 3-dimensional"),
        ([1.0, float("nan"), 3.0], 3, "1 NaN or infinite"),
        ([1.0, float("inf")], 2, "NaN or infinite"),
        ([1e300, 1.0], 2, "too large for float32"),
        ("a query", 3, "must be a dense vector .* got str"),
        (None, 3, "got NoneType"),
        ({"a": 1}, 3, "got dict"),
        (["a", "b"], 2, "dense vector of numbers"),
        ([[1.0], [2.0, 3.0]], None, "dense vector of numbers"),
    ],
)
def test_check_dense_query_rejects(query: Any, dimension: int | None, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        check_dense_query(query, dimension)


def test_check_sparse_query_accepts_vector_and_dict() -> None:
    v = SparseVector.from_dict({3: 0.5})
    assert check_sparse_query(v) is v
    assert check_sparse_query({"3": 0.5, 7: 1.0}).to_index_dict() == {3: 0.5, 7: 1.0}
    assert len(check_sparse_query(SparseVector.empty())) == 0


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({1: float("nan")}, "query: SparseVector values must be finite"),
        ({2**31: 1.0}, "too large"),
        ({SPARSE_INDEX_LIMIT: 1.0}, "too large"),
        ({-1: 1.0}, "must be >= 0"),
        ({"x": 1.0}, "not a dimension index"),
        ([1.0, 2.0], "must be a SparseVector .* got list"),
        ("text", "got str"),
    ],
)
def test_check_sparse_query_rejects(query: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        check_sparse_query(query)


def test_check_sparse_query_rechecks_arrays_mutated_after_construction() -> None:
    v = SparseVector.from_dict({1: 1.0, 2: 1.0})
    v.values[0] = np.nan
    with pytest.raises(ConfigurationError, match="NaN or infinite sparse weights"):
        check_sparse_query(v)
    w = SparseVector.from_dict({1: 1.0})
    w.indices[0] = 2**31
    with pytest.raises(ConfigurationError, match="outside"):
        check_sparse_query(w)


def test_check_text() -> None:
    assert check_text("") == ""
    with pytest.raises(ConfigurationError, match=r"lone surrogate '\\ud800' at character 2"):
        check_text("ab\ud800")
    with pytest.raises(ConfigurationError, match="must be a str, got int"):
        check_text(5)


def test_sparse_vector_refuses_corrupting_values_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="NaN or infinite"):
        SparseVector(np.array([1], dtype=np.int64), np.array([np.nan], dtype=np.float32))
    with pytest.raises(ConfigurationError, match="NaN or infinite"):
        SparseVector(np.array([1], dtype=np.int64), np.array([np.inf], dtype=np.float32))
    with pytest.raises(ConfigurationError, match="too large"):
        SparseVector(np.array([2**31], dtype=np.int64), np.array([1.0], dtype=np.float32))
    with pytest.raises(ConfigurationError, match=">= 0"):
        SparseVector(np.array([-5], dtype=np.int64), np.array([1.0], dtype=np.float32))
    with pytest.raises(ConfigurationError, match="differ in length"):
        SparseVector(np.array([1, 2], dtype=np.int64), np.array([1.0], dtype=np.float32))
    with pytest.raises(ConfigurationError, match="1-D"):
        SparseVector(np.array([[1]], dtype=np.int64), np.array([[1.0]], dtype=np.float32))
    # lists are converted to the declared dtypes
    v = SparseVector([1, 2], [0.5, 0.25])  # type: ignore[arg-type]
    assert v.indices.dtype == np.int64 and v.values.dtype == np.float32


@pytest.mark.parametrize(
    ("indices", "values", "message"),
    [
        ([1.5], [1.0], "indices must be integers"),
        (["a"], [1.0], "indices must be integers"),
        ([2**70], [1.0], "indices must be integers"),
        ([1], ["x"], "must be numbers"),
        ([1], [1e40], "NaN or infinite"),
        (np.array([2**32], dtype=np.uint64), [1.0], "must be <"),
    ],
)
def test_from_arrays_rejects_non_numbers(indices: Any, values: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SparseVector.from_arrays(indices, values)


def _doc(**kwargs: Any) -> Document:
    base: dict[str, Any] = {"id": "d1", "content": "some text"}
    base.update(kwargs)
    return Document(**base)


def _bad_sparse(indices: list[int], values: list[float]) -> SparseVector:
    v = SparseVector.from_dict({1: 1.0})
    object.__setattr__(v, "indices", np.array(indices, dtype=np.int64))
    object.__setattr__(v, "values", np.array(values, dtype=np.float32))
    return v


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_doc(id=123), r"id must be a str, got int 123; pass id=str\(123\)"),
        (_doc(id=""), "non-empty"),
        (_doc(id="a\ud800"), "id holds a lone surrogate"),
        (_doc(content="ok \udc80 text"), r"content holds a lone surrogate '\\udc80' at character 3"),
        (_doc(content="   "), "content is empty"),
        (_doc(content=None), "content must be a str, got NoneType"),
        (_doc(embedding=[1.0, float("nan")]), "NaN or infinite"),
        (_doc(embedding=[[1.0, 2.0]]), "1-D"),
        (_doc(embedding=[]), "embedding is empty"),
        (_doc(embedding=["a"]), "list of floats"),
        (_doc(embedding=[1.0, 2.0, 3.0]), "has 3 dimensions, the store holds 2"),
        (_doc(sparse_embedding=_bad_sparse([2**31], [1.0])), "indices outside"),
        (_doc(sparse_embedding=_bad_sparse([-1], [1.0])), "indices outside"),
        (_doc(sparse_embedding=_bad_sparse([1], [float("nan")])), "NaN or infinite weights"),
        (_doc(sparse_embedding=_bad_sparse([1], [0.0])), "non-positive"),
        (_doc(sparse_embedding={1: 1.0}), "must be a SparseVector"),
        (_doc(meta={"x": float("nan")}), "JSON has no NaN"),
        (_doc(meta={"x": object()}), "not JSON-serialisable"),
        (_doc(meta={"x": "\ud800"}), "meta holds a lone surrogate"),
        (_doc(meta=[1]), "meta must be a dict"),
        ("not a doc", "expected a lens_rag Document, got str"),
    ],
)
def test_validate_document_reasons(doc: Any, message: str) -> None:
    reason = validate_document(doc, 2)
    assert reason is not None
    assert re.search(message, reason), reason


def test_validate_document_accepts_good_documents() -> None:
    good = _doc(
        embedding=np.array([0.1, 0.2]),
        sparse_embedding=SparseVector.from_dict({5: 1.0, 2**31 - 2: 0.5}),
        meta={"source": "x", "n": 1, "tags": ["a"], "é": "ü"},
    )
    assert validate_document(good, 2) is None
    assert validate_document(_doc(embedding=[1.0, 2.0, 3.0]), None) is None
