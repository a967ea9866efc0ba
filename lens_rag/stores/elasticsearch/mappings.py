"""Index settings and mappings, and the check that an existing index matches them (pure functions)."""

from __future__ import annotations

from typing import Any

__all__ = [
    "CONTENT_FIELD",
    "DENSE_FIELD",
    "EXPANSION_FIELD",
    "META_FIELD",
    "SPARSE_FIELD",
    "VECTOR_FIELDS",
    "dense_field_mapping",
    "expansion_field_mapping",
    "field_types",
    "index_body",
    "mapping_conflicts",
    "meta_dynamic_templates",
    "sparse_field_mapping",
    "supports_sparse_index_options",
]

CONTENT_FIELD = "content"
META_FIELD = "meta"
SPARSE_FIELD = "sparse_embedding"
DENSE_FIELD = "embedding"
VECTOR_FIELDS = (DENSE_FIELD, SPARSE_FIELD)
#: doc2query expansion (lens_rag.expansion): meta["bm25_expansion"] is written to this top-level text field
EXPANSION_FIELD = "bm25_expansion"
SIMILARITIES = ("cosine", "dot_product", "l2_norm", "max_inner_product")
MAX_DENSE_DIMS = 4096


def supports_sparse_index_options(version: tuple[int, int, int]) -> bool:
    """Whether `sparse_vector` mappings take `index_options` (8.19 and 9.1+, where pruning is on by default)."""
    return (version[0] == 8 and version[1] >= 19) or (version[0] == 9 and version[1] >= 1) or version[0] >= 10


def sparse_field_mapping(version: tuple[int, int, int]) -> dict[str, Any]:
    """`sparse_vector`, with token pruning switched off where the server would otherwise prune by default.

    LENS/SPLADE scores are exact dot products; default pruning silently changes the ranking.
    """
    mapping: dict[str, Any] = {"type": "sparse_vector"}
    if supports_sparse_index_options(version):
        mapping["index_options"] = {"prune": False}
    return mapping


def dense_field_mapping(dims: int, similarity: str) -> dict[str, Any]:
    """An indexed (HNSW) `dense_vector` with explicit dims and similarity."""
    return {"type": "dense_vector", "dims": int(dims), "index": True, "similarity": similarity}


def expansion_field_mapping(analyzer: str) -> dict[str, Any]:
    """The text field holding a document's pseudo-queries; same analyzer as `content` (``combined_fields`` needs it)."""
    return {"type": "text", "analyzer": analyzer}


def meta_dynamic_templates() -> list[dict[str, Any]]:
    """How new `meta` keys are mapped: strings as `keyword`, any number as `double` (not coerced)."""
    path = f"{META_FIELD}.*"
    return [
        {
            "meta_strings": {
                "path_match": path,
                "match_mapping_type": "string",
                "mapping": {"type": "keyword", "ignore_above": 4096},
            }
        },
        {
            "meta_longs": {
                "path_match": path,
                "match_mapping_type": "long",
                "mapping": {"type": "double", "coerce": False},
            }
        },
        {
            "meta_doubles": {
                "path_match": path,
                "match_mapping_type": "double",
                "mapping": {"type": "double", "coerce": False},
            }
        },
    ]


def field_types(mappings: dict[str, Any], prefix: str = META_FIELD) -> dict[str, str]:
    """The mapped type of every field under `prefix` (``{"meta.year": "double", ...}``) from an index's `mappings`."""
    out: dict[str, str] = {}

    def walk(properties: dict[str, Any], path: str) -> None:
        for name, spec in properties.items():
            full = f"{path}.{name}"
            if "properties" in spec:
                walk(spec["properties"], full)
            if "type" in spec and spec["type"] != "object":
                out[full] = str(spec["type"])

    meta = mappings.get("properties", {}).get(prefix, {})
    walk(meta.get("properties", {}), prefix)
    return out


def index_body(
    *,
    analyzer: str,
    version: tuple[int, int, int],
    dense_dims: int | None,
    dense_similarity: str,
    number_of_shards: int = 1,
    number_of_replicas: int = 0,
    vectors_in_source: bool = False,
) -> dict[str, Any]:
    """The `indices.create` body: strict top level, dynamic `meta` with one mapping per JSON type.

    Metadata values keep their JSON type, as in the embedded store, so one filter means the same on
    both (see :mod:`lens_rag.filters`): strings map to `keyword` (exact filters, lexicographic ranges;
    `ignore_above` keeps huge values from failing a write), every number to `double` (so a key first
    seen as ``10`` still takes ``10.5``), booleans to `boolean`. Date and numeric detection are off:
    ``"2020-01-01"`` and ``"42"`` stay strings. Numbers are not coerced: a string written where a key
    was mapped as a number is refused with a clear bulk error instead of silently becoming a number.
    The dense field is only added when its dimension is known; the store adds it with `put_mapping`
    when the first embeddings arrive.

    Unless `vectors_in_source`, the vector fields are indexed but left out of the stored `_source`
    (as Elastic's kNN tuning guide advises): a search returning 100 hits otherwise spends most of
    its time loading and parsing vectors it then drops (SciFact BM25 top-101: 41 ms vs 12 ms per
    query). The price: `get_documents(include_embeddings=True)` and `_reindex` cannot return them.
    """
    properties: dict[str, Any] = {
        CONTENT_FIELD: {"type": "text", "analyzer": analyzer},
        META_FIELD: {"type": "object", "dynamic": True},
    }
    if version >= (8, 11, 0):
        properties[SPARSE_FIELD] = sparse_field_mapping(version)
    if dense_dims is not None:
        properties[DENSE_FIELD] = dense_field_mapping(dense_dims, dense_similarity)
    mappings: dict[str, Any] = {} if vectors_in_source else {"_source": {"excludes": [SPARSE_FIELD, DENSE_FIELD]}}
    return {
        "settings": {"index": {"number_of_shards": number_of_shards, "number_of_replicas": number_of_replicas}},
        "mappings": {
            **mappings,
            "dynamic": "strict",
            "date_detection": False,
            "numeric_detection": False,
            "dynamic_templates": meta_dynamic_templates(),
            "properties": properties,
        },
    }


def mapping_conflicts(existing: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Differences between an existing index's `mappings` and the wanted ones that would break the store.

    Only the fields lens-rag relies on are compared; extra fields and `meta` contents are fine.
    Returns human-readable lines, empty when compatible.
    """
    have = existing.get("properties", {})
    want = wanted.get("properties", {})
    problems: list[str] = []
    for name, spec in want.items():
        if name == META_FIELD:
            if name in have and have[name].get("type", "object") != "object":
                problems.append(f"'{name}' is {have[name].get('type')!r}, expected an object")
            continue
        if name not in have:
            if name == CONTENT_FIELD:
                problems.append(f"'{name}' is missing")
            continue  # vector fields can be added later with put_mapping
        got = have[name]
        if got.get("type") != spec["type"]:
            problems.append(f"'{name}' has type {got.get('type')!r}, expected {spec['type']!r}")
            continue
        if name == CONTENT_FIELD and got.get("analyzer", "standard") != spec.get("analyzer", "standard"):
            problems.append(
                f"'{name}' uses analyzer {got.get('analyzer', 'standard')!r}, expected {spec['analyzer']!r}"
            )
        if name == DENSE_FIELD:
            for key in ("dims", "similarity"):
                if key in got and got[key] != spec[key]:
                    problems.append(f"'{name}' has {key}={got[key]!r}, expected {spec[key]!r}")
    return problems
