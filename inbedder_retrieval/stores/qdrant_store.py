"""Qdrant store: one collection (or embedded shard) per index, one named vector per instruction.

Two engines behind one store (``QdrantEngine``):

* embedded (no ``url``/``location``): Qdrant's own engine in-process through
  ``qdrant-edge-py`` (``qdrant_edge_engine.py``), in ``<folder>/edge``;
* ``url=`` (a server or cluster) and ``location=":memory:"``: ``qdrant-client``
  (``qdrant_client_engine.py``).

Folders written by earlier versions with qdrant-client's local mode (``<folder>/qdrant``,
points pickled in SQLite) are opened only with ``trust_index=True``: unpickling a file
from a shared folder can run arbitrary code.

Qdrant accepts only unsigned integer or UUID point ids, so a document id maps to
``uuid5(namespace, id)`` and the id itself is kept in the payload with the text and
metadata. Qdrant has no multi-operation transactions: ``transaction()`` keeps an undo
journal (``journal.py``) in which every write records the previous state of what it
changes before changing it; a write outside ``transaction()`` is a transaction of its own.

An embedded store also keeps ``state.json``: the number of points and of vectors per
space after the last commit, and a CRC-32 of every vector file. Opening compares it with
the shard, so shard files that lost data (the engine opens some damaged files as an empty
shard) or garbled vectors (the engine keeps no checksum of them) give ``CorruptIndexError``
instead of silently missing documents or wrong answers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import CorruptIndexError, UntrustedIndexError
from ..validation import check_ids, check_k
from .base import Document, Filter, Hit, VectorStore, check_field_kind
from .filters import QdrantTarget, check_field, to_qdrant
from .journal import Entry, UndoJournal

NAMESPACE = uuid.UUID("8a4cb5a4-4d1f-5b6e-9c55-1c7c2b7a6f10")
JOURNAL = "undo-journal.jsonl"
STATE = "state.json"
EDGE_DIR = "edge"
LEGACY_DIR = "qdrant"  # qdrant-client local mode (pickles)
METADATA = "metadata."  # payload key prefix of metadata fields


def point_id(doc_id: str) -> str:
    """The Qdrant point id of a document id."""
    return str(uuid.uuid5(NAMESPACE, doc_id))


@dataclass(frozen=True)
class PointState:
    """A point as the engines exchange it: id, payload (``None``: absent), named vectors."""

    id: str
    payload: Mapping[str, Any] | None
    vectors: Mapping[str, list[float]]


class QdrantEngine(Protocol):
    """What the store needs from a Qdrant binding (qdrant-edge or qdrant-client)."""

    where: str
    target: QdrantTarget
    native: type
    local: bool  # only this store's folder reaches the data (embedded): it keeps a stamp

    def dims(self) -> dict[str, int]: ...
    def create_vector(self, name: str, dim: int) -> None: ...
    def delete_vector(self, name: str) -> None: ...
    def retrieve(self, ids: Sequence[str], *, payload: bool | list[str] = True,
                 vectors: bool | list[str] = False) -> list[PointState]: ...
    def upsert(self, points: Sequence[PointState]) -> None: ...
    def update_vectors(self, name: str, rows: Sequence[tuple[str, list[float]]]) -> None: ...
    def delete(self, ids: Sequence[str]) -> None: ...
    def scroll(self, limit: int, offset: Any, *, vectors: bool | list[str] = False) -> tuple[list[PointState], Any]: ...
    def query(self, name: str, vector: list[float], k: int, native: Any) -> list[tuple[Mapping[str, Any], float]]: ...
    def count(self, vector: str | None = None) -> int: ...
    def create_field_index(self, key: str, kind: str) -> None: ...
    def delete_field_index(self, key: str) -> None: ...
    def field_indexes(self) -> dict[str, str]: ...
    def flush(self) -> None: ...
    def file_digests(self, spaces: Sequence[str], *, fresh: bool = False) -> dict[str, dict[str, int]]: ...
    def close(self) -> None: ...


def _engine(folder: Path, collection: str, *, create: bool, trust_index: bool, url: str | None,
            api_key: str | None, location: str | None, client_options: Mapping[str, int]) -> QdrantEngine:
    from .qdrant_client_engine import ClientEngine, check_client_options

    check_client_options(client_options)
    if url or location:
        return ClientEngine(collection, create=create, url=url, api_key=api_key, location=location,
                            **client_options)
    if client_options:
        raise ValueError(f"{', '.join(sorted(client_options))}: options of a Qdrant server or cluster (url=...) "
                         "or location=':memory:'; the embedded store has one shard and writes in-process")
    legacy = folder / LEGACY_DIR
    if not create and legacy.exists():
        if not trust_index:
            raise UntrustedIndexError(
                f"{legacy} was written by qdrant-client's local mode, which stores points as pickles: "
                "opening it would unpickle data from the folder, and a crafted file can run arbitrary code. "
                "If you made this index yourself, open it with trust_index=True (InstructionIndex.open(..., "
                "trust_index=True)); otherwise rebuild it (the embedded Qdrant backend now uses qdrant-edge, "
                "which writes no pickles)."
            )
        return ClientEngine(collection, create=False, path=legacy)
    from .qdrant_edge_engine import EdgeEngine

    return EdgeEngine(folder / EDGE_DIR, create=create)


class QdrantStore(VectorStore):
    """Documents as Qdrant points with one named vector per space.

    Args:
        folder: the store's folder: the undo journal and, when embedded, the shard.
        create: make a new store (a new shard or collection); otherwise open an existing
            one, and a missing one is ``CorruptIndexError``: opening never creates data.
        collection: collection name on a server.
        url, api_key: a Qdrant server or cluster (the key is never written to disk).
        location: ``":memory:"`` for a throw-away store.
        trust_index: allow opening a folder written by qdrant-client's local mode (pickles).
        shard_number, replication_factor, write_consistency_factor: the collection's cluster
            settings, passed to ``create_collection`` when the store creates it (a server or
            ``":memory:"``; the embedded engine has one shard).
        upload_batch_size, upload_parallel, upload_retries: writes to a server or ``":memory:"``
            go through qdrant-client's ``upload_points`` in batches of this size, from this many
            processes, each batch retried this many times (defaults 64, 1, 3).
    """

    backend = "qdrant"

    def __init__(self, folder: str | Path, *, create: bool = False, collection: str = "inbedder",
                 url: str | None = None, api_key: str | None = None, location: str | None = None,
                 trust_index: bool = False, **client_options: int) -> None:
        self.folder = Path(folder)
        if create:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.engine = _engine(self.folder, collection, create=create, trust_index=trust_index, url=url,
                              api_key=api_key, location=location, client_options=client_options)
        self._dims = self.engine.dims()
        self._journal = UndoJournal(self.folder / JOURNAL)
        self._stamp_before: dict[str, Any] | None = None  # set by replaying a journal's "before" entry
        self._journal.recover(self._undo)  # a journal left by a killed writer
        if self.engine.local:
            self._write_stamp() if create else self._check_stamp()

    # -- the stamp of an embedded store ---------------------------------------------------------
    def _stamp(self, without: str | None = None) -> dict[str, Any]:
        spaces = sorted(s for s in self._dims if s != without)
        return {"points": self.engine.count(), "vectors": {s: self.engine.count(s) for s in spaces},
                "dims": {s: self._dims[s] for s in spaces}}

    def _write_stamp(self, without: str | None = None) -> None:
        if self.engine.local:
            stamp = self._stamp(without)
            stamp["files"] = self.engine.file_digests(list(stamp["vectors"]))
            atomic_write_bytes(self.folder / STATE, json.dumps(stamp).encode())

    def _check_stamp(self) -> None:
        """Compare the shard with the stamp of the last commit (or, after a rollback, with
        the state the rolled-back journal started from), then record it."""
        recorded = self._stamp_before if self._stamp_before is not None else self._read_stamp()
        settled = self._settle_spaces(recorded)
        actual = self._check_counts(recorded)
        if self._stamp_before is not None:  # a rolled-back writer rewrote vectors: record them anew
            self._write_stamp()
        else:
            self._check_files(recorded.get("files", {}), [s for s in actual["vectors"] if s not in settled])

    def _read_stamp(self) -> dict[str, Any]:
        file = self.folder / STATE
        try:
            recorded = json.loads(file.read_text("utf-8"))
        except FileNotFoundError:
            raise CorruptIndexError(f"{file} is missing: the Qdrant shard cannot be checked without it") from None
        except (ValueError, UnicodeDecodeError) as error:
            raise CorruptIndexError(f"{file} is truncated or corrupted ({error})") from None
        if not isinstance(recorded, dict):
            raise CorruptIndexError(f"{file} is truncated or corrupted (not a JSON object)")
        return recorded

    def _check_counts(self, recorded: Mapping[str, Any]) -> dict[str, Any]:
        counts = {key: value for key, value in recorded.items() if key != "files"}
        actual = self._stamp()
        if counts != actual:
            raise CorruptIndexError(
                f"{self.engine.where} holds {actual} but {self.folder / STATE} recorded {counts} at the last "
                "commit: files of the Qdrant shard are damaged or were changed outside this library"
            )
        return actual

    def _check_files(self, recorded: Mapping[str, Mapping[str, int]], spaces: Sequence[str], *,
                     fresh: bool = False) -> None:
        """Compare the vector files of ``spaces`` with their checksums at the last commit
        (a stamp written before checksums existed records none)."""
        actual = self.engine.file_digests([s for s in spaces if s in recorded], fresh=fresh)
        for space, files in actual.items():
            for name, crc in recorded[space].items():
                if name not in files:
                    raise CorruptIndexError(f"{self.engine.where}/{name} is missing: {STATE} recorded it at the last commit")
                if files[name] != crc:
                    raise CorruptIndexError(
                        f"{self.engine.where}/{name} (vectors of space {space!r}) does not match: "
                        f"{self.folder / STATE} recorded another checksum at the last commit; files of the "
                        "Qdrant shard are damaged or were changed outside this library")

    def _settle_spaces(self, recorded: dict[str, Any]) -> set[str]:
        """Finish vector-name changes that qdrant-edge lost when its writer was killed;
        return the spaces dropped or created again.

        The stamp is written before a space is dropped and when a creation commits, so it
        names the committed spaces: one the shard has beyond them is dropped again, an
        empty one it lacks is created again. Missing vectors stay an error."""
        committed = recorded.get("vectors", {})
        dims = self._space_dims(refresh=True)
        for space in set(dims) - set(committed):
            self._delete_vector(space)
        for space in set(committed) - set(dims):
            if committed[space] == 0 and space in recorded.get("dims", {}):
                self._create_vector(space, recorded["dims"][space])
        settled = set(dims) ^ set(self._space_dims(refresh=True))
        if settled:
            self.engine.flush()
        return settled

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._journal.active:  # nested: the outer transaction owns the journal
            yield
            return
        self._journal.begin()
        try:
            if self.engine.local:
                self._journal.record({"before": self._stamp()})
            yield
            self.engine.flush()
            self._write_stamp()
        except BaseException:
            self._journal.roll_back(self._undo)
            raise
        self._journal.commit()

    def _record_points(self, pids: Sequence[str]) -> None:
        """Journal the current state of these points (or their absence)."""
        if not self._journal.active or not pids:
            return
        found = {p.id: p for p in self.engine.retrieve(pids, payload=True, vectors=True)}
        self._journal.record(*(
            {"point": pid, "payload": dict(found[pid].payload), "vectors": dict(found[pid].vectors)}
            if pid in found else {"point": pid, "payload": None, "vectors": None}
            for pid in pids
        ))

    def _undo(self, entries: list[Entry]) -> None:
        """Restore what ``entries`` (newest first) recorded, then persist it."""
        for entry in entries:
            self._undo_one(entry)
        self.engine.flush()

    def _undo_one(self, entry: Entry) -> None:
        if "before" in entry:  # the stamp the transaction started from
            self._stamp_before = entry["before"]
        elif "created" in entry:
            if entry["created"] in self._space_dims(refresh=True):
                self._delete_vector(entry["created"])
        elif "dropped" in entry:
            # The journal holds every point that had a vector of the space, so the space is made
            # anew and refilled; one that still exists may be half deleted (qdrant-edge does not
            # delete a vector name atomically, and writing to such a name fails).
            if entry["dropped"] in self._space_dims(refresh=True):
                self._delete_vector(entry["dropped"])
            self._create_vector(entry["dropped"], entry["dim"])
        elif "field" in entry:  # a payload index created: restore the previous one, or none
            self.engine.delete_field_index(entry["field"])
            if entry["kind"] is not None:
                self.engine.create_field_index(entry["field"], entry["kind"])
        elif entry["payload"] is None:
            self.engine.delete([entry["point"]])
        else:
            vectors = {k: v for k, v in entry["vectors"].items() if k in self._dims}
            self.engine.upsert([PointState(entry["point"], entry["payload"], vectors)])

    # -- spaces ---------------------------------------------------------------------------
    def _space_dims(self, refresh: bool = False) -> dict[str, int]:
        if refresh:
            self._dims = self.engine.dims()
        return self._dims

    def _create_vector(self, space: str, dim: int) -> None:
        self.engine.create_vector(space, dim)
        self._dims = {**self._dims, space: int(dim)}

    def _delete_vector(self, space: str) -> None:
        self.engine.delete_vector(space)
        self._dims = {k: v for k, v in self._dims.items() if k != space}

    def spaces(self) -> list[str]:
        return sorted(self._space_dims(refresh=True))

    def create_space(self, space: str, dim: int) -> None:
        with self.transaction():
            self.drop_space(space)
            self._journal.record({"created": space})
            self._create_vector(space, dim)

    def drop_space(self, space: str) -> None:
        """Remove a space. Inside a transaction every point holding a vector of it is
        journaled first (costly on a large space: the index drops spaces outside one)."""
        dims = self._space_dims(refresh=True)
        if space not in dims:
            return
        if not self._journal.active:  # nothing to undo: stamp the outcome, then drop
            self._write_stamp(without=space)
            self._delete_vector(space)
            self.engine.flush()
            return
        offset = None
        while True:
            points, offset = self.engine.scroll(512, offset, vectors=True)
            self._record_points([p.id for p in points if space in p.vectors])
            if offset is None:
                break
        self._journal.record({"dropped": space, "dim": dims[space]})
        self._delete_vector(space)

    # -- writes ---------------------------------------------------------------------------
    @staticmethod
    def _checked(space: str, matrix: np.ndarray, count: int, dim: int) -> np.ndarray:
        matrix = np.asarray(matrix, dtype="float32")
        if matrix.shape != (count, dim):
            raise ValueError(f"space {space!r} needs a ({count}, {dim}) matrix, got {matrix.shape}")
        if not np.isfinite(matrix).all():
            raise ValueError(f"space {space!r}: vectors must be finite (got NaN or infinity)")
        return matrix

    def upsert(self, documents: Sequence[Document], vectors: Mapping[str, np.ndarray]) -> None:
        with self.transaction():
            self._upsert(documents, vectors)

    def _upsert(self, documents: Sequence[Document], vectors: Mapping[str, np.ndarray]) -> None:
        check_ids([doc.id for doc in documents], "document ids")
        dims = self._space_dims(refresh=True)
        if set(vectors) != set(dims):
            raise ValueError(f"upsert needs vectors for every space {sorted(dims)}, got {sorted(vectors)}")
        matrices = {space: self._checked(space, m, len(documents), dims[space]) for space, m in vectors.items()}
        points = [
            PointState(point_id(doc.id), {"id": doc.id, "text": doc.text, "metadata": dict(doc.metadata)},
                       {space: matrix[row].tolist() for space, matrix in matrices.items()})
            for row, doc in enumerate(documents)
        ]
        self._record_points([p.id for p in points])
        if points:
            self.engine.upsert(points)

    def set_vectors(self, space: str, ids: Sequence[str], vectors: np.ndarray) -> None:
        with self.transaction():
            self._set_vectors(space, ids, vectors)

    def _set_vectors(self, space: str, ids: Sequence[str], vectors: np.ndarray) -> None:
        ids = check_ids(ids)
        dims = self._space_dims(refresh=True)
        if space not in dims:
            raise KeyError(f"no vector space {space!r}")
        matrix = self._checked(space, vectors, len(ids), dims[space])
        missing = [doc_id for doc_id, doc in zip(ids, self.get(ids)) if doc is None]
        if missing:
            raise KeyError(f"set_vectors: no documents with ids {missing[:5]}")
        pids = [point_id(doc_id) for doc_id in ids]
        self._record_points(pids)
        if pids:
            self.engine.update_vectors(space, list(zip(pids, matrix.tolist())))

    def delete(self, ids: Sequence[str]) -> int:
        present = [doc for doc in self.get(ids) if doc is not None]
        pids = list(dict.fromkeys(point_id(doc.id) for doc in present))
        if pids:
            with self.transaction():
                self._record_points(pids)
                self.engine.delete(pids)
        return len(pids)

    # -- indexed metadata fields ------------------------------------------------------------
    def index_field(self, field: str, kind: str = "keyword") -> None:
        """A payload index on ``metadata.<field>`` of type ``kind`` (Qdrant keeps one per
        field: conditions on values of other types are still answered, without it)."""
        key = METADATA + check_field(field)
        kind = check_field_kind(field, kind)
        with self.transaction():
            self._journal.record({"field": key, "kind": self.engine.field_indexes().get(key)})
            self.engine.create_field_index(key, kind)

    def indexed_fields(self) -> dict[str, str]:
        return {key[len(METADATA):]: kind for key, kind in sorted(self.engine.field_indexes().items())
                if key.startswith(METADATA)}

    # -- reads ----------------------------------------------------------------------------
    @staticmethod
    def _document(payload: Mapping[str, Any]) -> Document:
        return Document(payload["id"], payload["text"], payload.get("metadata") or {})

    def get(self, ids: Sequence[str]) -> list[Document | None]:
        ids = check_ids(ids)
        if not ids:
            return []
        found = {p.payload["id"]: self._document(p.payload)
                 for p in self.engine.retrieve(list(dict.fromkeys(map(point_id, ids))))}
        return [found.get(doc_id) for doc_id in ids]

    def get_vectors(self, space: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        ids = check_ids(ids)
        if not ids:
            return {}
        points = self.engine.retrieve([point_id(i) for i in ids], payload=["id"], vectors=[space])
        return {p.payload["id"]: np.asarray(p.vectors[space], dtype="float32") for p in points if space in p.vectors}

    def iter_documents(self, batch_size: int = 256) -> Iterator[list[Document]]:
        offset = None
        while True:
            points, offset = self.engine.scroll(batch_size, offset)
            if points:
                yield [self._document(p.payload) for p in points]
            if offset is None:
                return

    def search(self, space: str, vector: np.ndarray, k: int, filter: Filter | None = None) -> list[Hit]:
        k = check_k(k)
        if space not in self._dims and space not in self._space_dims(refresh=True):
            raise KeyError(f"no vector space {space!r}")
        engine = self.engine
        native = filter if filter is None or isinstance(filter, engine.native) else to_qdrant(filter, engine.target, METADATA)
        hits = engine.query(space, np.asarray(vector, dtype="float32").tolist(), k, native)
        return [Hit(p["id"], p["text"], p.get("metadata") or {}, score) for p, score in hits]

    def verify(self) -> dict[str, Any]:
        """Check the shard against the last commit's stamp, re-reading every vector file
        (embedded stores); raise ``CorruptIndexError`` naming a damaged file, else return
        the counts of documents and of vectors per space."""
        spaces = self.spaces()
        if self.engine.local:
            recorded = self._read_stamp()
            self._check_counts(recorded)
            self._check_files(recorded.get("files", {}), spaces, fresh=True)
        return {"documents": len(self), "spaces": {space: self.engine.count(space) for space in spaces}}

    def __len__(self) -> int:
        return self.engine.count()

    def close(self) -> None:
        self.engine.close()
