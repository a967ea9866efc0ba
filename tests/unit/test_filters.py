from __future__ import annotations

import pytest

from lens_rag.errors import ConfigurationError
from lens_rag.filters import matches, normalize_filters

pytestmark = pytest.mark.unit


def test_normalize_forms() -> None:
    assert normalize_filters(None) == []
    assert normalize_filters({"lang": "en", "src": ["a", "b"], "year": {"gte": 2000, "lt": 2020}}) == [
        ("lang", "eq", "en"),
        ("src", "in", ["a", "b"]),
        ("year", "gte", 2000),
        ("year", "lt", 2020),
    ]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"year": {"between": 1}}, "unknown filter operator 'between'"),
        ({"year": {"in": 3}}, "needs a list"),
        ({"year": {"gt": [1]}}, "needs a scalar"),
        ({"": 1}, "non-empty strings"),
        ([("a", 1)], "must be a mapping"),
    ],
)
def test_bad_filters(filters: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        normalize_filters(filters)  # type: ignore[arg-type]


def test_matches() -> None:
    meta = {"year": 2010, "tags": ["x", "y"], "lang": "en"}
    assert matches(meta, normalize_filters({"year": {"gte": 2000, "lt": 2020}, "lang": "en"}))
    assert not matches(meta, normalize_filters({"year": {"gt": 2010}}))
    assert matches(meta, normalize_filters({"tags": "x"}))
    assert not matches(meta, normalize_filters({"tags": {"nin": ["y"]}}))
    assert not matches(meta, normalize_filters({"missing": {"gt": 1}}))
    assert matches(meta, normalize_filters({"missing": {"ne": 1}}))
    assert not matches(meta, normalize_filters({"lang": {"gt": 3}}))  # incomparable types never match
