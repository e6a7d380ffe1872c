"""Metadata filters in one small language, translated for each backend.

A filter is a mapping: ``{"field": value}`` (equality), ``{"field": {"$op": value}}``
with ``$eq $ne $gt $gte $lt $lte $in $nin``, and ``{"$and": [...]}`` / ``{"$or": [...]}``.
Several keys in one mapping must all hold. Nested fields use dots: ``{"user.country": "FR"}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

COMPARISONS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
MEMBERSHIP = {"$in": "IN", "$nin": "NOT IN"}
LOGICAL = {"$and": " AND ", "$or": " OR "}
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_SCALARS = (str, int, float, bool)


class FilterError(ValueError):
    """A filter that the backend cannot express."""


def _check_field(name: str) -> str:
    if not isinstance(name, str) or not _FIELD.match(name):
        raise FilterError(f"Unsupported filter field {name!r}: use letters, digits, '_' and '.'")
    return name


def _check_scalar(value: Any, where: str) -> Any:
    if not isinstance(value, _SCALARS):
        raise FilterError(f"{where}: filter values must be str, int, float or bool, got {type(value).__name__}")
    return value


def _operations(filter: Mapping[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """(key, operator, value) triples of one mapping, checked; logical keys give (key, None, list)."""
    if not isinstance(filter, Mapping) or not filter:
        raise FilterError(f"A filter must be a non-empty mapping, got {filter!r}")
    for key, condition in filter.items():
        if key in LOGICAL:
            if not isinstance(condition, (list, tuple)) or not condition:
                raise FilterError(f"{key} needs a non-empty list of filters")
            yield key, None, condition
            continue
        if not isinstance(key, str) or key.startswith("$"):
            raise FilterError(f"Unsupported filter operator {key!r}; supported: {', '.join(LOGICAL)}")
        _check_field(key)
        for op, value in (condition.items() if isinstance(condition, Mapping) else [("$eq", condition)]):
            if op in COMPARISONS:
                _check_scalar(value, key)
            elif op in MEMBERSHIP:
                if not isinstance(value, (list, tuple)) or not value:
                    raise FilterError(f"{key}: {op} needs a non-empty list")
                for item in value:
                    _check_scalar(item, key)
            else:
                supported = ", ".join([*COMPARISONS, *MEMBERSHIP])
                raise FilterError(f"Unsupported filter operator {op!r} on {key!r}; supported: {supported}")
            yield key, op, value


def to_qdrant(filter: Mapping[str, Any], prefix: str = "metadata.") -> Any:
    """A ``qdrant_client.models.Filter`` on payload fields under ``prefix``."""
    from qdrant_client import models

    must: list[Any] = []
    must_not: list[Any] = []
    for key, op, value in _operations(filter):
        if op is None:
            subfilters = [to_qdrant(sub, prefix) for sub in value]
            must.append(models.Filter(must=subfilters) if key == "$and" else models.Filter(should=subfilters))
            continue
        field = prefix + key
        if op in ("$eq", "$ne"):
            if isinstance(value, float):
                condition = models.FieldCondition(key=field, range=models.Range(gte=value, lte=value))
            else:
                condition = models.FieldCondition(key=field, match=models.MatchValue(value=value))
            (must if op == "$eq" else must_not).append(condition)
        elif op in ("$in", "$nin"):
            match = models.MatchAny(any=list(value)) if op == "$in" else models.MatchExcept(**{"except": list(value)})
            must.append(models.FieldCondition(key=field, match=match))
        else:
            if isinstance(value, (str, bool)):
                raise FilterError(f"{key}: Qdrant compares numbers only with {op}, got {value!r}")
            must.append(models.FieldCondition(key=field, range=models.Range(**{op[1:]: value})))
    return models.Filter(must=must or None, must_not=must_not or None)


def to_sql(filter: Mapping[str, Any], column: str) -> tuple[str, list[Any]]:
    """A SQLite condition on the JSON text in ``column`` and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    for key, op, value in _operations(filter):
        if op is None:
            parts = [to_sql(sub, column) for sub in value]
            clauses.append("(" + LOGICAL[key].join(sql for sql, _ in parts) + ")")
            params.extend(item for _, sub_params in parts for item in sub_params)
            continue
        path, target = "$." + key, f"json_extract({column}, ?)"
        if op == "$ne":  # a document without the field is "not equal" too, as in Qdrant
            clauses.append(f"({target} IS NULL OR {target} != ?)")
            params.extend([path, path, value])
        elif op in COMPARISONS:
            clauses.append(f"{target} {COMPARISONS[op]} ?")
            params.extend([path, value])
        else:
            clauses.append(f"{target} {MEMBERSHIP[op]} ({', '.join('?' for _ in value)})")
            params.extend([path, *value])
    return "(" + " AND ".join(clauses) + ")", params
