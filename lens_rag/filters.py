"""Metadata filters: one small language, checked once, translated by pure functions per backend.

A filter is a mapping from metadata key to a condition:

- a scalar: equality, ``{"lang": "en"}``;
- a list: any of, ``{"source": ["a.md", "b.md"]}``;
- a mapping of operators: ``{"year": {"gte": 2000, "lt": 2020}}`` with operators
  ``eq, ne, gt, gte, lt, lte, in, nin``.

All conditions must hold (AND). `None`/`{}` means no filter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lens_rag.errors import ConfigurationError

__all__ = ["OPERATORS", "Filters", "matches", "normalize_filters"]

Filters = Mapping[str, Any]
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")


def normalize_filters(filters: Filters | None) -> list[tuple[str, str, Any]]:
    """Check a filter and return it as `(key, operator, value)` triples.

    :raises ConfigurationError: on an unknown operator or a list operand for a scalar operator.
    """
    if not filters:
        return []
    if not isinstance(filters, Mapping):
        raise ConfigurationError(
            f"filters must be a mapping like {{'year': {{'gte': 2000}}}}, got {type(filters).__name__}"
        )
    out: list[tuple[str, str, Any]] = []
    for key, cond in filters.items():
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"filter keys must be non-empty strings, got {key!r}")
        if isinstance(cond, Mapping):
            for op, value in cond.items():
                if op not in OPERATORS:
                    raise ConfigurationError(
                        f"unknown filter operator {op!r} for key {key!r}; use one of {', '.join(OPERATORS)}"
                    )
                if op in ("in", "nin") and not isinstance(value, (list, tuple, set)):
                    raise ConfigurationError(f"filter operator {op!r} for key {key!r} needs a list, got {value!r}")
                if op not in ("in", "nin") and isinstance(value, (list, tuple, set, Mapping)):
                    raise ConfigurationError(f"filter operator {op!r} for key {key!r} needs a scalar, got {value!r}")
                out.append((key, op, list(value) if op in ("in", "nin") else value))
        elif isinstance(cond, (list, tuple, set)):
            out.append((key, "in", list(cond)))
        else:
            out.append((key, "eq", cond))
    return out


def _compare(actual: Any, op: str, value: Any) -> bool:
    if op == "eq":
        return bool(actual == value)
    if op == "ne":
        return bool(actual != value)
    if op == "in":
        return actual in value
    if op == "nin":
        return actual not in value
    if actual is None:
        return False
    try:
        if op == "gt":
            return bool(actual > value)
        if op == "gte":
            return bool(actual >= value)
        if op == "lt":
            return bool(actual < value)
        return bool(actual <= value)
    except TypeError:
        return False


def matches(meta: Mapping[str, Any], conditions: list[tuple[str, str, Any]]) -> bool:
    """Whether a metadata mapping satisfies normalised conditions (list-valued metadata: any element)."""
    for key, op, value in conditions:
        actual = meta.get(key)
        if isinstance(actual, list) and op in ("eq", "in"):
            if not any(_compare(a, op, value) for a in actual):
                return False
        elif isinstance(actual, list) and op in ("ne", "nin"):
            if not all(_compare(a, op, value) for a in actual):
                return False
        elif not _compare(actual, op, value):
            return False
    return True
