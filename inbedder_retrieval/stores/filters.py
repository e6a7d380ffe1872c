"""Metadata filters in one small language, translated for each backend.

A filter is a mapping: ``{"field": value}`` (equality), ``{"field": {"$op": value}}``
with ``$eq $ne $gt $gte $lt $lte $in $nin``, and ``{"$and": [...]}`` / ``{"$or": [...]}``.
Several keys in one mapping must all hold. Nested fields use dots: ``{"user.country": "FR"}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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


def to_sql(filter: Mapping[str, Any], column: str) -> tuple[str, list[Any]]:
    """A SQLite condition on the JSON text in ``column`` and its parameters."""
    if not isinstance(filter, Mapping) or not filter:
        raise FilterError(f"A filter must be a non-empty mapping, got {filter!r}")
    clauses: list[str] = []
    params: list[Any] = []
    for key, condition in filter.items():
        if key in LOGICAL:
            if not isinstance(condition, (list, tuple)) or not condition:
                raise FilterError(f"{key} needs a non-empty list of filters")
            parts = [to_sql(sub, column) for sub in condition]
            clauses.append("(" + LOGICAL[key].join(sql for sql, _ in parts) + ")")
            params.extend(value for _, sub_params in parts for value in sub_params)
            continue
        if key.startswith("$"):
            raise FilterError(f"Unsupported filter operator {key!r}; supported: {', '.join(LOGICAL)}")
        path = "$." + _check_field(key)
        operations = condition if isinstance(condition, Mapping) else {"$eq": condition}
        for op, value in operations.items():
            target = f"json_extract({column}, ?)"
            if op in COMPARISONS:
                clauses.append(f"{target} {COMPARISONS[op]} ?")
                params.extend([path, _check_scalar(value, key)])
            elif op in MEMBERSHIP:
                if not isinstance(value, (list, tuple)) or not value:
                    raise FilterError(f"{key}: {op} needs a non-empty list")
                marks = ", ".join("?" for _ in value)
                clauses.append(f"{target} {MEMBERSHIP[op]} ({marks})")
                params.extend([path, *(_check_scalar(item, key) for item in value)])
            else:
                supported = ", ".join([*COMPARISONS, *MEMBERSHIP])
                raise FilterError(f"Unsupported filter operator {op!r} on {key!r}; supported: {supported}")
    return "(" + " AND ".join(clauses) + ")", params
