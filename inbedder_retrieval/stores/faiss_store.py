"""Embedded store: documents and vectors in SQLite, one FAISS index per space.

SQLite is the truth and makes every write transaction atomic (a killed writer leaves the
last committed state). The FAISS indexes are derived from it: snapshots saved as FAISS
files (never pickle), recorded in ``state.json`` with the SQLite generation they reflect,
the highest row each one holds (``through``) and their SHA-256. A file that is missing or
whose hash does not match is rebuilt from SQLite (with a warning), so damage to a derived
file never gives wrong answers. A missing, empty or unreadable database raises
``CorruptIndexError`` naming it; opening an existing store never writes. The snapshot is also
the second copy of every vector that ``verify`` compares with SQLite's.

Snapshots and tails: a commit that only appends new rows to a space (every bulk import
chunk) need not rewrite its snapshot. SQLite records, in the commit itself, the generation
of each space's last change that was not such an append (``meta`` key ``base:<space>``)
and the generation up to which every commit kept that record (``appends_through``; a
commit by a release without it breaks the chain). A snapshot taken at generation ``G`` is
then exact up to the rows above its ``through`` whenever ``base <= G`` and the chain
reaches the current generation: opening adds those rows (the tail) from SQLite, and a
reader that already holds the space adds only the rows committed since. Anything else
(a stale snapshot, a broken chain) is rebuilt from SQLite, as before. The writer saves a
snapshot after every commit that was not append-only, while a space is small
(``SMALL_SNAPSHOT_BYTES``), when the tail of a space whose rebuild costs more than a copy
(any index but plain Flat, see ``_costly_tail``) reaches ``TAIL_RATIO`` of its saved rows
(so the bytes written stay linear in the rows), on ``save()`` (``import_embeddings`` calls
it at its end) and when an index that wrote closes.

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

from ..atomic import atomic_file, atomic_write_bytes
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
#: a space whose vectors take at most this many bytes is saved after every commit
SMALL_SNAPSHOT_BYTES = 4 << 20
#: a larger space is saved once the rows appended since its snapshot reach this ratio of it
TAIL_RATIO = 1.0
#: ``meta`` keys: the generation through which every commit recorded its non-append
#: changes, and per space the generation of its last one
APPENDS_THROUGH = "appends_through"
BASE_KEY = "base:"
#: filtered searches of an ANN index are exact (a scan of the matching rows' vectors) when
#: at most this many rows match, or at most ``EXACT_FILTER_RATIO`` of the space
EXACT_FILTER_ROWS = 20_000
EXACT_FILTER_RATIO = 0.02
#: a broader filter takes the index's unfiltered top candidates, enough for ``MARGIN`` times
#: ``k`` matches, then up to ``ROUNDS - 1`` deeper searches (``GROWTH`` times more candidates each)
POST_FILTER_MARGIN = 4
POST_FILTER_ROUNDS = 2
POST_FILTER_GROWTH = 4
#: default search depth of HNSW indexes (``ef_search``) and lists probed by IVF indexes
#: (``nprobe``, capped at the index's list count); measured in ``benchmarks/scale.py``: HNSW32
#: recall@10 at 1M 0.826 / 0.889 / 0.922 / 0.926 at 128 / 256 / 512 / 1024 (p50 1.2-3.5 ms)
DEFAULT_EF_SEARCH = 512
DEFAULT_NPROBE = 16
#: indexes of compressed vectors (PQ, SQ) fetch ``rerank`` x k candidates and rescore
#: them exactly with the vectors in SQLite
DEFAULT_RERANK = 10
MMAP_BYTES = 1 << 30
#: SQLite page size of new stores: a vector row (2,304 bytes at dim 576) took a whole 4 KiB
#: page (1.8x the raw bytes); 16 KiB pages hold 7 (1.04x) and insert faster (benchmarks/README.md)
PAGE_BYTES = 16384
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


def _file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file read in chunks (a multi-GiB snapshot is never held in memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(chunk):
            digest.update(block)
    return digest.hexdigest()


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
        ef_search: HNSW indexes only: candidates kept during a search (FAISS ``efSearch``;
            default ``DEFAULT_EF_SEARCH``). Higher is slower and finds more true neighbours.
        nprobe: IVF indexes only: inverted lists visited per search (default
            ``DEFAULT_NPROBE``, capped at the index's list count; at most that count when given).
        rerank: indexes of compressed vectors (PQ, SQ codes) only: a search takes
            ``rerank * k`` candidates from the index and returns the ``k`` best by their exact
            scores, computed from the vectors in SQLite (default ``DEFAULT_RERANK``; 1: off).

    Search-time options change no file: an index opened with other values searches with them.
    A filtered search of an HNSW or IVF index that matches few rows (``EXACT_FILTER_ROWS``,
    ``EXACT_FILTER_RATIO``) scores those rows' vectors exactly instead of walking the index.
    """

    backend = "faiss"

    def __init__(self, path: str | Path, *, factory: str = "Flat", metric: str = "ip", use_gpu: bool | None = None,
                 ef_search: int | None = None, nprobe: int | None = None, rerank: int | None = None,
                 create: bool = False) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        for name, value in (("ef_search", ef_search), ("nprobe", nprobe), ("rerank", rerank)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.faiss = _faiss()
        self.path = Path(path)
        self.factory = factory
        self.metric = metric
        self.ef_search = ef_search
        self.nprobe = nprobe
        self.rerank = rerank
        self._db = self._connect(self.path / DB_FILE, create)
        self._lock = threading.RLock()
        self._depth = 0
        self._pending: list[tuple[str, str, Any]] = []
        self._indexes: dict[str, Any] = {}
        self._dead: dict[str, int] = {}
        self._files: dict[str, dict[str, Any]] = {}
        self._through: dict[str, int] = {}  # highest row in each in-memory index
        self._tail: dict[str, int] = {}  # rows added to each index since its saved snapshot
        self._unsaved = False  # this store committed changes that no snapshot holds yet
        self._force_save = False
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
                db.execute(f"PRAGMA page_size={PAGE_BYTES}")  # before the first table: fixed from then on
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
        """Raise ``ValueError`` if this store's factory cannot index vectors of ``dim``, or
        a search option does not apply to it."""
        self._tune(self._new_index(dim))

    def _tune(self, index: Any) -> Any:
        """Apply ``ef_search`` / ``nprobe`` to ``index`` (an ``IndexIDMap2``); a value given
        for an index type without that parameter is a ``ValueError``."""
        faiss = self.faiss
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = self.ef_search or DEFAULT_EF_SEARCH
        elif self.ef_search is not None:
            raise ValueError(f"ef_search applies to HNSW indexes; the factory {self.factory!r} makes none")
        if isinstance(inner, faiss.IndexIVF):
            if self.nprobe is not None and self.nprobe > inner.nlist:
                raise ValueError(f"nprobe {self.nprobe} is more than the {inner.nlist} lists of the factory {self.factory!r}")
            inner.nprobe = min(self.nprobe or DEFAULT_NPROBE, inner.nlist)
        elif self.nprobe is not None:
            raise ValueError(f"nprobe applies to IVF indexes; the factory {self.factory!r} makes none")
        if self.rerank is not None and not self._compressed(index):
            raise ValueError(f"rerank applies to indexes of compressed vectors (PQ, SQ); the factory {self.factory!r} "
                             "keeps them whole")
        return index

    def _holds_vectors(self, index: Any) -> bool:
        """Whether ``index`` keeps every vector whole and by id (Flat, HNSW over Flat)."""
        return isinstance(self.faiss.downcast_index(index.index), (self.faiss.IndexFlat, self.faiss.IndexHNSWFlat))

    def _compressed(self, index: Any) -> bool:
        """Whether ``index`` scores compressed codes (PQ, SQ ...), not the vectors themselves."""
        faiss = self.faiss
        return not isinstance(faiss.downcast_index(index.index), (faiss.IndexFlat, faiss.IndexHNSWFlat, faiss.IndexIVFFlat))

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

    def _forget(self) -> None:
        """Drop the in-memory indexes (a load failed half-way through extending one): the
        next read rebuilds or reloads them."""
        self._indexes, self._dead, self._files, self._through, self._tail = {}, {}, {}, {}, {}
        self._generation = self._data_version = -1
        self._gpu_copies.clear()

    def _meta_int(self, key: str) -> int | None:
        found = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if found is None else int(found[0])

    def _load_snapshot(self) -> None:
        """``_load`` inside an open transaction: per space, the index in memory or the saved
        snapshot plus the rows committed after it (when the database says that only appends
        happened since), else a rebuild from the database."""
        try:
            self._load_spaces()
        except BaseException:
            self._forget()
            raise

    def _load_spaces(self) -> None:
        generation = self._db_generation()
        chained = self._meta_int(APPENDS_THROUGH) == generation
        state = self._read_state()
        saved_generation = state.get("generation")
        saved = state.get("spaces", {})
        indexes, dead, files, through, tail = {}, {}, {}, {}, {}
        for space, dim in self._space_dims().items():
            base = self._meta_int(BASE_KEY + space) if chained else None
            entry = saved.get(space)
            index, tail[space] = None, 0
            current = entry is not None and saved_generation == generation  # the saved file is up to date
            if (base is not None and 0 <= base <= self._generation and space in self._indexes
                    and self._indexes[space].d == dim):  # what we hold, plus what was committed since
                index, through[space], tail[space] = self._indexes[space], self._through[space], self._tail.get(space, 0)
                if space in self._files:
                    files[space] = self._files[space]
            elif current or (entry is not None and base is not None and isinstance(saved_generation, int)
                             and base <= saved_generation and isinstance(entry.get("through"), int)):
                index = self._read_saved(space, dim, entry)
                if index is not None:
                    files[space] = entry
                    through[space] = entry["through"] if isinstance(entry.get("through"), int) else self._max_row(space)
            if index is None:
                indexes[space], dead[space], through[space] = self._tune(self._build(space, dim)), 0, self._max_row(space)
                continue
            added = self._add_tail(space, index, through[space])
            if added is not None and not index.is_trained:  # saved before it could be trained: train now
                indexes[space], dead[space], through[space] = self._tune(self._build(space, dim)), 0, self._max_row(space)
                files.pop(space, None)
                continue
            if added is not None:
                through[space], tail[space] = added[1], tail[space] + added[0]
                files.pop(space, None)
            if current:  # another writer saved exactly this state
                files[space], tail[space] = entry, 0
            indexes[space], dead[space] = self._tune(index), index.ntotal - self._live_count(space)
        self._indexes, self._dead, self._files, self._generation = indexes, dead, files, generation
        self._through, self._tail = through, tail
        self._gpu_copies.clear()

    def _max_row(self, space: str) -> int:
        return self._db.execute("SELECT COALESCE(MAX(row), 0) FROM vectors WHERE space=?", (space,)).fetchone()[0]

    def _add_tail(self, space: str, index: Any, after: int) -> tuple[int, int] | None:
        """Add the space's rows above ``after`` to ``index`` (if it is trained); returns
        (how many, the highest row), or ``None`` when there are none."""
        rows = self._db.execute("SELECT row, vector FROM vectors WHERE space=? AND row > ? ORDER BY row", (space, after))
        count, last = 0, after
        while batch := rows.fetchmany(4096):
            count, last = count + len(batch), batch[-1][0]
            if index.is_trained:
                index.add_with_ids(np.frombuffer(b"".join(blob for _, blob in batch), dtype="<f4").reshape(len(batch), -1),
                                   np.array([row for row, _ in batch], dtype="int64"))
        return (count, last) if count else None

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
            digest = _file_sha256(file)
        except OSError as error:
            logger.warning("%s cannot be read (%s): rebuilding it from %s", file, error, DB_FILE)
            return None
        if digest != entry["sha256"]:
            logger.warning("%s is damaged (checksum mismatch): rebuilding it from %s", file, DB_FILE)
            return None
        try:  # saved files are never rewritten (each save names new ones), so this is the file just hashed
            index = self.faiss.read_index(str(file))
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
        self._add_tail(space, index, 0)
        return index

    def _rebuild(self, space: str, dim: int) -> None:
        self._indexes[space] = self._tune(self._build(space, dim))
        self._dead[space] = 0
        self._through[space] = self._max_row(space)
        self._files.pop(space, None)
        self._force_save = True

    def _costly_tail(self, index: Any) -> bool:
        """Whether adding a long tail to ``index`` at open costs more than reading it from a
        snapshot: every type but plain Flat, whose tail is a copy of the vectors from SQLite
        (150,000-190,000 vectors/s measured, faster than reading and hashing a snapshot: benchmarks/README.md).
        A Flat space is therefore saved on ``save()`` only, which halves the bytes an import writes."""
        return not isinstance(self.faiss.downcast_index(index.index), self.faiss.IndexFlat)

    def _write_index(self, index: Any, target: Path) -> str:
        """Write ``index`` to ``target`` atomically, streamed (no serialized copy in
        memory); returns the file's SHA-256."""
        digest = hashlib.sha256()
        with atomic_file(target) as file:
            def write(chunk: bytes) -> None:
                digest.update(chunk)
                file.write(chunk)

            self.faiss.write_index(index, self.faiss.PyCallbackIOWriter(write))
        return digest.hexdigest()

    @property
    def unsaved(self) -> bool:
        """Whether this store committed changes that its saved snapshots lack (they are
        still safe in SQLite: opening adds them; ``save()`` writes them)."""
        return self._unsaved

    def save(self) -> None:
        """Write the FAISS files of the spaces that changed, then the state, each atomically.

        Called by the writer under the index's write lock: after commits (see the module
        docstring for which), at the end of an import and when an index that wrote closes.
        Spaces untouched since their last save keep their file. Files of the previous state
        stay (a reader may have just read it); older ones and ``.partial`` leftovers of a
        killed save are removed."""
        with self._lock:
            self._refresh()  # save the newest state, whoever committed it
            folder = self.path / FAISS_DIR
            folder.mkdir(exist_ok=True)
            previous = {entry["file"] for entry in self._read_state().get("spaces", {}).values()}
            files = {}
            for space, index in sorted(self._indexes.items()):
                entry = self._files.get(space)
                if entry is None or not (folder / entry["file"]).exists():
                    entry = {"file": f"{space}-{self._generation}.faiss", "through": self._through.get(space, 0)}
                    entry["sha256"] = self._write_index(index, folder / entry["file"])
                files[space] = entry
            state = {"generation": self._generation, "spaces": files}
            atomic_write_bytes(folder / STATE_FILE, json.dumps(state, indent=1).encode())
            keep = previous | {entry["file"] for entry in files.values()}
            for old in [*folder.glob("*.faiss"), *folder.glob(".*.partial")]:
                if old.name not in keep:
                    old.unlink(missing_ok=True)
            self._files = files
            self._tail = dict.fromkeys(self._indexes, 0)
            self._unsaved = False

    def _snapshot_due(self) -> bool:
        """Whether the commit just mirrored should be saved now (see the module docstring)."""
        if self._force_save:
            return True
        for space, index in self._indexes.items():
            if space in self._files:
                continue
            tail = self._tail.get(space, 0)
            if index.ntotal * index.d * 4 <= SMALL_SNAPSHOT_BYTES or (
                    self._costly_tail(index) and tail >= TAIL_RATIO * max(index.ntotal - tail, 1)):
                return True
        return False

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
                self._record_changes()
                self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._pending.clear()
                raise
            finally:
                self._depth = 0
            self._after_commit()

    def _record_changes(self) -> None:
        """Record in the transaction which spaces changed other than by appending rows
        above their highest one (``base:<space>`` = the new generation), and extend the
        chain ``appends_through``; a chain broken by another release marks every space."""
        generation = self._db_generation() + 1
        changed: set[str] = set()
        for kind, space, payload, *_ in self._pending:
            if kind != "add" or (payload and min(payload) <= self._through.get(space, 0)):
                changed.add(space)
        spaces = set(self._space_dims())
        if self._meta_int(APPENDS_THROUGH) != generation - 1:
            changed |= spaces
        marks = [(BASE_KEY + space, str(generation)) for space in sorted(changed & spaces)]
        self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [*marks, (APPENDS_THROUGH, str(generation))])
        gone = sorted(changed - spaces)
        self._db.executemany("DELETE FROM meta WHERE key=?", [(BASE_KEY + space,) for space in gone])
        self._force_save = bool(changed)

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
        self._unsaved = True
        try:
            if self._snapshot_due():
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
        for kind, space, payload, *matrix in pending:
            self._files.pop(space, None)  # its saved file no longer matches
            if kind == "create":
                self._indexes[space] = self._tune(self._new_index(payload))
                self._dead[space], self._through[space], self._tail[space] = 0, 0, 0
            elif kind == "drop":
                for held in (self._indexes, self._dead, self._through, self._tail):
                    held.pop(space, None)
            elif kind == "remove":
                if not self._remove(space, payload):
                    stale.setdefault(space, set()).update(payload)
            elif stale.get(space, set()).intersection(payload):
                rebuild.add(space)  # a row would have a stale and a fresh vector
            elif self._indexes[space].is_trained:  # the committed vectors, as written to SQLite
                self._indexes[space].add_with_ids(matrix[0], np.array(payload, dtype="int64"))
                self._through[space] = max(self._through[space], max(payload, default=0))
                self._tail[space] = self._tail.get(space, 0) + len(payload)
        for space, index in list(self._indexes.items()):
            if space in rebuild or not index.is_trained or self._dead[space] > COMPACT_RATIO * max(index.ntotal, 1):
                self._rebuild(space, index.d)

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
            rows = self._insert_documents(documents)
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

    def _insert_documents(self, documents: Sequence[Document]) -> list[int]:
        """Insert ``documents`` with new rows (above every row ever used, as AUTOINCREMENT
        would give them, in one statement); returns the rows."""
        last = self._db.execute("SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name='documents'), 0), "
                                "COALESCE((SELECT MAX(row) FROM documents), 0))").fetchone()[0]
        rows = list(range(last + 1, last + 1 + len(documents)))
        self._db.executemany("INSERT INTO documents (row, id, text, metadata) VALUES (?, ?, ?, ?)",
                             [(row, doc.id, doc.text, json.dumps(dict(doc.metadata))) for row, doc in zip(rows, documents)])
        return rows

    @staticmethod
    def _checked(space: str, matrix: np.ndarray, count: int, dim: int) -> np.ndarray:
        matrix = np.array(matrix, dtype="<f4", order="C")  # a copy: the FAISS index gets it after the commit
        if matrix.shape != (count, dim):
            raise ValueError(f"space {space!r} needs a ({count}, {dim}) matrix, got {matrix.shape}")
        return matrix

    def _insert_vectors(self, space: str, rows: list[int], matrix: np.ndarray) -> None:
        view, width = memoryview(matrix).cast("B"), matrix.shape[1] * 4  # slices of a C-contiguous matrix: no copies
        self._db.executemany("INSERT INTO vectors (space, row, vector) VALUES (?, ?, ?)",
                             [(space, row, view[i * width : (i + 1) * width]) for i, row in enumerate(rows)])
        self._pending.append(("add", space, rows, matrix))

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
        where, values = self._filter_where(filter)
        return f"SELECT d.row FROM documents d WHERE {where}", values

    def _filter_where(self, filter: Filter) -> tuple[str, list[Any]]:
        """``filter`` as a condition on ``documents d`` (in parentheses) and its parameters."""
        where, values = to_sql(filter, "d.metadata", row="d.row", indexed=frozenset(self._field_kinds()))
        return f"({where})", values

    def _live_count(self, space: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM vectors WHERE space=?", (space,)).fetchone()[0]

    @_damage_is_corruption
    def search(self, space: str, vector: np.ndarray, k: int, filter: Filter | None = None) -> list[Hit]:
        k = check_k(k)
        with self._lock:
            self._refresh()
            index = self._indexes[space]
            query = np.ascontiguousarray(vector, dtype="float32").reshape(1, -1)
            if index.ntotal == 0:
                return []
            if filter is None:
                scores, vids = self._top(space, index, query, k, self._on_gpu(space, index))
            else:
                scores, vids = self._filtered(space, index, query, k, filter)
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

    def _rerank(self, index: Any) -> int:
        return (self.rerank or DEFAULT_RERANK) if self._compressed(index) else 1

    def _top(self, space: str, index: Any, query: np.ndarray, k: int, searcher: Any,
             params: Any = None) -> tuple[list[float], list[int]]:
        """The index's top ``k`` (tombstones included: the caller drops rows without a
        document); compressed indexes rescore ``rerank * k`` candidates exactly."""
        rerank = self._rerank(index)
        scores, vids = searcher.search(query, min(k * rerank + self._dead[space], index.ntotal), params=params)
        scores, vids = scores[0].tolist(), vids[0].tolist()
        if rerank > 1:
            return self._scan(space, index, query[0], np.array([v for v in vids if v >= 0], dtype="int64"), k)
        return scores, vids

    def _filtered(self, space: str, index: Any, query: np.ndarray, k: int, filter: Filter) -> tuple[list[float], list[int]]:
        """Top ``k`` among the rows that match ``filter``, in the cheapest exact-enough way.

        - Few matching rows (``EXACT_FILTER_ROWS``, or ``EXACT_FILTER_RATIO`` of the space):
          their vectors are scored exactly. A selector-restricted Flat search still visits
          every row (64 ms at 1M for a 1% filter), an HNSW walk or the probed IVF lists rarely
          reach a small allowed set (recall@10 0.11-0.13 at 1%: ``benchmarks/scale.py``).
        - More: the index is searched without the filter for enough candidates that ``k``
          of them match (``_post_filtered``); the rows matching are never all read.
        - If that finds too few: the index is searched with a selector of every matching row.
        """
        where, values = self._filter_where(filter)
        live = max(index.ntotal - self._dead[space], 1)
        limit = max(EXACT_FILTER_ROWS, int(EXACT_FILTER_RATIO * live))
        allowed = self._matching_rows(where, values, limit + 1)
        if len(allowed) <= limit:
            return self._scan(space, index, query[0], allowed, k) if len(allowed) else ([], [])
        found = self._post_filtered(space, index, query, k, filter, self._density(allowed, live))
        if found is not None:
            return found
        allowed = self._matching_rows(where, values, -1)
        params = self._search_parameters(index, self.faiss.IDSelectorBatch(allowed), len(allowed) / live)
        return self._top(space, index, query, k, index, params)

    def _density(self, sample: np.ndarray, live: int) -> float:
        """The fraction of rows a broad filter matches, estimated from the first rows it
        matched (``sample``): their count over the documents up to the highest of them. At
        least the fraction of the whole sample (a wrong guess costs a deeper search, never
        a wrong result)."""
        (before,) = self._db.execute("SELECT COUNT(*) FROM documents WHERE row <= ?", (int(sample.max()),)).fetchone()
        return min(1.0, max(len(sample) / max(before, 1), len(sample) / live))

    def _matching_rows(self, where: str, values: list[Any], limit: int) -> np.ndarray:
        """The rows of documents matching ``where`` (at most ``limit``; -1: all), read as one
        JSON array (1.5x faster than row by row at 10,000 rows)."""
        (rows,) = self._db.execute(f"SELECT json_group_array(row) FROM (SELECT d.row FROM documents d WHERE {where} "
                                   "LIMIT ?)", [*values, limit]).fetchone()
        return np.array(json.loads(rows), dtype="int64")

    def _post_filtered(self, space: str, index: Any, query: np.ndarray, k: int, filter: Filter,
                       fraction: float) -> tuple[list[float], list[int]] | None:
        """Top ``k`` matching rows among the index's unfiltered top candidates, or ``None``
        if ``POST_FILTER_ROUNDS`` searches, each ``POST_FILTER_GROWTH`` times deeper than the
        last, found too few. The first takes ``POST_FILTER_MARGIN`` times the candidates that
        hold ``k`` matches when ``fraction`` of the rows match. On a Flat index the
        result is exact: the matching rows among the top candidates come first in the full ranking."""
        rerank = self._rerank(index)
        want = k * rerank
        fetch = min(index.ntotal, int(np.ceil(POST_FILTER_MARGIN * want / fraction)) + self._dead[space])
        # the candidates' own metadata is tested (as for a field without index: the same
        # answers by construction); the indexed form would read every matching row first
        where, values = to_sql(filter, "d.metadata", row="d.row")
        for _ in range(POST_FILTER_ROUNDS):
            scores, vids = index.search(query, fetch)
            ranked = [(score, vid) for score, vid in zip(scores[0].tolist(), vids[0].tolist()) if vid >= 0]
            passed = {row for (row,) in self._db.execute(
                f"SELECT d.row FROM json_each(?) c JOIN documents d ON d.row = c.value WHERE ({where})",
                [json.dumps([vid for _, vid in ranked]), *values])}
            kept = [(score, vid) for score, vid in ranked if vid in passed][:want]
            if len(kept) >= want or fetch >= index.ntotal:
                if rerank > 1:
                    return self._scan(space, index, query[0], np.array([vid for _, vid in kept], dtype="int64"), k)
                return [score for score, _ in kept], [vid for _, vid in kept]
            fetch = min(index.ntotal, fetch * POST_FILTER_GROWTH)
        return None

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
        if not self._holds_vectors(index):
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

    def _scan(self, space: str, index: Any, query: np.ndarray, rows: np.ndarray, k: int) -> tuple[list[float], list[int]]:
        """Exact top ``k`` of ``rows`` (FAISS's scores and ids): their vectors come from the
        index where it keeps them whole (Flat, HNSW over Flat), else from SQLite."""
        vectors = None
        if self._holds_vectors(index):
            try:
                vectors = index.reconstruct_batch(rows)
            except RuntimeError:  # a row the index lacks: read them all from the database
                vectors = None
        if vectors is None:
            rows, vectors = self._db_vectors(space, rows)
            if not len(rows):
                return [], []
        if self.metric == "ip":
            scores = vectors @ query
            order = np.argsort(-scores, kind="stable") if len(rows) <= k else None
        else:
            scores = ((vectors - query) ** 2).sum(axis=1)
            order = np.argsort(scores, kind="stable") if len(rows) <= k else None
        if order is None:
            sign = -1 if self.metric == "ip" else 1
            best = np.argpartition(sign * scores, k - 1)[:k]
            order = best[np.argsort(sign * scores[best], kind="stable")]
        return scores[order].tolist(), rows[order].tolist()

    def _db_vectors(self, space: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stored ones of ``rows`` and their vectors, read from SQLite."""
        found = []
        for start in range(0, len(rows), 30_000):
            found += self._db.execute("SELECT row, vector FROM vectors WHERE space=? AND row IN "
                                      "(SELECT value FROM json_each(?))",
                                      (space, json.dumps(rows[start : start + 30_000].tolist()))).fetchall()
        if not found:
            return np.zeros(0, dtype="int64"), np.zeros((0, 0), dtype="float32")
        matrix = np.frombuffer(b"".join(blob for _, blob in found), dtype="<f4").reshape(len(found), -1)
        return np.array([row for row, _ in found], dtype="int64"), matrix

    def _search_parameters(self, index: Any, selector: Any, fraction: float) -> Any:
        """Search parameters with ``selector``; an ANN index searches deeper in proportion
        to the rows the filter excludes (``ef_search`` / ``nprobe`` divided by the fraction
        of rows allowed, within bounds), so that the walk still meets enough allowed rows."""
        faiss = self.faiss
        inner = faiss.downcast_index(index.index)
        widen = 1 / max(fraction, 1e-6)
        if isinstance(inner, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW(sel=selector, efSearch=int(min(inner.hnsw.efSearch * widen, 4096)))
        if isinstance(inner, faiss.IndexIVF):
            return faiss.SearchParametersIVF(sel=selector, nprobe=int(min(inner.nprobe * widen, inner.nlist)))
        return faiss.SearchParameters(sel=selector)

    @_damage_is_corruption
    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
