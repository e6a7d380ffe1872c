"""qdrant-client as the store's engine: a Qdrant server or cluster (``url=``), a throw-away
in-memory store (``location=":memory:"``), or, only when trusted, a folder written by
qdrant-client's local mode (which keeps points as pickles: opening one can run code).
"""

from __future__ import annotations

import pickle
import sqlite3
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import CorruptIndexError, IndexLockedError
from .qdrant_store import PointState


def _qdrant() -> tuple[Any, Any]:
    try:
        from qdrant_client import QdrantClient, models
    except ImportError as error:  # optional dependency
        raise ImportError("Qdrant servers need qdrant-client: pip install 'inbedder-retrieval[qdrant]'") from error
    return QdrantClient, models


#: store options of a server-backed store: collection settings (passed to ``create_collection``)
COLLECTION_OPTIONS = ("shard_number", "replication_factor", "write_consistency_factor")
#: store option -> ``upload_points`` argument, and its default
UPLOAD_OPTIONS = {"upload_batch_size": ("batch_size", 64), "upload_parallel": ("parallel", 1),
                  "upload_retries": ("max_retries", 3)}


def check_client_options(options: Mapping[str, Any]) -> None:
    """Known names, positive integers (retries: >= 0); a ValueError names the bad one."""
    for name, value in options.items():
        if name not in COLLECTION_OPTIONS and name not in UPLOAD_OPTIONS:
            known = ", ".join(("url", "api_key", "location", "collection", *COLLECTION_OPTIONS, *UPLOAD_OPTIONS))
            raise ValueError(f"Unknown Qdrant store option {name!r}; known: {known}")
        least = 0 if name == "upload_retries" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"Qdrant store option {name} must be an integer >= {least}, got {value!r}")


@contextmanager
def _quiet_local_mode() -> Iterator[None]:
    """Silence local mode's warning that payload indexes have no effect there (documented)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)
        yield


class ClientTarget:
    """qdrant-client's filter classes (see ``filters.QdrantTarget``)."""

    def __init__(self, models: Any) -> None:
        self.models = models

    def equals(self, key: str, value: str | bool) -> Any:
        return self.models.FieldCondition(key=key, match=self.models.MatchValue(value=value))

    def range(self, key: str, bounds: Mapping[str, float]) -> Any:
        return self.models.FieldCondition(key=key, range=self.models.Range(**bounds))

    def filter(self, must: list[Any] | None = None, should: list[Any] | None = None,
               must_not: list[Any] | None = None) -> Any:
        return self.models.Filter(must=must, should=should, must_not=must_not)


class ClientEngine:
    """The store's engine over one collection reached through qdrant-client.

    Args:
        collection: the collection name.
        url, api_key: a server or cluster; location: ``":memory:"``; path: a trusted
            local-mode folder.
        create: create the collection (it must not exist on a server); otherwise it must.
        options: ``COLLECTION_OPTIONS`` for a new collection and ``UPLOAD_OPTIONS`` for writes
            (checked by the store with ``check_client_options``).
    """

    #: a server is shared: other processes may write, so the store keeps no stamp of it
    local = False

    def __init__(self, collection: str, *, create: bool, url: str | None = None, api_key: str | None = None,
                 location: str | None = None, path: Path | None = None, **options: int) -> None:
        QdrantClient, self.models = _qdrant()
        self.upload = {argument: options.get(name, default) for name, (argument, default) in UPLOAD_OPTIONS.items()}
        self.collection = collection
        self.where = url or location or str(path)
        self.target = ClientTarget(self.models)
        self.native = self.models.Filter
        if path is not None:
            self.client = self._local(QdrantClient, path)
        else:
            self.client = QdrantClient(url=url, api_key=api_key, location=location)
        exists = self.client.collection_exists(collection)
        if create and exists and location is None:
            raise FileExistsError(f"Qdrant collection {collection!r} already exists at {self.where}; "
                                  "pass another collection= or delete it")
        if not exists:
            if not (create or location == ":memory:"):
                raise CorruptIndexError(f"Qdrant collection {collection!r} does not exist at {self.where}")
            self.client.create_collection(collection, vectors_config={},
                                          **{name: options[name] for name in COLLECTION_OPTIONS if name in options})

    @staticmethod
    def _local(QdrantClient: Any, path: Path) -> Any:
        if not path.is_dir():
            raise CorruptIndexError(f"{path} is missing: the index's Qdrant storage is gone")
        try:
            return QdrantClient(path=str(path))
        except RuntimeError as error:
            raise IndexLockedError(
                f"{path} is open in another process: embedded Qdrant allows one process per folder; "
                "use a Qdrant server (url=...) for concurrent access"
            ) from error
        except (sqlite3.DatabaseError, pickle.UnpicklingError, ValueError, EOFError) as error:
            raise CorruptIndexError(f"{path} holds unreadable Qdrant local-mode data: {error}") from None

    # -- vector names ----------------------------------------------------------------------------
    def dims(self) -> dict[str, int]:
        vectors = self.client.get_collection(self.collection).config.params.vectors or {}
        return {name: params.size for name, params in vectors.items()} if isinstance(vectors, Mapping) else {}

    def create_vector(self, name: str, dim: int) -> None:
        models = self.models
        self.client.create_vector_name(self.collection, name, models.DenseVectorNameConfig(
            dense=models.DenseVectorConfig(size=int(dim), distance=models.Distance.COSINE)))

    def delete_vector(self, name: str) -> None:
        self.client.delete_vector_name(self.collection, name)

    # -- points ------------------------------------------------------------------------------------
    @staticmethod
    def _state(record: Any) -> PointState:
        return PointState(str(record.id), record.payload, dict(record.vector or {}))

    def retrieve(self, ids: Sequence[str], *, payload: bool | list[str] = True,
                 vectors: bool | list[str] = False) -> list[PointState]:
        records = self.client.retrieve(self.collection, list(ids), with_payload=payload, with_vectors=vectors)
        return [self._state(r) for r in records]

    def upsert(self, points: Sequence[PointState]) -> None:
        """Batched (``upload_batch_size``), from ``upload_parallel`` processes, each batch retried
        ``upload_retries`` times; returns once the server has applied every batch."""
        self.client.upload_points(self.collection, [
            self.models.PointStruct(id=p.id, vector=dict(p.vectors), payload=p.payload) for p in points],
            wait=True, **self.upload)

    def update_vectors(self, name: str, rows: Sequence[tuple[str, list[float]]]) -> None:
        self.client.update_vectors(self.collection, [
            self.models.PointVectors(id=pid, vector={name: vector}) for pid, vector in rows])

    def delete(self, ids: Sequence[str]) -> None:
        self.client.delete(self.collection, self.models.PointIdsList(points=list(ids)))

    def scroll(self, limit: int, offset: Any, *, vectors: bool | list[str] = False) -> tuple[list[PointState], Any]:
        records, offset = self.client.scroll(self.collection, limit=limit, offset=offset, with_payload=True,
                                             with_vectors=vectors)
        return [self._state(r) for r in records], offset

    def query(self, name: str, vector: list[float], k: int, native: Any) -> list[tuple[Mapping[str, Any], float]]:
        points = self.client.query_points(self.collection, query=vector, using=name, query_filter=native,
                                          limit=k, with_payload=True).points
        return [(p.payload, float(p.score)) for p in points]

    def count(self, vector: str | None = None) -> int:
        """Number of points (holding a ``vector`` of that name)."""
        only = None if vector is None else self.models.Filter(must=[self.models.HasVectorCondition(has_vector=vector)])
        return self.client.count(self.collection, count_filter=only, exact=True).count

    # -- payload indexes ---------------------------------------------------------------------------
    def _schemas(self) -> dict[str, Any]:
        """Payload index type of each field kind (see ``EdgeEngine._schemas``)."""
        types = self.models.PayloadSchemaType
        return {"keyword": types.KEYWORD, "number": types.FLOAT, "bool": types.BOOL}

    def create_field_index(self, key: str, kind: str) -> None:
        """A payload index on a server; qdrant-client's local modes keep none (and warn so)."""
        with _quiet_local_mode():
            self.client.create_payload_index(self.collection, field_name=key, field_schema=self._schemas()[kind])

    def delete_field_index(self, key: str) -> None:
        with _quiet_local_mode():
            self.client.delete_payload_index(self.collection, key)

    def field_indexes(self) -> dict[str, str]:
        """Payload key -> kind (an index type made outside this library: its type name)."""
        kinds = {schema.value: kind for kind, schema in self._schemas().items()}
        schema = self.client.get_collection(self.collection).payload_schema or {}
        return {key: kinds.get(str(getattr(info.data_type, "value", info.data_type)), str(info.data_type))
                for key, info in schema.items()}

    def flush(self) -> None:
        """qdrant-client commits every call (local mode) or the server does."""

    def file_digests(self, spaces: Sequence[str], *, fresh: bool = False) -> dict[str, dict[str, int]]:
        """Nothing to checksum here: the store keeps no stamp of a non-local engine."""
        return {}

    def close(self) -> None:
        self.client.close()
