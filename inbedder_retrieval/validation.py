"""Checks shared by the index, the stores and the integrations: bad input raises a clear
error before anything is read or written."""

from __future__ import annotations

from collections.abc import Iterable


def check_ids(ids: Iterable[object], what: str = "ids") -> list[str]:
    """``ids`` as a list of non-empty strings; a bare string or a non-str item is a ``TypeError``."""
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{what} must be a list of str, got a single {type(ids).__name__} (wrap it in a list)")
    if ids is None or not isinstance(ids, Iterable):
        raise TypeError(f"{what} must be a list of str, got {type(ids).__name__}")
    checked = list(ids)
    for position, doc_id in enumerate(checked):
        if not isinstance(doc_id, str) or not doc_id:
            raise TypeError(f"{what}[{position}] must be a non-empty str, got {doc_id!r}")
    return checked


def check_positive_int(value: object, what: str) -> int:
    """``value`` if it is an int >= 1 (bools refused), else ``ValueError``/``TypeError``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be a positive int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value}")
    return value


def check_k(k: object) -> int:
    """The number of results of a search: an int >= 1."""
    return check_positive_int(k, "k")
