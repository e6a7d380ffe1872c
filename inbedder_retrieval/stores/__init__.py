"""Vector stores behind one protocol (see ``base.VectorStore``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .base import Document, Filter, Hit, VectorStore
from .filters import FilterError


def _faiss(path: Path, options: dict[str, Any], create: bool | None) -> VectorStore:
    from .faiss_store import FaissStore

    return FaissStore(path / "faiss-store", create=create, **options)


def _qdrant(path: Path, options: dict[str, Any], create: bool | None) -> VectorStore:
    from .qdrant_store import QdrantStore

    return QdrantStore(path / "qdrant-store", **options)


#: backend name -> opener(index folder, options, create) -> store
STORES: MappingProxyType[str, Callable[[Path, dict[str, Any], bool | None], VectorStore]] = MappingProxyType(
    {"faiss": _faiss, "qdrant": _qdrant}
)


def open_store(backend: str, path: Path, options: dict[str, Any], *, create: bool | None = None) -> VectorStore:
    """Open or create the ``backend`` store of the index folder ``path``.

    ``create=True``: a new store (its files must not exist); ``False``: an existing one
    (missing files are ``CorruptIndexError``, nothing is created); ``None``: either."""
    try:
        opener = STORES[backend]
    except KeyError:
        raise ValueError(f"Unknown backend {backend!r}; available: {', '.join(STORES)}") from None
    return opener(path, dict(options), create)


__all__ = ["STORES", "Document", "Filter", "FilterError", "Hit", "VectorStore", "open_store"]
