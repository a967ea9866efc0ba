"""Several searches of one index in one `_msearch` round trip: pure request building and response parsing.

A hybrid query searches the same index three times (BM25, sparse, dense). Sent one after another
that is three HTTP round trips and three times the server's per-request overhead; sent as one
`_msearch`, the server runs them side by side and answers once. The bodies are exactly those of
:mod:`.queries` (the same builders `search_bm25`/`search_sparse`/`search_dense` use), so every
result list equals what the single search returns.

Sync and async stores share everything here; only the I/O (``client.msearch``) differs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from lens_rag.documents import ScoredDocument
from lens_rag.errors import ConfigurationError, StoreError
from lens_rag.filters import FilterNode, Filters, parse_filters
from lens_rag.stores.elasticsearch import queries
from lens_rag.validation import check_sparse_query, check_top_k

__all__ = [
    "SearchKind",
    "SearchRequest",
    "check_requests",
    "filter_nodes",
    "msearch_lines",
    "needs_search",
    "parse_responses",
    "request_bodies",
]

SearchKind = Literal["bm25", "sparse", "dense"]
KINDS: tuple[SearchKind, ...] = ("bm25", "sparse", "dense")

BodyBuilder = Callable[[Any, int, Any], "dict[str, Any] | None"]


class SearchRequest(NamedTuple):
    """One search of a multi-search.

    :param kind: ``"bm25"`` (query: text), ``"sparse"`` (query: :class:`~lens_rag.sparse.SparseVector`)
        or ``"dense"`` (query: a vector).
    :param query: the query, as the matching ``search_<kind>`` method takes it.
    :param top_k: how many results.
    :param filters: metadata filters, as for ``search_<kind>``.
    """

    kind: SearchKind
    query: Any
    top_k: int = 10
    filters: Filters | FilterNode | None = None


def check_requests(requests: Sequence[SearchRequest | tuple[Any, ...]]) -> list[SearchRequest]:
    """Requests checked as the single searches check them, before anything is sent.

    Plain ``(kind, query, top_k, filters)`` tuples are accepted. `top_k` goes through
    :func:`~lens_rag.validation.check_top_k`, filters through :func:`~lens_rag.filters.parse_filters`
    (the returned requests hold the parsed node), sparse queries through
    :func:`~lens_rag.validation.check_sparse_query`.

    :raises ConfigurationError: naming the request's position, kind and the fix.
    """
    checked: list[SearchRequest] = []
    for i, raw in enumerate(requests):
        request = raw if isinstance(raw, SearchRequest) else SearchRequest(*raw)
        kind, query = request.kind, request.query
        if kind not in KINDS:
            raise ConfigurationError(f"requests[{i}].kind must be one of {KINDS}, got {kind!r}")
        if kind == "bm25" and not isinstance(query, str):
            raise ConfigurationError(
                f"requests[{i}] is a bm25 search, so its query must be text, got {type(query).__name__}"
            )
        if kind != "bm25" and isinstance(query, str):
            raise ConfigurationError(
                f"requests[{i}] is a {kind} search, so its query must be a vector (encode the text with the "
                f"store's {kind} encoder), got str"
            )
        if kind == "sparse":
            query = check_sparse_query(query, name=f"requests[{i}].query")
        top_k = check_top_k(request.top_k, name=f"requests[{i}].top_k")
        checked.append(SearchRequest(kind, query, top_k, parse_filters(request.filters)))
    return checked


def needs_search(request: SearchRequest) -> bool:
    """Whether a checked request asks the server at all (`top_k=0` and an empty sparse query return ``[]``)."""
    return request.top_k > 0 and not (request.kind == "sparse" and len(request.query) == 0)


def filter_nodes(requests: Sequence[SearchRequest]) -> list[Any]:
    """The distinct parsed filters of the requests that will be sent (for the store to learn their field types)."""
    nodes: list[Any] = []
    for r in requests:
        if needs_search(r) and r.filters is not None and all(r.filters is not n for n in nodes):
            nodes.append(r.filters)
    return nodes


def request_bodies(
    requests: Sequence[SearchRequest], *, bm25: BodyBuilder, sparse: BodyBuilder, dense: BodyBuilder
) -> list[dict[str, Any] | None]:
    """The search body of each checked request, built by the store's own per-kind builders.

    `None` marks a request that needs no search and returns no results, exactly where the single
    search returns ``[]`` without asking the server: `top_k=0`, an empty sparse query, or a dense
    query on an index without dense vectors (the builder returns `None`).
    """
    builders = {"bm25": bm25, "sparse": sparse, "dense": dense}
    return [builders[r.kind](r.query, r.top_k, r.filters) if needs_search(r) else None for r in requests]


def msearch_lines(bodies: Sequence[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The `searches` of ``client.msearch(index=..., searches=...)``: a header and a body per search to run.

    Headers are empty (the index is given once, in the path); bodies skip total-hit counting, as
    the single searches do.
    """
    lines: list[dict[str, Any]] = []
    for body in bodies:
        if body is not None:
            lines.append({})
            lines.append({**body, "track_total_hits": False})
    return lines


def _item_error(item: Mapping[str, Any], request: SearchRequest, index: str) -> StoreError:
    error = item.get("error")
    detail = error if isinstance(error, Mapping) else {"reason": error}
    status = item.get("status", "?")
    return StoreError(
        f"could not search index {index!r} ({request.kind} search in a multi-search): Elasticsearch answered "
        f"HTTP {status}: {detail.get('type', 'error')}: {str(detail.get('reason'))[:500]}"
    )


def parse_responses(
    response: Mapping[str, Any],
    requests: Sequence[SearchRequest],
    bodies: Sequence[dict[str, Any] | None],
    *,
    index: str,
    dense_similarity: str | None,
) -> list[list[ScoredDocument]]:
    """Ranked results per request, in request order (``[]`` where the body was `None`).

    Hits are labelled with their kind (``"bm25"``, ``"sparse"``, ``"dense"``) as the single
    searches label them; dense scores are mapped back to the similarity itself.

    :raises StoreError: if any search of the batch failed (naming its kind and the server's reason),
        or the server answered a different number of responses than searches were sent.
    """
    items = list(response.get("responses", []))
    sent = sum(body is not None for body in bodies)
    if len(items) != sent:
        raise StoreError(
            f"could not search index {index!r}: Elasticsearch answered {len(items)} responses to a multi-search "
            f"of {sent} searches"
        )
    results: list[list[ScoredDocument]] = []
    position = 0
    for request, body in zip(requests, bodies, strict=True):
        if body is None:
            results.append([])
            continue
        item = items[position]
        position += 1
        if "error" in item:
            raise _item_error(item, request, index)
        similarity = dense_similarity if request.kind == "dense" else None
        results.append(queries.hits_to_results(item, request.kind, dense_similarity=similarity))
    return results
