"""Vector stores behind one protocol (see ``base.VectorStore``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .base import Document, Filter, Hit, VectorStore
from .filters import FilterError


#: the option names of the FAISS store (``FaissStore``'s keyword arguments)
FAISS_OPTIONS = ("factory", "metric", "use_gpu", "ef_search", "nprobe", "rerank")


def qdrant_options() -> tuple[str, ...]:
    """The option names of the Qdrant store: its connection and the client's options."""
    from .qdrant_client_engine import COLLECTION_OPTIONS, UPLOAD_OPTIONS

    return ("url", "api_key", "location", "collection", *COLLECTION_OPTIONS, *UPLOAD_OPTIONS)


def check_option_names(backend: str, options: Mapping[str, Any]) -> None:
    """Refuse a store option that ``backend`` does not take (``ValueError`` naming it and
    the known ones), before anything is loaded or created; values are checked by the store."""
    known = {"faiss": ("FAISS", FAISS_OPTIONS), "qdrant": ("Qdrant", qdrant_options())}
    if backend not in known:
        raise ValueError(f"Unknown backend {backend!r}; available: {', '.join(STORES)}")
    label, names = known[backend]
    unknown = [name for name in options if name not in names]
    if unknown:
        raise ValueError(f"Unknown {label} store option {unknown[0]!r}; known: {', '.join(names)}")


def _faiss(path: Path, options: dict[str, Any], *, create: bool, trust_index: bool) -> VectorStore:
    from .faiss_store import FaissStore

    check_option_names("faiss", options)
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


__all__ = ["STORES", "check_option_names", "Document", "Filter", "FilterError", "Hit", "VectorStore", "open_store"]
