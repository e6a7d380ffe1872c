"""Vector stores behind one protocol (see ``base.VectorStore``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .base import Document, Filter, Hit, VectorStore
from .filters import FilterError


def _faiss(path: Path, options: dict[str, Any], *, create: bool, trust_index: bool) -> VectorStore:
    from .faiss_store import FaissStore

    return FaissStore(path / "faiss-store", create=create, **options)  # holds no pickles: nothing to trust


def _qdrant(path: Path, options: dict[str, Any], *, create: bool, trust_index: bool) -> VectorStore:
    from .qdrant_store import QdrantStore

    return QdrantStore(path / "qdrant-store", create=create, trust_index=trust_index, **options)


#: backend name -> opener(index folder, options, create=, trust_index=) -> store
STORES: MappingProxyType[str, Callable[..., VectorStore]] = MappingProxyType({"faiss": _faiss, "qdrant": _qdrant})


def open_store(backend: str, path: Path, options: dict[str, Any], *, create: bool = False,
               trust_index: bool = False) -> VectorStore:
    """Open the ``backend`` store of the index folder ``path`` (``create=True``: make a new one).

    Opening never creates a store: a missing one is ``CorruptIndexError``. ``trust_index``
    allows formats that unpickle data (Qdrant folders of qdrant-client's local mode)."""
    try:
        opener = STORES[backend]
    except KeyError:
        raise ValueError(f"Unknown backend {backend!r}; available: {', '.join(STORES)}") from None
    return opener(path, dict(options), create=create, trust_index=trust_index)


__all__ = ["STORES", "Document", "Filter", "FilterError", "Hit", "VectorStore", "open_store"]
