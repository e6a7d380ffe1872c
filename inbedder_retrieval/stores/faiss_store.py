"""Embedded store: documents and vectors in SQLite, one FAISS index per space.

SQLite is the truth and makes every write transaction atomic (a killed writer leaves the
last committed state). The FAISS indexes are derived from it: saved after each commit as
FAISS files (never pickle), recorded in ``state.json`` with the SQLite generation they
reflect and their SHA-256. A file that is stale, missing or whose hash does not match is
rebuilt from SQLite (with a warning), so damage to a derived file never gives wrong
answers. A missing, empty or unreadable database raises ``CorruptIndexError`` naming it;
opening an existing store never writes.

Readers never take SQLite's write lock and never see a file vanish: a save keeps the
files of the previous state beside the new ones (a reader that read the old
``state.json`` still finds them), and a reader that misses a file anyway re-reads the
state or rebuilds from SQLite.

Ids: every document version gets a new integer ``row`` (SQLite AUTOINCREMENT: never
reused); FAISS indexes are wrapped in ``IndexIDMap2`` keyed by it, so a search result
maps straight to its document. Replacing or deleting a document removes its row from
FAISS where the index supports ``remove_ids``; otherwise (HNSW) the row becomes a
tombstone that search skips (its document is gone), and the space is rebuilt when
tombstones exceed a quarter of it.

Indexed metadata fields (``index_field``): the table ``field_values`` holds each indexed
field's scalars by row (see ``filters.FIELD_TABLES``), written in the transaction of every
upsert and delete, so filters on those fields are look-ups, not scans. A store made before
indexed fields has no such table (opening never writes): ``index_field`` adds it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import CorruptIndexError
from ..validation import check_ids, check_k
from .base import Document, Filter, Hit, VectorStore, check_field_kind
from .filters import (ALL_ROWS, FIELD_TABLES, INDEX_VALUES, LISTED_ROWS, MISSING_FIELD_VALUES, STRAY_FIELD_VALUES,
                      check_field, to_sql)

logger = logging.getLogger(__name__)

DB_FILE = "store.sqlite"
FAISS_DIR = "faiss"
STATE_FILE = "state.json"
METRICS = ("ip", "l2")
COMPACT_RATIO = 0.25
MMAP_BYTES = 1 << 30
TABLES = frozenset({"meta", "documents", "spaces", "vectors"})
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS spaces (name TEXT PRIMARY KEY, dim INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (
    space TEXT NOT NULL,
    row INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (space, row)
);
CREATE INDEX IF NOT EXISTS vectors_by_row ON vectors (row);
INSERT OR IGNORE INTO meta VALUES ('generation', '0');
"""


def _damage_is_corruption(method: Callable[..., Any]) -> Callable[..., Any]:
    """Report SQLite's signs of a damaged file as ``CorruptIndexError`` naming it (a locked
    or busy database is not damage and passes through)."""

    @functools.wraps(method)
    def checked(self: FaissStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.OperationalError as error:
            if "no such" not in str(error):
                raise
            raise CorruptIndexError(f"{self.path / DB_FILE} is damaged: {error}") from error
        except sqlite3.DatabaseError as error:
            raise CorruptIndexError(f"{self.path / DB_FILE} is damaged: {error}") from error

    return checked


def _faiss():
    try:
        import faiss
    except ImportError as error:  # optional dependency
        raise ImportError("The FAISS store needs faiss: pip install 'inbedder-retrieval[faiss]'") from error
    return faiss


class FaissStore(VectorStore):
    """FAISS indexes over SQLite documents, in one folder.

    Args:
        path: the folder.
        create: make a new store (its database must not exist yet); else open an existing
            one, which never writes.
        factory: a FAISS ``index_factory`` string: "Flat" (exact, default), "HNSW32",
            "IVF256,Flat", ... Indexes that need training are trained on the space's
            vectors when they are (re)built.
        metric: "ip" (inner product; cosine on unit vectors, the default) or "l2".
        use_gpu: search on a GPU copy of each index (default: when faiss sees a GPU).
            Filtered searches and index types without a GPU version run on the CPU.
    """

    backend = "faiss"

    def __init__(self, path: str | Path, *, factory: str = "Flat", metric: str = "ip", use_gpu: bool | None = None,
                 create: bool = False) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.faiss = _faiss()
        self.path = Path(path)
        self.factory = factory
        self.metric = metric
        self._db = self._connect(self.path / DB_FILE, create)
        self._lock = threading.RLock()
        self._depth = 0
        self._pending: list[tuple[str, str, Any]] = []
        self._indexes: dict[str, Any] = {}
        self._dead: dict[str, int] = {}
        self._files: dict[str, dict[str, Any]] = {}
        self._generation = -1
        gpus = self.faiss.get_num_gpus() if hasattr(self.faiss, "StandardGpuResources") else 0
        self._gpu_resources = self.faiss.StandardGpuResources() if (use_gpu is None and gpus) or use_gpu else None
        self._gpu_copies: dict[str, Any] = {}
        self._data_version = -1
        self._load()

    def _connect(self, db_path: Path, create: bool) -> sqlite3.Connection:
        """Open the database; create it only when asked.

        Opening an existing database runs no write (readers never wait for a writer) and
        checks that it is an index database."""
        if create:
            if db_path.exists():
                raise FileExistsError(f"{db_path} already exists: open the store instead of creating it")
            self.path.mkdir(parents=True, exist_ok=True)
        elif not db_path.is_file():
            raise CorruptIndexError(f"{db_path} is missing: the index's documents and vectors are gone")
        elif db_path.stat().st_size == 0:
            raise CorruptIndexError(f"{db_path} is empty (0 bytes): the index's documents and vectors are gone")
        try:
            db = sqlite3.connect(f"file:{db_path}?mode={'rwc' if create else 'rw'}", uri=True,
                                 isolation_level=None, check_same_thread=False, timeout=60)
            if create:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
                for statement in FIELD_TABLES:
                    db.execute(statement)
            db.execute(f"PRAGMA mmap_size={MMAP_BYTES}")  # look-ups read pages without syscalls
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not TABLES <= tables or db.execute("SELECT value FROM meta WHERE key='generation'").fetchone() is None:
                raise sqlite3.DatabaseError(f"tables missing: {', '.join(sorted(TABLES - tables)) or 'meta.generation'}")
        except sqlite3.DatabaseError as error:
            raise CorruptIndexError(f"{db_path} is not a readable index database: {error}") from error
        return db

    def check_dim(self, dim: int) -> None:
        """Raise ``ValueError`` if this store's factory cannot index vectors of ``dim``."""
        self._new_index(dim)

    # -- loading and saving -------------------------------------------------------------
    def _db_generation(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])

    def _space_dims(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT name, dim FROM spaces ORDER BY name"))

    @_damage_is_corruption
    def _load(self) -> None:
        """Load the saved FAISS files that match the database, rebuild the others from it.

        Runs in one read transaction, so the generation and the vectors agree; the new
        state replaces the old one only when all of it is loaded."""
        self._db.execute("BEGIN")
        try:
            self._load_snapshot()
        finally:
            self._db.execute("COMMIT")

    def _load_snapshot(self) -> None:
        """``_load`` inside an open transaction."""
        generation = self._db_generation()
        state = self._read_state()
        saved = state.get("spaces", {}) if state.get("generation") == generation else {}
        indexes, dead, files = {}, {}, {}
        for space, dim in self._space_dims().items():
            index = self._read_saved(space, dim, saved.get(space))
            if index is None:
                indexes[space], dead[space] = self._build(space, dim), 0
            else:
                indexes[space], dead[space], files[space] = index, index.ntotal - self._live_count(space), saved[space]
        self._indexes, self._dead, self._files, self._generation = indexes, dead, files, generation
        self._gpu_copies.clear()

    def _read_state(self) -> dict[str, Any]:
        """``state.json``; an unreadable or old-format one counts as absent (everything is rebuilt)."""
        file = self.path / FAISS_DIR / STATE_FILE
        try:
            state = json.loads(file.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            logger.warning("%s is unreadable (%s): rebuilding the FAISS indexes from %s", file, error, DB_FILE)
            return {}
        spaces = state.get("spaces") if isinstance(state, dict) else None
        if not isinstance(spaces, dict) or not all(
                isinstance(entry, dict) and isinstance(entry.get("file"), str) and isinstance(entry.get("sha256"), str)
                for entry in spaces.values()):
            return {}
        return state

    def _read_saved(self, space: str, dim: int, entry: dict[str, Any] | None) -> Any:
        """The saved index of ``space`` if its file is intact, else ``None`` (with a warning)."""
        if entry is None:
            return None
        file = self.path / FAISS_DIR / entry["file"]
        try:
            data = file.read_bytes()
        except OSError as error:
            logger.warning("%s cannot be read (%s): rebuilding it from %s", file, error, DB_FILE)
            return None
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            logger.warning("%s is damaged (checksum mismatch): rebuilding it from %s", file, DB_FILE)
            return None
        try:
            index = self.faiss.deserialize_index(np.frombuffer(data, dtype="uint8"))
        except RuntimeError as error:
            logger.warning("%s is unreadable (%s): rebuilding it from %s", file, error, DB_FILE)
            return None
        if index.d != dim:
            logger.warning("%s has dimension %d, the database says %d: rebuilding it", file, index.d, dim)
            return None
        return index

    def _new_index(self, dim: int) -> Any:
        faiss = self.faiss
        metric = faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2
        try:
            return faiss.IndexIDMap2(faiss.index_factory(int(dim), self.factory, metric))
        except RuntimeError as error:
            raise ValueError(f"FAISS cannot build index factory {self.factory!r} for dimension {dim}: "
                             f"{str(error).strip().splitlines()[-1]}") from None

    def _build(self, space: str, dim: int) -> Any:
        """The space's FAISS index built from the database (without tombstones)."""
        index = self._new_index(dim)
        if not index.is_trained:
            vectors = [np.frombuffer(blob, dtype="<f4") for (blob,) in self._db.execute(
                "SELECT vector FROM vectors WHERE space=?", (space,))]
            if vectors:
                index.train(np.stack(vectors))
        rows = self._db.execute("SELECT row, vector FROM vectors WHERE space=? ORDER BY row", (space,))
        while batch := rows.fetchmany(4096):
            if not index.is_trained:
                break
            ids = np.array([row for row, _ in batch], dtype="int64")
            index.add_with_ids(np.stack([np.frombuffer(blob, dtype="<f4") for _, blob in batch]), ids)
        return index

    def _rebuild(self, space: str, dim: int) -> None:
        self._indexes[space] = self._build(space, dim)
        self._dead[space] = 0
        self._files.pop(space, None)

    def save(self) -> None:
        """Write the FAISS files of the spaces that changed, then the state, each atomically.

        Called after every commit (by the writer, under the index's write lock). Spaces
        untouched since their last save keep their file. Files of the previous state stay
        (a reader may have just read it); older ones and ``.partial`` leftovers of a killed
        save are removed."""
        with self._lock:
            folder = self.path / FAISS_DIR
            folder.mkdir(exist_ok=True)
            previous = {entry["file"] for entry in self._read_state().get("spaces", {}).values()}
            files = {}
            for space, index in sorted(self._indexes.items()):
                entry = self._files.get(space)
                if entry is None or not (folder / entry["file"]).exists():
                    data = self.faiss.serialize_index(index).tobytes()
                    entry = {"file": f"{space}-{self._generation}.faiss", "sha256": hashlib.sha256(data).hexdigest()}
                    atomic_write_bytes(folder / entry["file"], data)
                files[space] = entry
            state = {"generation": self._generation, "spaces": files}
            atomic_write_bytes(folder / STATE_FILE, json.dumps(state, indent=1).encode())
            keep = previous | {entry["file"] for entry in files.values()}
            for old in [*folder.glob("*.faiss"), *folder.glob(".*.partial")]:
                if old.name not in keep:
                    old.unlink(missing_ok=True)
            self._files = files

    def _refresh(self) -> None:
        """Reload if another process committed since we last looked.

        ``PRAGMA data_version`` changes only when another connection commits, so the common
        case costs one cheap pragma and no table read.
        """
        if self._depth:
            return
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._data_version = version
            if self._db_generation() != self._generation:
                self._load()

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                if self._db_generation() != self._generation:  # another process committed
                    self._load_snapshot()
                yield
                self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._pending.clear()
                raise
            finally:
                self._depth = 0
            self._after_commit()

    def _after_commit(self) -> None:
        """Mirror the commit into memory and save the FAISS files. The write is committed:
        a failure here is logged and repaired from SQLite, never raised as a failed write."""
        try:
            self._generation = self._db_generation()
            self._apply_pending()
        except (RuntimeError, MemoryError, sqlite3.Error):  # memory no longer matches: the next read reloads
            logger.exception("Mirroring a committed write into the FAISS indexes failed; reloading from %s", DB_FILE)
            self._generation = self._data_version = -1
            return
        try:
            self.save()
        except (OSError, RuntimeError) as error:
            logger.warning("The write is committed, but saving the FAISS files of %s failed (%s); "
                           "they are rebuilt from %s when the store is next opened", self.path, error, DB_FILE)

    def _apply_pending(self) -> None:
        """Mirror the committed changes into the in-memory FAISS indexes."""
        pending, self._pending = self._pending, []
        self._gpu_copies.clear()
        stale: dict[str, set[int]] = {}  # rows an index could not remove (HNSW)
        rebuild: set[str] = set()
        for kind, space, payload in pending:
            self._files.pop(space, None)  # its saved file no longer matches
            if kind == "create":
                self._indexes[space] = self._new_index(payload)
                self._dead[space] = 0
            elif kind == "drop":
                self._indexes.pop(space, None)
                self._dead.pop(space, None)
            elif kind == "remove":
                if not self._remove(space, payload):
                    stale.setdefault(space, set()).update(payload)
            elif stale.get(space, set()).intersection(payload):
                rebuild.add(space)  # a row would have a stale and a fresh vector
            elif self._indexes[space].is_trained:  # read the committed rows back in chunks
                self._add_rows(space, payload)
        for space, index in list(self._indexes.items()):
            if space in rebuild or not index.is_trained or self._dead[space] > COMPACT_RATIO * max(index.ntotal, 1):
                self._rebuild(space, index.d)

    def _add_rows(self, space: str, rows: list[int]) -> None:
        index = self._indexes[space]
        for start in range(0, len(rows), 4096):
            chunk = rows[start : start + 4096]
            found = self._db.execute(
                f"SELECT row, vector FROM vectors WHERE space=? AND row IN ({','.join('?' * len(chunk))})",
                [space, *chunk],
            ).fetchall()
            if found:
                index.add_with_ids(
                    np.stack([np.frombuffer(blob, dtype="<f4") for _, blob in found]),
                    np.array([row for row, _ in found], dtype="int64"),
                )

    def _remove(self, space: str, rows: list[int]) -> bool:
        """Remove rows from the space's index; False if it cannot (they become tombstones)."""
        index = self._indexes.get(space)
        if index is None or not rows:
            return True
        try:
            index.remove_ids(np.array(rows, dtype="int64"))
        except RuntimeError:  # HNSW cannot remove: search skips rows whose document is gone
            self._dead[space] += len(rows)
            return False
        return True

    # -- writes ---------------------------------------------------------------------------
    @_damage_is_corruption
    def create_space(self, space: str, dim: int) -> None:
        with self.transaction():
            self._drop(space)
            self._db.execute("INSERT INTO spaces VALUES (?, ?)", (space, int(dim)))
            self._pending.append(("create", space, int(dim)))

    @_damage_is_corruption
    def drop_space(self, space: str) -> None:
        with self.transaction():
            self._drop(space)

    def _drop(self, space: str) -> None:
        self._db.execute("DELETE FROM vectors WHERE space=?", (space,))
        self._db.execute("DELETE FROM spaces WHERE name=?", (space,))
        self._pending.append(("drop", space, None))

    def _rows_of(self, ids: Sequence[str]) -> dict[str, int]:
        """Current row of each stored document id (absent ids are left out)."""
        found: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            found.update(self._db.execute(
                f"SELECT id, row FROM documents WHERE id IN ({','.join('?' * len(chunk))})", chunk))
        return found

    @_damage_is_corruption
    def upsert(self, documents: Sequence[Document], vectors: Mapping[str, np.ndarray]) -> None:
        with self.transaction():
            dims = self._space_dims()
            if set(vectors) != set(dims):
                raise ValueError(f"upsert needs vectors for every space {sorted(dims)}, got {sorted(vectors)}")
            matrices = {space: self._checked(space, matrix, len(documents), dims[space]) for space, matrix in vectors.items()}
            self._delete_rows(list(self._rows_of([doc.id for doc in documents]).values()))
            rows = [
                self._db.execute(
                    "INSERT INTO documents (id, text, metadata) VALUES (?, ?, ?)",
                    (doc.id, doc.text, json.dumps(dict(doc.metadata))),
                ).lastrowid
                for doc in documents
            ]
            for space, matrix in matrices.items():
                self._insert_vectors(space, rows, matrix)
            self._index_rows(rows)

    @_damage_is_corruption
    def set_vectors(self, space: str, ids: Sequence[str], vectors: np.ndarray) -> None:
        ids = check_ids(ids)
        with self.transaction():
            matrix = self._checked(space, vectors, len(ids), self._space_dims()[space])
            known = self._rows_of(list(ids))
            missing = [doc_id for doc_id in ids if doc_id not in known]
            if missing:
                raise KeyError(f"set_vectors: no documents with ids {missing[:5]}")
            rows = [known[doc_id] for doc_id in ids]
            self._delete_vectors(rows, space)
            self._insert_vectors(space, rows, matrix)

    @staticmethod
    def _checked(space: str, matrix: np.ndarray, count: int, dim: int) -> np.ndarray:
        matrix = np.ascontiguousarray(matrix, dtype="<f4")
        if matrix.shape != (count, dim):
            raise ValueError(f"space {space!r} needs a ({count}, {dim}) matrix, got {matrix.shape}")
        return matrix

    def _insert_vectors(self, space: str, rows: list[int], matrix: np.ndarray) -> None:
        self._db.executemany(
            "INSERT INTO vectors (space, row, vector) VALUES (?, ?, ?)",
            [(space, row, vector.tobytes()) for row, vector in zip(rows, matrix)],
        )
        self._pending.append(("add", space, rows))

    def _delete_vectors(self, rows: list[int], space: str | None = None) -> None:
        """Delete the vectors of ``rows`` (in one space, or all) and queue their removal."""
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            where = f"row IN ({','.join('?' * len(chunk))})" + (" AND space=?" if space else "")
            params = [*chunk, space] if space else chunk
            by_space: dict[str, list[int]] = {}
            for row, name in self._db.execute(f"SELECT row, space FROM vectors WHERE {where}", params):
                by_space.setdefault(name, []).append(row)
            self._db.execute(f"DELETE FROM vectors WHERE {where}", params)
            for name, removed in by_space.items():
                self._pending.append(("remove", name, removed))

    def _delete_rows(self, rows: list[int]) -> None:
        self._delete_vectors(rows)
        indexed = bool(self._field_kinds())
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            marks = ','.join('?' * len(chunk))
            self._db.execute(f"DELETE FROM documents WHERE row IN ({marks})", chunk)
            if indexed:
                self._db.execute(f"DELETE FROM field_values WHERE row IN ({marks})", chunk)

    # -- indexed metadata fields ----------------------------------------------------------
    def _field_kinds(self) -> dict[str, str]:
        """Indexed fields and their kinds; none in a store made before indexed fields
        existed (it has no side table until ``index_field`` adds one)."""
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='indexed_fields'").fetchone() is None:
            return {}
        return dict(self._db.execute("SELECT field, kind FROM indexed_fields ORDER BY field"))

    def _index_rows(self, rows: list[int]) -> None:
        """Record the indexed fields' values of the documents just written at ``rows``."""
        fields = self._field_kinds()
        if fields and rows:
            listed = json.dumps(rows)
            self._db.executemany(INDEX_VALUES.format(rows=LISTED_ROWS), [(f, "$." + f, listed) for f in fields])

    @_damage_is_corruption
    def index_field(self, field: str, kind: str = "keyword") -> None:
        """Index ``field`` for filters (every scalar of it, whatever ``kind``), stored
        documents included, in one write transaction: the side table is added here to a
        store made before indexed fields existed."""
        field = check_field(field)
        kind = check_field_kind(field, kind)
        with self.transaction():
            for statement in FIELD_TABLES:
                self._db.execute(statement)
            known = field in self._field_kinds()
            self._db.execute("INSERT OR REPLACE INTO indexed_fields VALUES (?, ?)", (field, kind))
            if not known:
                self._db.execute(INDEX_VALUES.format(rows=ALL_ROWS), (field, "$." + field))

    @_damage_is_corruption
    def indexed_fields(self) -> dict[str, str]:
        with self._lock:
            return self._field_kinds()

    @_damage_is_corruption
    def delete(self, ids: Sequence[str]) -> int:
        ids = check_ids(ids)
        if not ids:
            return 0
        with self.transaction():
            rows = list(self._rows_of(ids).values())
            self._delete_rows(rows)
            return len(rows)

    # -- reads ----------------------------------------------------------------------------
    @_damage_is_corruption
    def spaces(self) -> list[str]:
        with self._lock:
            return list(self._space_dims())

    @_damage_is_corruption
    def get(self, ids: Sequence[str]) -> list[Document | None]:
        ids = check_ids(ids)
        with self._lock:
            found = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = self._db.execute(
                    f"SELECT id, text, metadata FROM documents WHERE id IN ({','.join('?' * len(chunk))})", chunk
                )
                found.update({row[0]: Document(row[0], row[1], json.loads(row[2])) for row in rows})
        return [found.get(doc_id) for doc_id in ids]

    @_damage_is_corruption
    def get_vectors(self, space: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        ids = check_ids(ids)
        with self._lock:
            rows = self._db.execute(
                "SELECT d.id, v.vector FROM documents d JOIN vectors v ON v.row = d.row AND v.space = ? "
                f"WHERE d.id IN ({','.join('?' * len(ids))})",
                [space, *ids],
            )
            return {doc_id: np.frombuffer(blob, dtype="<f4").copy() for doc_id, blob in rows}

    def iter_documents(self, batch_size: int = 256) -> Iterator[list[Document]]:
        last = None
        while True:
            with self._lock:
                query = "SELECT id, text, metadata FROM documents"
                rows = self._db.execute(
                    query + (" WHERE id > ?" if last is not None else "") + " ORDER BY id LIMIT ?",
                    ([last] if last is not None else []) + [batch_size],
                ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [Document(row[0], row[1], json.loads(row[2])) for row in rows]

    def filter_query(self, filter: Filter) -> tuple[str, list[Any]]:
        """The SQL (and parameters) selecting the rows that match ``filter``: indexed fields
        are looked up in ``field_values``, others read from the JSON metadata."""
        where, values = to_sql(filter, "d.metadata", row="d.row", indexed=frozenset(self._field_kinds()))
        return f"SELECT d.row FROM documents d WHERE {where}", values

    def _live_count(self, space: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM vectors WHERE space=?", (space,)).fetchone()[0]

    @_damage_is_corruption
    def search(self, space: str, vector: np.ndarray, k: int, filter: Filter | None = None) -> list[Hit]:
        k = check_k(k)
        with self._lock:
            self._refresh()
            index = self._indexes[space]
            params = None
            if filter is not None:
                allowed = np.fromiter((row for (row,) in self._db.execute(*self.filter_query(filter))), dtype="int64")
                if not len(allowed):
                    return []
                params = self._search_parameters(index, self.faiss.IDSelectorBatch(allowed))
            fetch = min(k + self._dead[space], index.ntotal)
            if fetch <= 0:
                return []
            query = np.ascontiguousarray(vector, dtype="float32").reshape(1, -1)
            searcher = index if params is not None else self._on_gpu(space, index)
            scores, vids = searcher.search(query, fetch, params=params)
            scores, vids = scores[0].tolist(), vids[0].tolist()
            order = [vid for vid in vids if vid >= 0]
            if not order:
                return []
            rows = self._db.execute(
                f"SELECT row, id, text, metadata FROM documents WHERE row IN ({','.join('?' * len(order))})", order
            )
            found = {row[0]: row[1:] for row in rows}
        sign = 1.0 if self.metric == "ip" else -1.0
        hits = [
            Hit(found[vid][0], found[vid][1], json.loads(found[vid][2]), sign * float(score))
            for vid, score in zip(vids, scores)
            if vid in found
        ]
        return hits[:k]

    @_damage_is_corruption
    def verify(self) -> dict[str, Any]:
        """Check the whole store; raise ``CorruptIndexError`` naming what is damaged.

        SQLite keeps no page checksums, so damage inside ``store.sqlite`` shows only in a
        full check: ``PRAGMA integrity_check``, the indexed fields' side table against the
        documents' metadata, then every space's vector count against the documents and its
        FAISS index. Reads every page: seconds per GB."""
        db_path = self.path / DB_FILE
        with self._lock:
            self._refresh()
            try:
                problems = [row[0] for row in self._db.execute("PRAGMA integrity_check(20)")]
                if problems != ["ok"]:
                    raise CorruptIndexError(f"{db_path} is damaged: {'; '.join(problems[:5])}")
                self._check_field_values(db_path)
                documents = len(self)
                counts = {space: self._live_count(space) for space in self._space_dims()}
            except sqlite3.DatabaseError as error:
                raise CorruptIndexError(f"{db_path} is damaged: {error}") from error
            for space, count in counts.items():
                if count != documents:
                    raise CorruptIndexError(f"{db_path}: space {space!r} has {count} vectors for {documents} documents")
                index = self._indexes[space]
                if index.ntotal - self._dead[space] != count:
                    raise CorruptIndexError(f"the FAISS index of space {space!r} holds {index.ntotal - self._dead[space]} "
                                            f"live vectors, {db_path} {count}")
                self._compare_vectors(space, index)
        return {"documents": documents, "spaces": counts}

    def _check_field_values(self, db_path: Path) -> None:
        """Every indexed field's rows in ``field_values`` are exactly what the documents'
        metadata give (a filter on an indexed field reads only the side table)."""
        for field in self._field_kinds():
            params = (field, "$." + field)
            stray = self._db.execute(STRAY_FIELD_VALUES + " LIMIT 3", params).fetchall()
            missing = self._db.execute(MISSING_FIELD_VALUES + " LIMIT 3", params).fetchall()
            if stray or missing:
                raise CorruptIndexError(
                    f"{db_path}: the indexed values of field {field!r} (table field_values) do not match the "
                    f"documents' metadata (stray {[row[2:] for row in stray]}, missing {[row[2:] for row in missing]} "
                    "as (value, row)); filters on it would give wrong results: restore a backup")

    def _compare_vectors(self, space: str, index: Any) -> None:
        """Every stored vector equals its FAISS copy (index types that keep vectors exactly)."""
        if not isinstance(self.faiss.downcast_index(index.index), (self.faiss.IndexFlat, self.faiss.IndexHNSWFlat)):
            return  # compressed (PQ, SQ) or clustered copies are not comparable
        rows = self._db.execute("SELECT d.id, v.row, v.vector FROM vectors v JOIN documents d ON d.row = v.row "
                                "WHERE v.space=?", (space,))
        while batch := rows.fetchmany(4096):
            stored = np.stack([np.frombuffer(blob, dtype="<f4") for _, _, blob in batch])
            copies = np.stack([index.reconstruct(row) for _, row, _ in batch])
            differ = np.flatnonzero(np.abs(stored - copies).max(axis=1) > 1e-5)
            if len(differ):
                bad = [batch[i][0] for i in differ[:5]]
                raise CorruptIndexError(f"space {space!r}: the vectors of {bad} differ between {self.path / DB_FILE} "
                                        f"and its FAISS file; restore a backup, or delete {STATE_FILE} to rebuild "
                                        "from the database if you trust it")

    def _on_gpu(self, space: str, index: Any) -> Any:
        """A GPU copy of ``index`` when a GPU is in use and the index type has one."""
        if self._gpu_resources is None:
            return index
        if space not in self._gpu_copies:
            try:
                self._gpu_copies[space] = self.faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)
            except RuntimeError:  # e.g. HNSW has no GPU version
                self._gpu_copies[space] = index
        return self._gpu_copies[space]

    def _search_parameters(self, index: Any, selector: Any) -> Any:
        faiss = self.faiss
        inner = faiss.downcast_index(index.index)
        kind = faiss.SearchParametersHNSW if isinstance(inner, faiss.IndexHNSW) else (
            faiss.SearchParametersIVF if isinstance(inner, faiss.IndexIVF) else faiss.SearchParameters)
        return kind(sel=selector)

    @_damage_is_corruption
    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
