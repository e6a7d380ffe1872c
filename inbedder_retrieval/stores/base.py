"""The store protocol: instruction-specific vector spaces over one set of documents.

A store keeps documents (id, text, metadata) once and one vector space per instruction.
It knows nothing of models. To add a backend: subclass ``VectorStore``, implement the
abstract methods, and register it in ``stores/__init__.py``'s ``STORES``. The shared test
suite ``tests/test_stores.py`` runs every registered backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Metadata filter: ``{"field": value}``, ``{"field": {"$in": [...]}}``, ``{"$or": [...]}``
#: (see ``stores/filters.py``) or a backend's native filter object.
Filter = Mapping[str, Any]

#: Kinds of an indexed metadata field: the values a Qdrant payload index serves (strings,
#: numbers, booleans). FAISS stores index every scalar of the field whatever its kind.
FIELD_KINDS = ("keyword", "number", "bool")


def check_field_kind(field: str, kind: object) -> str:
    """``kind`` if it is one of ``FIELD_KINDS``."""
    if kind not in FIELD_KINDS:
        raise ValueError(f"{field}: indexed field kind must be one of {FIELD_KINDS}, got {kind!r}")
    return kind


@dataclass(frozen=True)
class Document:
    """A stored text with its id and JSON metadata."""

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """A search result: the document and its similarity score (higher is closer)."""

    id: str
    text: str
    metadata: Mapping[str, Any]
    score: float


class VectorStore(ABC):
    """Documents stored once, with one vector space per instruction ("space").

    Writes made inside ``transaction()`` become visible together or not at all, even if
    the process is killed half-way.
    """

    backend: str

    def check_dim(self, dim: int) -> None:
        """Raise ``ValueError`` if this store cannot hold vectors of ``dim`` (checked before
        an index writes anything)."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """A context in which all writes commit together (or roll back on error/crash)."""

    @abstractmethod
    def create_space(self, space: str, dim: int) -> None:
        """Add an empty vector space (an existing one with that name is replaced)."""

    @abstractmethod
    def drop_space(self, space: str) -> None:
        """Remove a vector space and its vectors (no error if it is absent)."""

    @abstractmethod
    def spaces(self) -> list[str]:
        """Names of the vector spaces."""

    @abstractmethod
    def upsert(self, documents: Sequence[Document], vectors: Mapping[str, np.ndarray]) -> None:
        """Insert or replace ``documents`` with one vector per document in each space."""

    @abstractmethod
    def set_vectors(self, space: str, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Set the vectors of existing documents in one space (used to add a space)."""

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> int:
        """Delete documents (and their vectors); returns how many existed."""

    @abstractmethod
    def get(self, ids: Sequence[str]) -> list[Document | None]:
        """The documents with these ids, ``None`` where absent, in the given order."""

    @abstractmethod
    def get_vectors(self, space: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of ``ids`` in ``space`` (absent ids are left out)."""

    @abstractmethod
    def iter_documents(self, batch_size: int = 256) -> Iterator[list[Document]]:
        """All documents, in batches."""

    @abstractmethod
    def search(self, space: str, vector: np.ndarray, k: int, filter: Filter | None = None) -> list[Hit]:
        """The ``k`` documents closest to ``vector`` in ``space`` that match ``filter``."""

    @abstractmethod
    def index_field(self, field: str, kind: str = "keyword") -> None:
        """Index the metadata ``field`` (dotted path) for filters, stored documents included;
        ``kind`` is one of ``FIELD_KINDS``. Indexing changes no result, only speed. Indexing
        an indexed field again with another kind changes its kind."""

    @abstractmethod
    def indexed_fields(self) -> dict[str, str]:
        """The indexed metadata fields and their kinds."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of documents."""

    @abstractmethod
    def close(self) -> None:
        """Persist what is pending and release files."""
