"""Metadata filters: one language with real boolean logic, checked once, translated by pure functions.

Writing filters
---------------
A filter is a mapping. Keys are metadata keys; the conditions of one mapping must all hold (AND):

- a scalar means equality: ``{"lang": "en"}``;
- a list means any of: ``{"source": ["a.md", "b.md"]}``;
- a mapping of operators: ``{"year": {"gte": 2000, "lt": 2020}}``. Operators are ``eq, ne, gt, gte,
  lt, lte, in, nin, exists`` and may carry a ``$`` prefix (``{"year": {"$gte": 2000}}``, the Mongo /
  LangChain spelling); ``{"year": {"$not": {"gte": 2000}}}`` negates the operators of one key.
- boolean logic, nestable and mixable with keys: ``{"$and": [f, ...]}``, ``{"$or": [f, ...]}``,
  ``{"$not": f}``;
- ``"$id"`` addresses the document id: ``{"$id": ["a", "b"]}`` (``eq, ne, in, nin``).

Dots in a key address nested objects (``{"author.name": "Ada"}`` looks in ``meta["author"]["name"]``),
as Elasticsearch reads them. Haystack's filter syntax
(``{"operator": "AND", "conditions": [{"field": "meta.year", "operator": ">=", "value": 2000}]}``)
is accepted wherever a filter is, and converted by :func:`from_haystack_filters`.

Semantics (identical for :func:`matches`, :func:`filters_to_sql` and :func:`filters_to_es`)
------------------------------------------------------------------------------------------
The *values* of a key in a document are: nothing if the key is missing, ``None``, an empty list or a
nested object; the value itself for a scalar; the scalar elements of a list (``None`` elements are
skipped). Values are typed: numbers (``int`` and ``float`` alike, never ``bool``), strings and
booleans. **A condition only compares values of the same type**: ``year > 5`` never matches the
string ``"2010"``, ``flag == 1`` never matches ``True``, ``lang == 5`` never matches ``"5"``.

- ``eq v`` / ``in [v, ...]``: some value equals ``v`` (one of them); for a list, any element.
- ``ne v`` / ``nin [...]``: the negation of ``eq`` / ``in``: documents without the key match, and a
  list matches when no element is equal.
- ``gt, gte, lt, lte``: some value of the operand's type is in range (numbers numerically, strings
  lexicographically by code point, so ISO-8601 dates in one format compare chronologically). Each
  condition is checked on its own: for a list ``{"gte": 2, "lt": 5}`` matches ``[1, 10]``.
  Documents without the key never match. Booleans cannot be ranged.
- ``exists True``: the key has at least one value; ``exists False``: it has none.
  ``eq None`` means ``exists False`` and ``ne None`` means ``exists True``; ``None`` inside ``in``
  also matches documents without a value.
- ``in []`` matches nothing, ``nin []`` everything; ``$and: []`` matches everything, ``$or: []`` nothing.

Elasticsearch maps a metadata key by the first value it sees (strings as ``keyword``, numbers as
``double``, booleans as ``boolean``; date detection is off) and refuses a later number where it mapped
a string or the reverse, so keep one type per key there; the embedded store accepts mixed types and
compares type-strictly as above. Strings longer than 4,096 characters are not filterable in
Elasticsearch; integers beyond 2**53 lose precision there (doubles).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from lens_rag.errors import ConfigurationError

__all__ = [
    "OPERATORS",
    "And",
    "Condition",
    "FilterLike",
    "FilterNode",
    "Filters",
    "Not",
    "Or",
    "filters_to_es",
    "filters_to_sql",
    "from_haystack_filters",
    "matches",
    "meta_fields",
    "normalize_filters",
    "parse_filters",
    "to_filters",
]

Filters = Mapping[str, Any]
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")
CONDITION_OPERATORS = (*OPERATORS, "exists")
RANGE_OPERATORS = ("gt", "gte", "lt", "lte")
ID_FIELD = "id"
CONTENT_FIELD = "content"
META_PREFIX = "meta."
_ID_OPERATORS = ("eq", "ne", "in", "nin", "exists")
_LOGICAL = ("$and", "$or", "$not")


def _fail(message: str) -> ConfigurationError:
    return ConfigurationError(message)


# ---------------------------------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Condition:
    """One comparison: `field` is ``"id"`` or ``"meta.<key>"``, `op` one of :data:`CONDITION_OPERATORS`.

    `value` is a scalar (``str``, ``int``, ``float``, ``bool`` or ``None``), a tuple of scalars for
    ``in``/``nin``, a ``bool`` for ``exists``. Dates and datetimes become ISO-8601 strings.

    :raises ConfigurationError: on an unknown field or operator, or a value that does not fit the operator.
    """

    field: str
    op: str
    value: Any = None

    def __post_init__(self) -> None:
        field, op, value = self.field, self.op, self.value
        if op not in CONDITION_OPERATORS:
            raise _fail(f"unknown filter operator {op!r} for {field!r}; use one of {', '.join(CONDITION_OPERATORS)}")
        if field == CONTENT_FIELD:
            raise _fail(
                "filters on 'content' are not supported (Elasticsearch analyses it, so equality cannot match "
                "exactly on both stores); filter on a metadata field, or search the text"
            )
        if field == ID_FIELD:
            if op not in _ID_OPERATORS:
                raise _fail(f"filter operator {op!r} is not supported on 'id'; use one of {', '.join(_ID_OPERATORS)}")
        elif not field.startswith(META_PREFIX):
            raise _fail(f"filter field {field!r} must be 'id' or 'meta.<key>'")
        else:
            _check_key(field[len(META_PREFIX) :])
        where = f"operator {op!r} on {_display(field)!r}"
        if op == "exists":
            if not isinstance(value, bool):
                raise _fail(f"{where} needs True or False, got {value!r}")
        elif op in ("in", "nin"):
            if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
                raise _fail(f"{where} needs a list, got {value!r}")
            items = tuple(_scalar(v, where) for v in value)
            object.__setattr__(self, "value", items)
            if field == ID_FIELD and any(v is not None and not isinstance(v, str) for v in items):
                raise _fail(f"{where} needs a list of string ids, got {value!r}")
        else:
            value = _scalar(value, where)
            object.__setattr__(self, "value", value)
            if op in RANGE_OPERATORS and (value is None or isinstance(value, bool)):
                raise _fail(f"{where} needs a number or a string (ISO dates compare as strings), got {value!r}")
            if field == ID_FIELD and value is not None and not isinstance(value, str):
                raise _fail(f"{where} needs a string id, got {value!r}")

    @property
    def key(self) -> str | None:
        """The metadata key, or `None` for the document id."""
        return self.field[len(META_PREFIX) :] if self.field.startswith(META_PREFIX) else None


@dataclass(frozen=True)
class And:
    """All children hold (no children: always true)."""

    children: tuple[FilterNode, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "children", tuple(self.children))


@dataclass(frozen=True)
class Or:
    """At least one child holds (no children: never true)."""

    children: tuple[FilterNode, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "children", tuple(self.children))


@dataclass(frozen=True)
class Not:
    """The child does not hold."""

    child: FilterNode


FilterNode: TypeAlias = And | Or | Not | Condition
#: Anything :func:`parse_filters` accepts: the mapping language (shorthand or Haystack's) or a parsed tree.
FilterLike: TypeAlias = Mapping[str, Any] | FilterNode
_NODE_TYPES = (And, Or, Not, Condition)

_KEY_SEGMENT = re.compile(r'^[^"]+$')


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise _fail(f"filter keys must be non-empty strings, got {key!r}")
    if key.startswith("$"):
        raise _fail(f"unknown filter keyword {key!r}; use $and, $or, $not or $id (metadata keys cannot start with '$')")
    if any(not seg or not _KEY_SEGMENT.match(seg) for seg in key.split(".")):
        raise _fail(
            f"filter key {key!r} is not usable: dots separate nested keys, so no segment may be empty, "
            "and keys cannot contain '\"'"
        )


def _display(field: str) -> str:
    return field[len(META_PREFIX) :] if field.startswith(META_PREFIX) else field


def _scalar(value: Any, where: str) -> Any:
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(f"{where} needs a finite number, got {value!r}")
        return value
    raise _fail(f"{where} needs a scalar (string, number, bool or None), got {value!r}")


# ---------------------------------------------------------------------------------------------------------- parsing


def _op_name(op: Any, key: str) -> str:
    name = op[1:] if isinstance(op, str) and op.startswith("$") else op
    if name not in CONDITION_OPERATORS:
        raise _fail(
            f"unknown filter operator {op!r} for key {key!r}; use one of {', '.join(CONDITION_OPERATORS)} "
            "(optionally with a '$' prefix) or $not"
        )
    return str(name)


def _field_conditions(field: str, cond: Any) -> list[FilterNode]:
    key = _display(field)
    if isinstance(cond, Mapping):
        out: list[FilterNode] = []
        for op, value in cond.items():
            if op in ("$not", "not"):
                if not isinstance(value, Mapping) or not value:
                    raise _fail(f"'$not' for key {key!r} needs a mapping of operators, got {value!r}")
                inner = _field_conditions(field, value)
                out.append(Not(inner[0] if len(inner) == 1 else And(tuple(inner))))
                continue
            name = _op_name(op, key)
            if name in ("in", "nin") and not isinstance(value, (list, tuple, set, frozenset)):
                raise _fail(f"filter operator {op!r} for key {key!r} needs a list, got {value!r}")
            if name not in ("in", "nin") and isinstance(value, (list, tuple, set, frozenset, Mapping)):
                raise _fail(f"filter operator {op!r} for key {key!r} needs a scalar, got {value!r}")
            out.append(Condition(field, name, value))
        if not out:
            raise _fail(f"filter for key {key!r} is an empty mapping; give at least one operator, e.g. {{'eq': ...}}")
        return out
    if isinstance(cond, (list, tuple, set, frozenset)):
        return [Condition(field, "in", cond)]
    return [Condition(field, "eq", cond)]


def _looks_like_haystack(filters: Mapping[str, Any]) -> bool:
    """Haystack's shape: an ``operator`` with ``field``/``value`` or ``conditions`` (and no other keys)."""
    keys = set(filters)
    if "operator" not in keys or not keys <= {"field", "operator", "value", "conditions"}:
        return False
    return "field" in keys or "conditions" in keys or filters["operator"] in ("AND", "OR", "NOT")


def _parse_mapping(filters: Any, where: str) -> list[FilterNode]:
    if isinstance(filters, _NODE_TYPES):
        return [filters]
    if not isinstance(filters, Mapping):
        raise _fail(
            f"{where} must be a mapping like {{'year': {{'gte': 2000}}}}, got {type(filters).__name__}: {filters!r}"
        )
    if _looks_like_haystack(filters):
        return [from_haystack_filters(filters)]
    out: list[FilterNode] = []
    for key, cond in filters.items():
        if key in ("$and", "$or"):
            if not isinstance(cond, (list, tuple)):
                raise _fail(f"{key!r} needs a list of filters, got {cond!r}")
            children: list[FilterNode] = []
            for i, child in enumerate(cond):
                parsed = _parse_mapping(child, f"{key}[{i}]")
                children.append(parsed[0] if len(parsed) == 1 else And(tuple(parsed)))
            out.append(And(tuple(children)) if key == "$and" else Or(tuple(children)))
        elif key == "$not":
            parsed = _parse_mapping(cond, "'$not'")
            out.append(Not(parsed[0] if len(parsed) == 1 else And(tuple(parsed))))
        elif key == "$id":
            out.extend(_field_conditions(ID_FIELD, cond))
        else:
            _check_key(key)
            out.extend(_field_conditions(META_PREFIX + key, cond))
    return out


def parse_filters(filters: Filters | FilterNode | None) -> FilterNode | None:
    """Check a filter and return its syntax tree; `None` (match everything) for `None` or ``{}``.

    Accepts the shorthand described in the module docstring, Haystack's syntax, or an existing node.

    :param filters: the filter.
    :returns: an :class:`And`, :class:`Or`, :class:`Not` or :class:`Condition`, or `None`.
    :raises ConfigurationError: naming the key, operator or value that is wrong.

    Usage::

        parse_filters({"$or": [{"lang": "en"}, {"year": {"$gte": 2000}}]})
    """
    if filters is None:
        return None
    if isinstance(filters, _NODE_TYPES):
        return filters
    if isinstance(filters, Mapping) and not filters:
        return None
    nodes = _parse_mapping(filters, "filters")
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))


def to_filters(node: FilterNode | None) -> dict[str, Any]:
    """The JSON-safe shorthand of a node (``$``-operators), which :func:`parse_filters` reads back to `node`."""
    if node is None:
        return {}
    if isinstance(node, And):
        return {"$and": [to_filters(c) for c in node.children]}
    if isinstance(node, Or):
        return {"$or": [to_filters(c) for c in node.children]}
    if isinstance(node, Not):
        return {"$not": to_filters(node.child)}
    value = list(node.value) if isinstance(node.value, tuple) else node.value
    key = "$id" if node.field == ID_FIELD else _display(node.field)
    return {key: {f"${node.op}": value}}


def meta_fields(node: FilterNode | None) -> set[str]:
    """The metadata keys a filter reads."""
    if node is None:
        return set()
    if isinstance(node, Condition):
        return set() if node.key is None else {node.key}
    if isinstance(node, Not):
        return meta_fields(node.child)
    return set().union(*(meta_fields(c) for c in node.children))


def normalize_filters(filters: Filters | None) -> list[tuple[str, str, Any]]:
    """Check a flat (AND-only, metadata-only) filter and return it as `(key, operator, value)` triples.

    Kept for callers of the first filter API; new code uses :func:`parse_filters`.

    :raises ConfigurationError: on an unknown operator, a wrong operand, or boolean operators
        (``$and``/``$or``/``$not``), which triples cannot express.
    """
    node = parse_filters(filters)
    if node is None:
        return []
    flat = node.children if isinstance(node, And) else (node,)
    out: list[tuple[str, str, Any]] = []
    for c in flat:
        if not isinstance(c, Condition) or c.key is None:
            raise _fail("normalize_filters handles flat metadata filters only; use parse_filters for $and/$or/$not/$id")
        out.append((c.key, c.op, list(c.value) if isinstance(c.value, tuple) else c.value))
    return out


# ---------------------------------------------------------------------------------------------------------- Haystack

_HAYSTACK_COMPARISONS = {"==": "eq", "!=": "ne", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte", "in": "in"}
_HAYSTACK_COMPARISONS["not in"] = "nin"
_HAYSTACK_DOC_FIELDS = ("id", "content", "meta", "embedding", "sparse_embedding", "score", "blob")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([Tt ].*)?$")


def from_haystack_filters(filters: Mapping[str, Any]) -> FilterNode:
    """Convert a Haystack 2.x/3.x filter into a syntax tree, with the semantics of the module docstring.

    Supports ``AND``/``OR``/``NOT`` (``NOT`` negates the AND of its conditions) and ``==, !=, >, >=,
    <, <=, in, not in`` on ``"meta.<key>"`` (or a bare metadata key, as Haystack's converted legacy
    filters write it) and ``"id"``. As in Haystack, ``> None`` matches nothing, ordering a string
    needs an ISO date, and ``in`` needs a list.

    :raises ConfigurationError: where Haystack raises `FilterError` (missing keys, unknown operators,
        a list or a non-date string for ``>``, a non-list for ``in``) or on unsupported fields.
    """
    if not isinstance(filters, Mapping):
        raise _fail(f"a Haystack filter must be a mapping, got {type(filters).__name__}: {filters!r}")
    if "field" in filters:
        return _haystack_comparison(filters)
    if "operator" not in filters:
        raise _fail(f"'operator' key missing in Haystack filter {dict(filters)!r}")
    if "conditions" not in filters:
        raise _fail(f"'conditions' key missing in Haystack filter {dict(filters)!r}")
    operator, conditions = filters["operator"], filters["conditions"]
    if operator not in ("AND", "OR", "NOT"):
        raise _fail(f"unknown logical operator {operator!r} in Haystack filter; use 'AND', 'OR' or 'NOT'")
    if not isinstance(conditions, list):
        raise _fail(f"'conditions' of a Haystack {operator} must be a list, got {conditions!r}")
    children = tuple(from_haystack_filters(c) for c in conditions)
    if operator == "OR":
        return Or(children)
    return And(children) if operator == "AND" else Not(And(children))


def _haystack_comparison(condition: Mapping[str, Any]) -> FilterNode:
    for key in ("operator", "value"):
        if key not in condition:
            raise _fail(f"'{key}' key missing in Haystack filter {dict(condition)!r}")
    field, operator, value = condition["field"], condition["operator"], condition["value"]
    if operator not in _HAYSTACK_COMPARISONS:
        raise _fail(
            f"unknown comparison operator {operator!r} in Haystack filter; use one of {sorted(_HAYSTACK_COMPARISONS)}"
        )
    if not isinstance(field, str) or not field:
        raise _fail(f"'field' of a Haystack filter must be a non-empty string, got {field!r}")
    if field.startswith(META_PREFIX):
        target = field
    elif field == ID_FIELD or field == CONTENT_FIELD:
        target = field
    elif field in _HAYSTACK_DOC_FIELDS:
        raise _fail(f"filtering on the document field {field!r} is not supported; filter on 'id' or 'meta.<key>'")
    else:
        target = META_PREFIX + field  # a converted legacy filter: bare metadata key
    op = _HAYSTACK_COMPARISONS[operator]
    if op in ("in", "nin"):
        if not isinstance(value, list):
            raise _fail(f"Haystack operator {operator!r} on {field!r} needs a list, got {type(value).__name__}")
        return Condition(target, op, value)
    if op in RANGE_OPERATORS:
        if value is None:
            return Or(())  # Haystack: ordering against None matches nothing
        if isinstance(value, list):
            raise _fail(f"Haystack operator {operator!r} on {field!r} cannot take a list, got {value!r}")
        if isinstance(value, str) and not _ISO_DATE.match(value):
            raise _fail(
                f"Haystack operator {operator!r} on {field!r} got the string {value!r}; "
                "strings are only comparable if they are ISO formatted dates"
            )
    if op == "eq" and value is None:
        return Condition(target, "exists", False)
    if op == "ne" and value is None:
        return Condition(target, "exists", True)
    return Condition(target, op, value)


# ---------------------------------------------------------------------------------------------------------- Python


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "num"
    if isinstance(value, str):
        return "str"
    return None


def _values(meta: Mapping[str, Any], key: str) -> list[Any]:
    current: Any = meta
    for part in key.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return []
        current = current[part]
    if isinstance(current, list | tuple):
        return [v for v in current if _kind(v) is not None]
    return [current] if _kind(current) is not None else []


def _eq(values: list[Any], target: Any) -> bool:
    if target is None:
        return not values
    kind = _kind(target)
    return any(_kind(v) == kind and v == target for v in values)


def _evaluate(node: FilterNode, doc_id: str | None, meta: Mapping[str, Any]) -> bool:
    if isinstance(node, And):
        return all(_evaluate(c, doc_id, meta) for c in node.children)
    if isinstance(node, Or):
        return any(_evaluate(c, doc_id, meta) for c in node.children)
    if isinstance(node, Not):
        return not _evaluate(node.child, doc_id, meta)
    if node.key is None:
        values: list[Any] = [] if doc_id is None else [doc_id]
    else:
        values = _values(meta, node.key)
    op, target = node.op, node.value
    if op == "exists":
        return bool(values) == target
    if op in ("eq", "ne"):
        return _eq(values, target) == (op == "eq")
    if op in ("in", "nin"):
        return any(_eq(values, t) for t in target) == (op == "in")
    kind = _kind(target)
    same = [v for v in values if _kind(v) == kind]
    if op == "gt":
        return any(v > target for v in same)
    if op == "gte":
        return any(v >= target for v in same)
    if op == "lt":
        return any(v < target for v in same)
    return any(v <= target for v in same)


def matches(document: Any, node: FilterNode | Filters | list[tuple[str, str, Any]] | None) -> bool:
    """Whether a document (or a metadata mapping) satisfies a filter: the reference semantics.

    :param document: a `Document` (anything with `meta` and `id`) or a metadata mapping (no id).
    :param node: a syntax tree, a filter :func:`parse_filters` accepts, or the triples of
        :func:`normalize_filters`.
    :raises ConfigurationError: if `node` is a malformed filter.
    """
    if isinstance(document, Mapping):
        doc_id, meta = None, document
    else:
        doc_id, meta = getattr(document, "id", None), getattr(document, "meta", None) or {}
    if isinstance(node, list):
        tree: FilterNode | None = And(tuple(Condition(META_PREFIX + k, op, v) for k, op, v in node))
    else:
        tree = parse_filters(node)
    return True if tree is None else _evaluate(tree, doc_id, meta)


# ---------------------------------------------------------------------------------------------------------- SQLite

_SQL_OPS = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_SQL_TYPES = {"num": "('integer', 'real')", "str": "('text')"}
_SQL_SCALARS = "('true', 'false', 'integer', 'real', 'text')"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_INT64 = 2**63


def _json_path(key: str) -> str:
    return "$" + "".join(f'."{seg}"' for seg in key.split("."))


def _sql_param(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
        return float(value)  # SQLite reads such JSON numbers as reals too
    return value


def _sql_value_pred(
    type_expr: str, value_expr: str, expr_params: list[Any], op: str, targets: tuple[Any, ...]
) -> tuple[str, list[Any]]:
    """A predicate that one JSON value (its type and SQL value) is `op` to some target, type-strictly.

    `type_expr` and `value_expr` may each hold placeholders bound to `expr_params` (one per placeholder).
    """
    n_type = type_expr.count("?")
    type_params, value_params = expr_params[:n_type], expr_params[n_type:]
    parts: list[str] = []
    params: list[Any] = []
    if op in RANGE_OPERATORS:
        (target,) = targets
        kinds = _SQL_TYPES[str(_kind(target))]
        sql = f"({type_expr} IN {kinds} AND {value_expr} {_SQL_OPS[op]} ?)"
        return sql, [*type_params, *value_params, _sql_param(target)]
    for kind in ("num", "str"):
        group = [t for t in targets if _kind(t) == kind]
        if group:
            test = "= ?" if len(group) == 1 else f"IN ({', '.join('?' * len(group))})"
            parts.append(f"({type_expr} IN {_SQL_TYPES[kind]} AND {value_expr} {test})")
            params.extend([*type_params, *value_params, *(_sql_param(t) for t in group)])
    bools = sorted({"'true'" if t else "'false'" for t in targets if isinstance(t, bool)})
    if bools:
        parts.append(f"{type_expr} IN ({', '.join(bools)})")
        params.extend(type_params)
    if not parts:
        return "0", []
    return (parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"), params


def _sql_any(meta: str, key: str, op: str, targets: tuple[Any, ...]) -> tuple[str, list[Any]]:
    """Some value of `key` (the scalar itself, or an element of a list) satisfies `op` against `targets`."""
    path = _json_path(key)
    scalar, scalar_params = _sql_value_pred(
        f"IFNULL(json_type({meta}, ?), '')", f"json_extract({meta}, ?)", [path, path], op, targets
    )
    if scalar == "0":
        return "0", []
    element, element_params = _sql_value_pred("_lr_je.type", "_lr_je.value", [], op, targets)
    sql = (
        f"({scalar} OR (IFNULL(json_type({meta}, ?), '') = 'array' AND EXISTS "
        f"(SELECT 1 FROM json_each({meta}, ?) AS _lr_je WHERE {element})))"
    )
    return sql, [*scalar_params, path, path, *element_params]


def _sql_exists(meta: str, key: str) -> tuple[str, list[Any]]:
    path = _json_path(key)
    sql = (
        f"(IFNULL(json_type({meta}, ?), '') IN {_SQL_SCALARS} OR (IFNULL(json_type({meta}, ?), '') = 'array' "
        f"AND EXISTS (SELECT 1 FROM json_each({meta}, ?) AS _lr_je WHERE _lr_je.type IN {_SQL_SCALARS})))"
    )
    return sql, [path, path, path]


def _sql(node: FilterNode, meta: str, id_col: str) -> tuple[str, list[Any]]:
    if isinstance(node, And | Or):
        if not node.children:
            return ("1" if isinstance(node, And) else "0"), []
        parts = [_sql(c, meta, id_col) for c in node.children]
        joiner = " AND " if isinstance(node, And) else " OR "
        return "(" + joiner.join(p for p, _ in parts) + ")", [x for _, ps in parts for x in ps]
    if isinstance(node, Not):
        inner, params = _sql(node.child, meta, id_col)
        return f"(NOT {inner})", params
    op, value = node.op, node.value
    if node.key is None:  # the document id: a non-null string column
        if op == "exists":
            return ("1" if value else "0"), []
        targets = value if op in ("in", "nin") else (value,)
        ids = [t for t in targets if t is not None]
        if not ids:
            sql = "0"
        elif len(ids) == 1:
            sql = f"{id_col} = ?"
        else:
            sql = f"{id_col} IN ({', '.join('?' * len(ids))})"
        return (f"(NOT {sql})" if op in ("ne", "nin") else sql), (ids if sql != "0" else [])
    key = node.key
    if op == "exists":
        sql, params = _sql_exists(meta, key)
        return (sql if value else f"(NOT {sql})"), params
    if op in RANGE_OPERATORS:
        return _sql_any(meta, key, op, (value,))
    targets = value if op in ("in", "nin") else (value,)
    pieces: list[tuple[str, list[Any]]] = []
    if any(t is None for t in targets):
        exists, params = _sql_exists(meta, key)
        pieces.append((f"(NOT {exists})", params))
    others = tuple(t for t in targets if t is not None)
    if others or not pieces:
        pieces.append(_sql_any(meta, key, "eq", others))
    sql = pieces[0][0] if len(pieces) == 1 else "(" + " OR ".join(p for p, _ in pieces) + ")"
    params = [x for _, ps in pieces for x in ps]
    return (f"(NOT {sql})" if op in ("ne", "nin") else sql), params


def filters_to_sql(
    node: FilterNode | Filters | None,
    *,
    meta_column: str = "meta",
    id_column: str = "id",
    content_column: str = "content",
) -> tuple[str, list[Any]]:
    """A SQLite ``WHERE`` fragment and its parameters for metadata stored as JSON text.

    Every value is bound; JSON paths too. Each condition is guarded by ``json_type`` so that it only
    compares values of its own type, lists are searched with ``json_each``, and the fragment is
    always 0 or 1 (never NULL), so ``NOT`` behaves. `None` filters give ``("1", [])``.

    :param node: a syntax tree or anything :func:`parse_filters` accepts.
    :param meta_column: the JSON metadata column (optionally ``table.column``).
    :param id_column: the document id column.
    :param content_column: the content column (reserved: content filters are refused).
    :returns: ``(sql, params)`` for ``WHERE {sql}``.
    :raises ConfigurationError: on a malformed filter or column name.

    Usage::

        where, params = filters_to_sql({"year": {"$gte": 2000}})
        rows = db.execute(f"SELECT id FROM docs WHERE {where}", params).fetchall()
    """
    for name, column in (("meta_column", meta_column), ("id_column", id_column), ("content_column", content_column)):
        if not _IDENTIFIER.match(column):
            raise _fail(f"{name}={column!r} is not a plain SQL identifier; use e.g. 'meta' or 'docs.meta'")
    tree = parse_filters(node)
    if tree is None:
        return "1", []
    return _sql(tree, meta_column, id_column)


# ------------------------------------------------------------------------------------------------ Elasticsearch

_ES_KINDS = {
    "keyword": "str",
    "constant_keyword": "str",
    "wildcard": "str",
    "text": "str",
    "date": "str",
    "date_nanos": "str",
    "long": "num",
    "integer": "num",
    "short": "num",
    "byte": "num",
    "double": "num",
    "float": "num",
    "half_float": "num",
    "scaled_float": "num",
    "unsigned_long": "num",
    "boolean": "bool",
}
_MATCH_ALL: dict[str, Any] = {"match_all": {}}
_MATCH_NONE: dict[str, Any] = {"match_none": {}}


def _es_field(key: str, meta_field: str) -> str:
    return f"{meta_field}.{key}" if meta_field else key


def _es_compatible(field: str, kind: str | None, field_types: Mapping[str, str] | None) -> bool:
    if field_types is None or field not in field_types:
        return True  # unknown: the field is absent (matches nothing by itself) or the caller did not say
    return _ES_KINDS.get(field_types[field]) == kind


def _es_eq(field: str, targets: tuple[Any, ...], field_types: Mapping[str, str] | None) -> dict[str, Any]:
    clauses: list[dict[str, Any]] = []
    if any(t is None for t in targets):
        clauses.append(_es_not({"exists": {"field": field}}))
    for kind in ("str", "num", "bool"):
        group = list(dict.fromkeys(t for t in targets if t is not None and _kind(t) == kind))
        if not group or not _es_compatible(field, kind, field_types):
            continue
        clauses.append({"term": {field: group[0]}} if len(group) == 1 else {"terms": {field: group}})
    if not clauses:
        return _MATCH_NONE
    return clauses[0] if len(clauses) == 1 else {"bool": {"should": clauses, "minimum_should_match": 1}}


def _es_not(query: dict[str, Any]) -> dict[str, Any]:
    if query == _MATCH_NONE:
        return _MATCH_ALL
    if query == _MATCH_ALL:
        return _MATCH_NONE
    inner = query.get("bool")
    if isinstance(inner, dict) and list(inner) == ["must_not"] and len(inner["must_not"]) == 1:
        return dict(inner["must_not"][0])  # not-not
    return {"bool": {"must_not": [query]}}


def _es(node: FilterNode, meta_field: str, field_types: Mapping[str, str] | None) -> dict[str, Any]:
    if isinstance(node, And | Or) and len(node.children) == 1:
        return _es(node.children[0], meta_field, field_types)
    if isinstance(node, And):
        if not node.children:
            return _MATCH_ALL
        filter_: list[dict[str, Any]] = []
        must_not: list[dict[str, Any]] = []
        for child in node.children:
            child_query = _es(child, meta_field, field_types)
            negated = child_query.get("bool", {})
            if list(negated) == ["must_not"]:
                must_not.extend(negated["must_not"])
            else:
                filter_.append(child_query)
        body: dict[str, Any] = {}
        if filter_:
            body["filter"] = filter_
        if must_not:
            body["must_not"] = must_not
        return {"bool": body}
    if isinstance(node, Or):
        if not node.children:
            return _MATCH_NONE
        return {"bool": {"should": [_es(c, meta_field, field_types) for c in node.children], "minimum_should_match": 1}}
    if isinstance(node, Not):
        return _es_not(_es(node.child, meta_field, field_types))
    op, value = node.op, node.value
    if node.key is None:  # the document id
        if op == "exists":
            return _MATCH_ALL if value else _MATCH_NONE
        ids = [t for t in (value if op in ("in", "nin") else (value,)) if t is not None]
        query = {"ids": {"values": ids}} if ids else _MATCH_NONE
        return _es_not(query) if op in ("ne", "nin") else query
    field = _es_field(node.key, meta_field)
    if op == "exists":
        exists = {"exists": {"field": field}}
        return exists if value else _es_not(exists)
    if op in RANGE_OPERATORS:
        if not _es_compatible(field, _kind(value), field_types):
            return _MATCH_NONE
        return {"range": {field: {op: value}}}
    query = _es_eq(field, value if op in ("in", "nin") else (value,), field_types)
    return _es_not(query) if op in ("ne", "nin") else query


def filters_to_es(
    node: FilterNode | Filters | None,
    *,
    field_types: Mapping[str, str] | None = None,
    meta_field: str = "meta",
) -> dict[str, Any] | None:
    """An Elasticsearch query (``bool`` with ``filter``/``should``/``must_not``) for a filter; `None` when empty.

    Meant for filter context (no scoring). Metadata strings are `keyword` in our mapping, so ``eq``
    is an exact ``term``; ``ne``/``nin`` are ``must_not``, so documents without the key match.

    :param node: a syntax tree or anything :func:`parse_filters` accepts.
    :param field_types: the index's mapping types by field path (``{"meta.year": "double"}``), as the
        store reads them; a condition whose operand type differs from the field's type then matches
        nothing (as in the embedded store) instead of being coerced or failing. Unknown fields are
        left to the server (an unmapped field matches nothing).
    :param meta_field: the object field holding the metadata; ``""`` when metadata keys are top-level
        fields (as in indexes written by other tools).
    :raises ConfigurationError: on a malformed filter.

    Usage::

        {"query": {"bool": {"must": [match], "filter": [filters_to_es({"lang": "en"})]}}}
    """
    tree = parse_filters(node)
    if tree is None:
        return None
    return _es(tree, meta_field, field_types)
