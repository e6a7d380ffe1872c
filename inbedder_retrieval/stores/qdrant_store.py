"""Qdrant store: one collection per index, one named vector per instruction.

Embedded local mode by default (``path=``, or ``location=":memory:"``); a server or
cluster with ``url=`` (and ``api_key=``) through the same code. Qdrant accepts only
unsigned integer or UUID point ids, so a document id maps to ``uuid5(namespace, id)`` and
the id itself is kept in the payload with the text and metadata.

Qdrant has no multi-operation transactions; ``transaction()`` keeps an undo journal in a
local folder: before a point is changed its previous state is appended (and synced) to
the journal; on error, or when a store finds a journal left by a killed writer, the
journal is replayed backwards, so the collection returns to its state before the
transaction.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IndexLockedError
from .base import Document, Filter, Hit, VectorStore
from .filters import to_qdrant

NAMESPACE = uuid.UUID("8a4cb5a4-4d1f-5b6e-9c55-1c7c2b7a6f10")
JOURNAL = "undo-journal.jsonl"


def point_id(doc_id: str) -> str:
    """The Qdrant point id of a document id."""
    return str(uuid.uuid5(NAMESPACE, doc_id))


def _qdrant():
    try:
        from qdrant_client import QdrantClient, models
    except ImportError as error:  # optional dependency
        raise ImportError("The Qdrant store needs qdrant-client: pip install 'inbedder-retrieval[qdrant]'") from error
    return QdrantClient, models


class QdrantStore(VectorStore):
    """Documents as Qdrant points with one named vector per space.

    Args:
        journal_dir: local folder for the undo journal (and, without ``url``/``location``,
            the embedded storage under ``journal_dir / "qdrant"``).
        collection: collection name.
        url, api_key: a Qdrant server or cluster (the key is never written to disk).
        location: ``":memory:"`` for a throw-away embedded store.
    """

    backend = "qdrant"

    def __init__(self, journal_dir: str | Path, *, collection: str = "inbedder", url: str | None = None,
                 api_key: str | None = None, location: str | None = None) -> None:
        QdrantClient, self.models = _qdrant()
        self.folder = Path(journal_dir)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.collection = collection
        if url or location:
            self.client = QdrantClient(url=url, api_key=api_key, location=location)
        else:
            try:
                self.client = QdrantClient(path=str(self.folder / "qdrant"))
            except RuntimeError as error:
                raise IndexLockedError(
                    f"{self.folder / 'qdrant'} is open in another process: embedded Qdrant allows one process "
                    "per folder; use a Qdrant server (url=...) for concurrent access"
                ) from error
        if not self.client.collection_exists(collection):
            self.client.create_collection(collection, vectors_config={})
        self._journal: Any = None
        self._roll_back()  # a journal left by a killed writer

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._journal is not None:  # nested: the outer transaction owns the journal
            yield
            return
        self._journal = open(self.folder / JOURNAL, "a", encoding="utf-8")
        try:
            yield
        except BaseException:
            self._journal.close()
            self._journal = None
            self._roll_back()
            raise
        self._journal.close()
        self._journal = None
        (self.folder / JOURNAL).unlink()

    def _record(self, entry: dict[str, Any]) -> None:
        if self._journal is None:
            return
        self._journal.write(json.dumps(entry) + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())

    def _record_points(self, ids: Sequence[str]) -> None:
        """Journal the current state of these documents (or their absence)."""
        if self._journal is None or not ids:
            return
        existing = {record.payload["id"]: record for record in self.client.retrieve(
            self.collection, [point_id(i) for i in ids], with_payload=True, with_vectors=True)}
        for doc_id in ids:
            record = existing.get(doc_id)
            self._record({"point": doc_id, "payload": record.payload if record else None,
                          "vector": record.vector if record else None})

    def _roll_back(self) -> None:
        file = self.folder / JOURNAL
        if not file.exists():
            return
        entries = []
        for line in file.read_text("utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:  # the last line of a killed writer: its change never ran
                break
        models = self.models
        for entry in reversed(entries):
            if "space" in entry:
                if entry["space"] in self.spaces():
                    self.client.delete_vector_name(self.collection, entry["space"])
            elif entry["payload"] is None:
                self.client.delete(self.collection, models.PointIdsList(points=[point_id(entry["point"])]))
            else:
                self.client.upsert(self.collection, [models.PointStruct(
                    id=point_id(entry["point"]), vector=entry["vector"], payload=entry["payload"])])
        file.unlink()

    # -- spaces ---------------------------------------------------------------------------
    def spaces(self) -> list[str]:
        vectors = self.client.get_collection(self.collection).config.params.vectors or {}
        return sorted(vectors) if isinstance(vectors, Mapping) else []

    def create_space(self, space: str, dim: int) -> None:
        self.drop_space(space)
        self._record({"space": space})
        models = self.models
        self.client.create_vector_name(self.collection, space, models.DenseVectorNameConfig(
            dense=models.DenseVectorConfig(size=int(dim), distance=models.Distance.COSINE)))

    def drop_space(self, space: str) -> None:
        if space in self.spaces():
            self.client.delete_vector_name(self.collection, space)

    def _dims(self) -> dict[str, int]:
        vectors = self.client.get_collection(self.collection).config.params.vectors or {}
        return {name: params.size for name, params in vectors.items()}

    # -- writes ---------------------------------------------------------------------------
    def upsert(self, documents: Sequence[Document], vectors: Mapping[str, np.ndarray]) -> None:
        dims = self._dims()
        if set(vectors) != set(dims):
            raise ValueError(f"upsert needs vectors for every space {sorted(dims)}, got {sorted(vectors)}")
        for space, matrix in vectors.items():
            if np.shape(matrix) != (len(documents), dims[space]):
                raise ValueError(f"space {space!r} needs a ({len(documents)}, {dims[space]}) matrix, got {np.shape(matrix)}")
        self._record_points([doc.id for doc in documents])
        points = [
            self.models.PointStruct(
                id=point_id(doc.id),
                vector={space: np.asarray(matrix[row], dtype="float32").tolist() for space, matrix in vectors.items()},
                payload={"id": doc.id, "text": doc.text, "metadata": dict(doc.metadata)},
            )
            for row, doc in enumerate(documents)
        ]
        self.client.upsert(self.collection, points)

    def set_vectors(self, space: str, ids: Sequence[str], vectors: np.ndarray) -> None:
        dim = self._dims()[space]
        if np.shape(vectors) != (len(ids), dim):
            raise ValueError(f"space {space!r} needs a ({len(ids)}, {dim}) matrix, got {np.shape(vectors)}")
        missing = [doc_id for doc_id, doc in zip(ids, self.get(ids)) if doc is None]
        if missing:
            raise KeyError(f"set_vectors: no documents with ids {missing[:5]}")
        self._record_points(list(ids))
        self.client.update_vectors(self.collection, [
            self.models.PointVectors(id=point_id(doc_id), vector={space: np.asarray(row, dtype="float32").tolist()})
            for doc_id, row in zip(ids, vectors)
        ])

    def delete(self, ids: Sequence[str]) -> int:
        ids = list(ids)
        present = [doc for doc in self.get(ids) if doc is not None]
        if present:
            self._record_points([doc.id for doc in present])
            self.client.delete(self.collection, self.models.PointIdsList(points=[point_id(doc.id) for doc in present]))
        return len(present)

    # -- reads ----------------------------------------------------------------------------
    @staticmethod
    def _document(payload: Mapping[str, Any]) -> Document:
        return Document(payload["id"], payload["text"], payload.get("metadata") or {})

    def get(self, ids: Sequence[str]) -> list[Document | None]:
        ids = list(ids)
        if not ids:
            return []
        found = {record.payload["id"]: self._document(record.payload)
                 for record in self.client.retrieve(self.collection, [point_id(i) for i in ids], with_payload=True)}
        return [found.get(doc_id) for doc_id in ids]

    def get_vectors(self, space: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        records = self.client.retrieve(self.collection, [point_id(i) for i in ids], with_payload=["id"], with_vectors=[space])
        return {record.payload["id"]: np.asarray(record.vector[space], dtype="float32")
                for record in records if record.vector and space in record.vector}

    def iter_documents(self, batch_size: int = 256) -> Iterator[list[Document]]:
        offset = None
        while True:
            records, offset = self.client.scroll(self.collection, limit=batch_size, offset=offset, with_payload=True)
            if records:
                yield [self._document(record.payload) for record in records]
            if offset is None:
                return

    def search(self, space: str, vector: np.ndarray, k: int, filter: Filter | None = None) -> list[Hit]:
        native = filter if isinstance(filter, self.models.Filter) or filter is None else to_qdrant(filter)
        points = self.client.query_points(
            self.collection, query=np.asarray(vector, dtype="float32").tolist(), using=space,
            query_filter=native, limit=k, with_payload=True,
        ).points
        return [Hit(p.payload["id"], p.payload["text"], p.payload.get("metadata") or {}, float(p.score)) for p in points]

    def __len__(self) -> int:
        return self.client.count(self.collection, exact=True).count

    def close(self) -> None:
        self.client.close()
