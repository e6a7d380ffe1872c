"""Qdrant's own engine in-process (``qdrant-edge-py``): the embedded ``qdrant`` backend.

One ``EdgeShard`` per index (folder ``qdrant-store/edge``): HNSW, a write-ahead log,
payloads and named vectors, all written by the Rust engine in its own formats (JSON,
memory-mapped arrays; nothing is ever unpickled). One process per folder: a second one
gets ``IndexLockedError``.

An edge shard needs at least one vector name, so each shard is created with a one-number
placeholder vector that no point holds (it also marks the shard as ours).
"""

from __future__ import annotations

import glob
import json
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptIndexError, IndexLockedError
from .qdrant_store import PointState

PLACEHOLDER = "_inbedder_placeholder"
CONFIG_FILE = "edge_config.json"
VERSION_FILE = "version.info"
READ_BLOCK = 8 << 20


def _crc32(file: Path) -> int:
    crc = 0
    with open(file, "rb") as handle:
        while block := handle.read(READ_BLOCK):
            crc = zlib.crc32(block, crc)
    return crc


def _stat_key(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def _edge() -> Any:
    try:
        import qdrant_edge
    except ImportError as error:  # optional dependency
        raise ImportError("The embedded Qdrant store needs qdrant-edge-py: pip install 'inbedder-retrieval[qdrant]'") from error
    return qdrant_edge


def _is_engine_failure(error: BaseException) -> bool:
    """Whether qdrant-edge failed on its files: it raises plain ``Exception`` for runtime
    errors and pyo3's ``PanicException`` when a Rust assertion fails on damaged data."""
    return type(error).__name__ == "PanicException" or (
        type(error) is Exception and str(error).startswith("Service runtime error"))


class EdgeTarget:
    """qdrant-edge's filter classes (see ``filters.QdrantTarget``)."""

    def __init__(self, edge: Any) -> None:
        self.edge = edge

    def equals(self, key: str, value: str | bool) -> Any:
        # qdrant-edge 0.9.0 reads a Python bool as the integer 1/0; numpy's bool stays a bool
        return self.edge.FieldCondition(key=key, match=self.edge.MatchValue(
            np.bool_(value) if isinstance(value, bool) else value))

    def range(self, key: str, bounds: Mapping[str, float]) -> Any:
        return self.edge.FieldCondition(key=key, range=self.edge.RangeFloat(**{k: float(v) for k, v in bounds.items()}))

    def filter(self, must: list[Any] | None = None, should: list[Any] | None = None,
               must_not: list[Any] | None = None) -> Any:
        return self.edge.Filter(must=must, should=should, must_not=must_not)


class EdgeEngine:
    """The store's engine over one ``EdgeShard`` in ``folder``.

    Args:
        folder: the shard folder.
        create: make a new shard (the folder must not hold one); otherwise open the
            existing one, and a missing or damaged shard is ``CorruptIndexError``.
    """

    where: str
    #: the store's folder is the only way to this data (one process): it can keep a stamp
    local = True

    def __init__(self, folder: Path, *, create: bool) -> None:
        self.edge = _edge()
        self.folder = Path(folder)
        self.where = str(self.folder)
        self.target = EdgeTarget(self.edge)
        self.native = self.edge.Filter
        self._digests: dict[str, tuple[tuple[int, int, int, int], int]] = {}  # file -> (stat key, CRC-32)
        if create:
            self.shard = self._create()
            self._dims: dict[str, int] = {}
        else:
            self._dims = self._read_config()  # before the engine touches anything
            self.shard = self._load()

    def _create(self) -> Any:
        edge = self.edge
        if (self.folder / CONFIG_FILE).exists():
            raise FileExistsError(f"{self.folder} already holds a Qdrant shard")
        config = edge.EdgeConfig(  # every setting explicit, so that loading never rewrites the config
            vectors={PLACEHOLDER: edge.EdgeVectorParams(size=1, distance=edge.Distance.Dot)},
            on_disk_payload=True, payload_memory=edge.Memory.Cold)
        return edge.EdgeShard.create(str(self.folder), config)

    def _read_config(self) -> dict[str, int]:
        """The vector names and sizes from the shard's config (the engine has no getter)."""
        file = self.folder / CONFIG_FILE
        if not self.folder.is_dir():
            raise CorruptIndexError(f"{self.folder} is missing: the index's Qdrant shard is gone")
        try:
            vectors = json.loads(file.read_text("utf-8"))["vectors"]
            dims = {name: int(params["size"]) for name, params in vectors.items()}
        except FileNotFoundError:
            raise CorruptIndexError(f"{file} is missing: the Qdrant shard cannot be read without it") from None
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise CorruptIndexError(f"{file} is truncated or corrupted ({type(error).__name__}: {error})") from None
        if PLACEHOLDER not in dims:
            raise CorruptIndexError(f"{file} does not describe an inbedder Qdrant shard")
        del dims[PLACEHOLDER]
        self._check_segments()
        return dims

    def _check_segments(self) -> None:
        """Refuse what the engine would silently replace by a new empty segment."""
        segments = self.folder / "segments"
        found = sorted(segments.iterdir()) if segments.is_dir() else []
        if not found:
            raise CorruptIndexError(f"{segments} is missing or empty: the shard's points are gone")
        for segment in found:
            if segment.is_dir() and not (segment / VERSION_FILE).is_file():
                raise CorruptIndexError(f"{segment / VERSION_FILE} is missing: the segment cannot be read")

    def _load(self, config: Any = None) -> Any:
        try:
            return self.edge.EdgeShard.load(str(self.folder), config)
        except BaseException as error:  # plain Exception for failures, PanicException for panics
            if not (type(error) is Exception or _is_engine_failure(error)):
                raise
            if "WouldBlock" in str(error):
                raise IndexLockedError(
                    f"{self.folder} is open in another process: embedded Qdrant allows one process per "
                    "folder; use a Qdrant server (url=...) for concurrent access"
                ) from None
            if config is None and "config is incompatible with existing segments" in str(error):
                return self._load(self._config_of_segments())
            raise CorruptIndexError(f"{self.folder} is not a readable Qdrant shard: {error}") from None

    def _config_of_segments(self) -> Any:
        """The shard config the segments were written with.

        qdrant-edge 0.9.0 does not add or delete a vector name atomically: a writer killed
        inside ``create_dense_vector`` or ``delete_vector_name`` can leave the shard's config
        and its segments naming different vectors, and the engine then refuses to load. The
        segments hold the data, so the shard is loaded with their vector names (the engine
        rewrites its config); the undo journal and the stamp then settle which names stay.
        """
        edge = self.edge
        names: dict[str, Any] = {}
        for file in sorted(self.folder.glob("segments/*/segment.json")):
            try:
                vectors = json.loads(file.read_text("utf-8"))["config"]["vector_data"]
                for name, params in vectors.items():
                    names.setdefault(name, (int(params["size"]), params["distance"]))
            except (ValueError, KeyError, TypeError) as error:
                raise CorruptIndexError(f"{file} is truncated or corrupted ({error})") from None
        if PLACEHOLDER not in names:
            raise CorruptIndexError(f"{self.folder / 'segments'} holds no inbedder Qdrant segment")
        self._dims = {name: size for name, (size, _) in names.items() if name != PLACEHOLDER}
        return edge.EdgeConfig(
            vectors={name: edge.EdgeVectorParams(size=size, distance=getattr(edge.Distance, distance))
                     for name, (size, distance) in names.items()},
            on_disk_payload=True, payload_memory=edge.Memory.Cold)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``self.shard.<method>(...)``, with the engine's I/O failures and panics (damaged
        files) as ``CorruptIndexError``."""
        try:
            return getattr(self.shard, method)(*args, **kwargs)
        except BaseException as error:  # a Rust panic is a BaseException (pyo3's PanicException)
            if _is_engine_failure(error):
                raise CorruptIndexError(f"{self.folder}: the Qdrant shard is damaged ({error})") from None
            raise

    # -- vector names ----------------------------------------------------------------------------
    def dims(self) -> dict[str, int]:
        return dict(self._dims)

    def create_vector(self, name: str, dim: int) -> None:
        self._call("update", self.edge.UpdateOperation.create_dense_vector(name, int(dim), self.edge.Distance.Cosine))
        self._dims[name] = int(dim)

    def delete_vector(self, name: str) -> None:
        self._call("update", self.edge.UpdateOperation.delete_vector_name(name))
        self._dims.pop(name, None)

    # -- points ------------------------------------------------------------------------------------
    @staticmethod
    def _state(record: Any) -> PointState:
        vectors = {name: vector for name, vector in (record.vector or {}).items() if name != PLACEHOLDER}
        return PointState(str(record.id), record.payload, vectors)

    def retrieve(self, ids: Sequence[str], *, payload: bool | list[str] = True,
                 vectors: bool | list[str] = False) -> list[PointState]:
        return [self._state(r) for r in self._call("retrieve", list(ids), with_payload=payload, with_vector=vectors)]

    def upsert(self, points: Sequence[PointState]) -> None:
        edge = self.edge
        self._call("update", edge.UpdateOperation.upsert_points(
            [edge.Point(id=p.id, vector=dict(p.vectors), payload=p.payload) for p in points]))

    def update_vectors(self, name: str, rows: Sequence[tuple[str, list[float]]]) -> None:
        edge = self.edge
        self._call("update", edge.UpdateOperation.update_vectors(
            [edge.PointVectors(id=pid, vector={name: vector}) for pid, vector in rows]))

    def delete(self, ids: Sequence[str]) -> None:
        self._call("update", self.edge.UpdateOperation.delete_points(list(ids)))

    def scroll(self, limit: int, offset: Any, *, vectors: bool | list[str] = False) -> tuple[list[PointState], Any]:
        records, offset = self._call("scroll", self.edge.ScrollRequest(
            offset=offset, limit=limit, with_payload=True, with_vector=vectors))
        return [self._state(r) for r in records], offset

    def query(self, name: str, vector: list[float], k: int, native: Any) -> list[tuple[Mapping[str, Any], float]]:
        edge = self.edge
        points = self._call("query", edge.QueryRequest(
            limit=k, query=edge.Query.Nearest(vector, using=name), filter=native, with_payload=True))
        return [(p.payload, float(p.score)) for p in points]

    def count(self, vector: str | None = None) -> int:
        """Number of points (holding a ``vector`` of that name)."""
        edge = self.edge
        only = None if vector is None else edge.Filter(must=[edge.HasVectorCondition(vector)])
        return self._call("count", edge.CountRequest(exact=True, filter=only))

    # -- payload indexes ---------------------------------------------------------------------------
    def _schemas(self) -> dict[str, Any]:
        """Payload index type of each field kind (numbers: a float index serves the range
        conditions that integers and floats alike are matched with)."""
        types = self.edge.PayloadSchemaType
        return {"keyword": types.Keyword, "number": types.Float, "bool": types.Bool}

    def create_field_index(self, key: str, kind: str) -> None:
        self._call("update", self.edge.UpdateOperation.create_field_index(key, self._schemas()[kind]))

    def delete_field_index(self, key: str) -> None:
        self._call("update", self.edge.UpdateOperation.delete_field_index(key))

    def field_indexes(self) -> dict[str, str]:
        """Payload key -> kind (an index type made outside this library: its type name)."""
        kinds = {str(schema): kind for kind, schema in self._schemas().items()}
        return {key: kinds.get(str(info.data_type), str(info.data_type))
                for key, info in self._call("info").payload_schema.items()}

    def flush(self) -> None:
        self._call("flush")

    def file_digests(self, spaces: Sequence[str], *, fresh: bool = False) -> dict[str, dict[str, int]]:
        """CRC-32 of the vector files of each space (space -> path under the shard -> checksum).

        qdrant-edge keeps no checksum of its vector storage, so garbled bytes there would be
        read as vectors: the store records these at every commit and compares them on open.
        A file whose inode, size and times are those it had when last read here reuses that
        checksum (every write to a file, mapped or not, updates its times), unless ``fresh``.
        """
        digests: dict[str, dict[str, int]] = {}
        for space in spaces:
            digests[space] = {}
            for file in sorted(self.folder.glob(f"segments/*/vector_storage-{glob.escape(space)}/vectors/chunk_*.mmap")):
                name = file.relative_to(self.folder).as_posix()
                key = _stat_key(file.stat())
                cached = self._digests.get(name)
                if fresh or cached is None or cached[0] != key:
                    cached = self._digests[name] = (key, _crc32(file))
                digests[space][name] = cached[1]
        return digests

    def close(self) -> None:
        self.shard.close()
