"""Helpers shared by the sync and async by-filter methods (count, scan, delete, update): checks and response parsing."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from lens_rag.errors import ConfigurationError, StoreError
from lens_rag.filters import FilterNode, Filters, parse_filters

__all__ = [
    "KEEP_ALIVE",
    "ONE_PAGE",
    "by_query_count",
    "check_meta",
    "failure_body",
    "refuse_vector_loss",
    "required_filter",
]

logger = logging.getLogger(__name__)

ONE_PAGE = 10_000  # index.max_result_window's default: one search returns at most this many hits
KEEP_ALIVE = "2m"


def required_filter(filters: Filters | FilterNode | None, method: str, alternative: str) -> FilterNode:
    node = parse_filters(filters)
    if node is None:
        raise ConfigurationError(
            f"{method} needs a filter, got {filters!r}; to delete every document call {alternative}"
        )
    return node


def check_meta(meta: Any) -> dict[str, Any]:
    if not isinstance(meta, Mapping) or any(not isinstance(k, str) or not k for k in meta):
        raise ConfigurationError(f"meta must be a mapping with non-empty string keys, got {meta!r}")
    try:
        json.dumps(dict(meta), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigurationError(f"meta must be JSON (strings, numbers, booleans, lists, objects): {e}") from e
    return dict(meta)


def refuse_vector_loss(at_risk: int, index: str) -> None:
    if at_risk:
        raise StoreError(
            f"update_by_filter would drop the vectors of {at_risk} matching document(s): index {index!r} keeps "
            "vectors out of _source (vectors_in_source=False), and Elasticsearch rewrites updated documents "
            "from _source. Write those documents again with write_documents (same embeddings, new meta), or "
            "use an index created with vectors_in_source=True"
        )


def by_query_count(response: Mapping[str, Any], key: str, index: str) -> int:
    """The count of a `_delete_by_query`/`_update_by_query` response; failures raise, conflicts are logged."""
    failures = response.get("failures") or []
    if failures:
        first = failures[0]
        cause = first.get("cause", first) if isinstance(first, Mapping) else first
        raise StoreError(
            f"{len(failures)} document(s) of index {index!r} could not be {key} "
            f"({response.get(key, 0)} were): {str(cause)[:300]}"
        )
    conflicts = int(response.get("version_conflicts") or 0)
    if conflicts:
        logger.warning(
            "%s document(s) of %s changed while being %s and were left as they are; run again to include them",
            conflicts,
            index,
            key,
        )
    return int(response.get(key) or 0)


def failure_body(error: Exception) -> Mapping[str, Any] | None:
    """The by-query response carried by an HTTP error whose documents failed (e.g. a type clash), else `None`."""
    body = getattr(error, "body", None)
    if isinstance(body, Mapping) and body.get("failures"):
        return body
    return None
