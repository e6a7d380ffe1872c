"""Metadata filters in one small language, with one meaning on every backend.

A filter is a mapping: ``{"field": value}`` (equality), ``{"field": {"$op": value}}``
with ``$eq $ne $gt $gte $lt $lte $in $nin``, and ``{"$and": [...]}`` / ``{"$or": [...]}``.
Several keys in one mapping must all hold. Nested fields use dots: ``{"user.country": "FR"}``.

Semantics (the same on FAISS and Qdrant; ``tests/test_stores.py`` checks each backend):

* Equality is type-strict: strings equal strings, booleans equal booleans, and numbers
  compare as numbers (``1`` matches ``1`` and ``1.0``, never ``true`` or ``"1"``).
* ``$gt $gte $lt $lte`` take a number and match numeric fields only.
* ``$ne`` and ``$nin`` are the negation of ``$eq`` and ``$in``: a document without the
  field matches them.
* A list-valued field matches when any of its items does (``{"tags": "red"}`` matches
  ``{"tags": ["red", "blue"]}``); a field holding an object matches no value.
* Values are str, int, float or bool; NaN and infinities are refused. Filters nest at most
  ``MAX_DEPTH`` levels and hold at most ``MAX_TERMS`` values; field names are letters,
  digits and ``_`` joined by dots. Anything else raises ``FilterError`` before a backend
  sees it.

``parse`` walks a filter once into a small tree (``Match``, ``Range``, ``Not``, ``All``,
``Any``); ``to_sql`` and ``to_qdrant`` translate that tree. ``to_qdrant`` builds either
qdrant-client's or qdrant-edge's filter classes through a ``QdrantTarget``. ``to_sql``
reads indexed fields from the side table ``field_values`` (its schema is here too, so the
look-ups and the values they read are defined together) and other fields from the JSON.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Union

RANGES = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
SQL_RANGES = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
EQUALITY = ("$eq", "$ne")
MEMBERSHIP = ("$in", "$nin")
LOGICAL = ("$and", "$or")
MAX_DEPTH = 32
MAX_TERMS = 4096
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
Scalar = Union[str, int, float, bool]


class FilterError(ValueError):
    """A filter outside the filter language (see ``stores/filters.py``)."""


# -- the tree -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Match:
    """``field`` equals one of ``values`` (type-strict; numbers compare as numbers)."""

    field: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Range:
    """``field`` is a number within ``bounds`` (``{"gt": 1, "lte": 5}``)."""

    field: str
    bounds: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Not:
    clause: Node


@dataclass(frozen=True)
class All:
    clauses: tuple[Node, ...]


@dataclass(frozen=True)
class Any_:
    clauses: tuple[Node, ...]


Node = Union[Match, Range, Not, All, Any_]


# -- parsing --------------------------------------------------------------------------------
class _Budget:
    """Counts the values of one filter against ``MAX_TERMS``."""

    def __init__(self) -> None:
        self.terms = 0

    def spend(self, count: int) -> None:
        self.terms += count
        if self.terms > MAX_TERMS:
            raise FilterError(f"Filter too large: more than {MAX_TERMS} values")


def check_field(name: object) -> str:
    """``name`` if it is a valid field name (letters, digits, ``_`` joined by dots)."""
    if not isinstance(name, str) or not _FIELD.fullmatch(name):
        raise FilterError(f"Unsupported filter field {name!r}: use letters, digits, '_' and '.'")
    return name


def _check_scalar(value: object, field: str) -> Scalar:
    if not isinstance(value, (str, int, float, bool)):
        raise FilterError(f"{field}: filter values must be str, int, float or bool, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError(f"{field}: filter values must be finite, got {value!r}")
    return value


def _check_number(value: object, field: str, op: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FilterError(f"{field}: {op} compares numbers only, got {value!r}")
    return _check_scalar(value, field)


def _values(value: object, field: str, op: str, budget: _Budget) -> tuple[Scalar, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise FilterError(f"{field}: {op} needs a non-empty list")
    budget.spend(len(value))
    return tuple(_check_scalar(item, field) for item in value)


def _condition(field: str, op: object, value: object, budget: _Budget) -> Node:
    if op in EQUALITY:
        budget.spend(1)
        match = Match(field, (_check_scalar(value, field),))
        return match if op == "$eq" else Not(match)
    if op in MEMBERSHIP:
        match = Match(field, _values(value, field, op, budget))
        return match if op == "$in" else Not(match)
    if op in RANGES:
        budget.spend(1)
        return Range(field, ((RANGES[op], _check_number(value, field, op)),))
    supported = ", ".join([*EQUALITY, *RANGES, *MEMBERSHIP])
    raise FilterError(f"Unsupported filter operator {op!r} on {field!r}; supported: {supported}")


def _parse(filter: object, depth: int, budget: _Budget) -> Node:
    if depth > MAX_DEPTH:
        raise FilterError(f"Filter nested too deeply: more than {MAX_DEPTH} levels of $and/$or")
    if not isinstance(filter, Mapping) or not filter:
        raise FilterError(f"A filter must be a non-empty mapping, got {filter!r}")
    clauses: list[Node] = []
    for key, condition in filter.items():
        if key in LOGICAL:
            if not isinstance(condition, (list, tuple)) or not condition:
                raise FilterError(f"{key} needs a non-empty list of filters")
            subs = tuple(_parse(sub, depth + 1, budget) for sub in condition)
            clauses.append(All(subs) if key == "$and" else Any_(subs))
            continue
        if isinstance(key, str) and key.startswith("$"):
            raise FilterError(f"Unsupported filter operator {key!r}; supported: {', '.join(LOGICAL)}")
        field = check_field(key)
        items = condition.items() if isinstance(condition, Mapping) else [("$eq", condition)]
        if not items:
            raise FilterError(f"{field}: empty condition")
        clauses.extend(_condition(field, op, value, budget) for op, value in items)
    return clauses[0] if len(clauses) == 1 else All(tuple(clauses))


def parse(filter: Mapping[str, Any]) -> Node:
    """The checked tree of a filter; ``FilterError`` names what is wrong."""
    return _parse(filter, 0, _Budget())


# -- SQLite (JSON text in a column, or indexed fields) ----------------------------------------
#: json_each() yields a scalar itself, the items of a list, and the members of an object
#: (whose key is text): the last are excluded, so an object field matches no value.
_ITEMS = "EXISTS (SELECT 1 FROM json_each({column}, ?) WHERE typeof(key) != 'text' AND ({test}))"
_NUMBER = "type IN ('integer', 'real')"
#: An indexed field's values are rows of a side table (see ``FIELD_TABLES``), so a test on
#: one is a look-up on its (field, type, value) key instead of a scan of every document.
_LOOKUP = "SELECT row FROM field_values WHERE field = ? AND type = '{type}' AND {test}"
#: The side table of indexed fields: one row per scalar the filter language can match (a
#: scalar field, or each scalar item of a list), typed as json_each sees it: 's' strings,
#: 'n' numbers (integers and reals compare as numbers), 'b' booleans (1 or 0).
#: Statements, not a script: they run inside a store's write transaction.
FIELD_TABLES = (
    "CREATE TABLE IF NOT EXISTS indexed_fields (field TEXT PRIMARY KEY, kind TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS field_values (field TEXT NOT NULL, type TEXT NOT NULL, value NOT NULL, "
    "row INTEGER NOT NULL, PRIMARY KEY (field, type, value, row)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS field_values_by_row ON field_values (row)",
)
#: Subqueries for ``INDEX_VALUES``: every document, or the rows in the JSON array ``?3``.
ALL_ROWS = "SELECT row FROM documents"
LISTED_ROWS = "SELECT value FROM json_each(?3)"
#: Fills ``field_values`` for field ``?1`` (JSON path ``?2``) from the documents whose row is
#: in ``{rows}`` (a subquery): the same json_each walk as ``_ITEMS``, so indexed and scanned
#: filters agree by construction.
FIELD_VALUE_ROWS = """
SELECT ?1, CASE j.type WHEN 'text' THEN 's' WHEN 'true' THEN 'b' WHEN 'false' THEN 'b' ELSE 'n' END, j.value, d.row
FROM documents d, json_each(d.metadata, ?2) j
WHERE d.row IN ({rows}) AND typeof(j.key) != 'text' AND j.type IN ('text', 'integer', 'real', 'true', 'false')
"""
INDEX_VALUES = "INSERT OR IGNORE INTO field_values (field, type, value, row)" + FIELD_VALUE_ROWS
#: Rows of ``field_values`` for field ``?1`` (path ``?2``) that the documents do not give, then
#: rows the documents give that ``field_values`` lacks: both empty in a sound store.
STRAY_FIELD_VALUES = ("SELECT field, type, value, row FROM field_values WHERE field = ?1 EXCEPT"
                      + FIELD_VALUE_ROWS.format(rows=ALL_ROWS))
MISSING_FIELD_VALUES = (FIELD_VALUE_ROWS.format(rows=ALL_ROWS)
                        + "EXCEPT SELECT field, type, value, row FROM field_values WHERE field = ?1")


@dataclass(frozen=True)
class _SqlTarget:
    """Where a condition reads: the JSON ``column``, the ``row`` column, the ``indexed`` fields."""

    column: str
    row: str
    indexed: frozenset[str]


def _split(values: tuple[Scalar, ...]) -> tuple[list[str], list[float], list[bool]]:
    """Strings, numbers and booleans of a match (a bool is not a number here)."""
    strings = [v for v in values if isinstance(v, str)]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return strings, numbers, sorted({v for v in values if isinstance(v, bool)})


def _sql_match(node: Match) -> tuple[str, list[Any]]:
    strings, numbers, bools = _split(node.values)
    tests, params = [], []
    if strings:
        tests.append(f"(type = 'text' AND value IN ({', '.join('?' * len(strings))}))")
        params.extend(strings)
    if numbers:
        tests.append(f"({_NUMBER} AND value IN ({', '.join('?' * len(numbers))}))")
        params.extend(numbers)
    tests.extend(f"type = '{'true' if flag else 'false'}'" for flag in bools)
    return " OR ".join(tests), params


def _sql_range(node: Range) -> tuple[str, list[Any]]:
    tests = [_NUMBER, *(f"value {SQL_RANGES[op]} ?" for op, _ in node.bounds)]
    return " AND ".join(tests), [bound for _, bound in node.bounds]


def _lookup_match(node: Match) -> tuple[list[str], list[Any]]:
    """One indexed look-up per value type of the match."""
    selects, params = [], []
    for type_, values in zip("snb", _split(node.values)):
        if values:
            selects.append(_LOOKUP.format(type=type_, test=f"value IN ({', '.join('?' * len(values))})"))
            params.extend([node.field, *values])
    return selects, params


def _lookup_range(node: Range) -> tuple[list[str], list[Any]]:
    test = " AND ".join(f"value {SQL_RANGES[op]} ?" for op, _ in node.bounds)
    return [_LOOKUP.format(type="n", test=test)], [node.field, *(bound for _, bound in node.bounds)]


def _sql_leaf(node: Match | Range, target: _SqlTarget) -> tuple[str, list[Any]]:
    if node.field in target.indexed:
        selects, params = (_lookup_match if isinstance(node, Match) else _lookup_range)(node)
        return f"{target.row} IN ({' UNION ALL '.join(selects)})", params
    test, params = (_sql_match if isinstance(node, Match) else _sql_range)(node)
    return _ITEMS.format(column=target.column, test=test), ["$." + node.field, *params]


def _sql(node: Node, target: _SqlTarget) -> tuple[str, list[Any]]:
    if isinstance(node, (Match, Range)):
        return _sql_leaf(node, target)
    if isinstance(node, Not):
        sql, params = _sql(node.clause, target)
        return f"NOT {sql}", params
    parts = [_sql(clause, target) for clause in node.clauses]
    joiner = " AND " if isinstance(node, All) else " OR "
    return "(" + joiner.join(sql for sql, _ in parts) + ")", [p for _, params in parts for p in params]


def to_sql(filter: Mapping[str, Any], column: str, *, row: str = "row",
           indexed: frozenset[str] = frozenset()) -> tuple[str, list[Any]]:
    """A SQLite condition on the JSON text in ``column`` and its parameters; fields in
    ``indexed`` are looked up in ``field_values`` by the document's ``row`` instead."""
    return _sql(parse(filter), _SqlTarget(column, row, frozenset(indexed)))


# -- Qdrant (qdrant-client or qdrant-edge classes) ---------------------------------------------
class QdrantTarget(Protocol):
    """The filter classes of one Qdrant binding."""

    def equals(self, key: str, value: str | bool) -> Any:
        """A condition: the field equals this string or boolean (type-strict)."""

    def range(self, key: str, bounds: Mapping[str, float]) -> Any:
        """A condition: the field is a number within ``bounds`` (gt/gte/lt/lte)."""

    def filter(self, must: list[Any] | None = None, should: list[Any] | None = None,
               must_not: list[Any] | None = None) -> Any:
        """A filter object from conditions and nested filters."""


def _qdrant_match(node: Match, key: str, target: QdrantTarget) -> list[Any]:
    """One condition per value: numbers as a point range (ints and floats compare alike)."""
    return [
        target.range(key, {"gte": value, "lte": value})
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else target.equals(key, value)
        for value in dict.fromkeys(node.values)
    ]


def _qdrant(node: Node, prefix: str, target: QdrantTarget) -> Any:
    if isinstance(node, Match):
        conditions = _qdrant_match(node, prefix + node.field, target)
        return conditions[0] if len(conditions) == 1 else target.filter(should=conditions)
    if isinstance(node, Range):
        return target.range(prefix + node.field, dict(node.bounds))
    if isinstance(node, Not):
        return target.filter(must_not=[_qdrant(node.clause, prefix, target)])
    clauses = [_qdrant(clause, prefix, target) for clause in node.clauses]
    return target.filter(must=clauses) if isinstance(node, All) else target.filter(should=clauses)


def to_qdrant(filter: Mapping[str, Any], target: QdrantTarget, prefix: str = "metadata.") -> Any:
    """A Qdrant filter (in ``target``'s classes) on payload fields under ``prefix``."""
    node = parse(filter)
    top = _qdrant(node, prefix, target)
    return top if isinstance(node, (All, Any_, Not)) else target.filter(must=[top])


