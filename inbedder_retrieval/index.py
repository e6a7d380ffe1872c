"""``InstructionIndex``: a corpus stored once, embedded under several instructions.

Each instruction gets its own vector space; a search names its instruction. The index
folder holds ``index.json`` (the manifest: format, model fingerprint, pooling, dimension,
backend, instructions and their space names) and the backend's files.

Every write takes the same path (``_transaction``): the writer file lock (a second writer
gets ``IndexLockedError`` after ``lock_timeout``), then the model work with nothing
locked in the store, then one short store transaction. A crash leaves the index as it
was before or after the write, never half-written; readers never wait for a writer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from .atomic import atomic_write_bytes
from .cache import EmbeddingCache, encode_cached, encode_many_cached
from .embedder import InBedder
from .errors import CorruptIndexError, IncompatibleIndexError, IndexLockedError, UnknownInstructionError
from .manifest import FORMAT_VERSION, MANIFEST, dtype_hint, read_manifest
from .models import REGISTRY, entry_with_fingerprint
from .progress import show_progress
from .read_ahead import read_ahead
from .shards import ShardChunk, iter_shard, shard_columns, shard_paths, shard_summary
from .stores import Document, Filter, Hit, VectorStore, open_store
from .stores.base import check_field_kind
from .stores.filters import check_field
from .validation import check_documents, check_ids, check_instructions, check_k, check_positive_int

logger = logging.getLogger(__name__)

LOCK_FILE = "write.lock"
#: documents per store call inside one write transaction
WRITE_CHUNK = 1024
#: store options that are never written to the manifest (pass them again to ``open``)
SECRET_OPTIONS = frozenset({"api_key"})


def space_name(instruction: str) -> str:
    """A stable, backend-safe name for an instruction's vector space."""
    return "i" + hashlib.sha256(instruction.encode()).hexdigest()[:16]


def _entry_for(recorded: Mapping[str, Any]) -> str:
    """The model to open an index with: the name it recorded, unless that registry entry
    now gives other vectors (a replaced default) and another entry gives the recorded ones."""
    name = recorded["name"]
    entry = REGISTRY.get(name)
    if entry is None or entry.fingerprint in (None, recorded["fingerprint"]):
        return name
    return entry_with_fingerprint(recorded["fingerprint"]) or name


def model_record(model: InBedder) -> dict[str, Any]:
    """What an index (and an embedding shard) records of the model that made its vectors;
    ``dtype`` (the weights' dtype, part of the fingerprint) lets an index opened without a
    model load it in the dtype it was built with, on any device (indexes made before it
    was recorded open in the device's default dtype)."""
    return {
        "name": model.name,
        "fingerprint": model.fingerprint,
        "pooling": model.pooling,
        "layer": model.description.layer,
        "dim": model.dim,
        "dtype": model.dtype,
    }


def document_vectors(model: InBedder, texts: Sequence[str], instructions: Sequence[str],
                     cache: EmbeddingCache | None = None, *, batch_size: int = 64) -> dict[str, np.ndarray]:
    """The vectors an index stores for ``texts`` under each instruction (unit length, float32):
    one ``encode_many`` call, which encodes each text once for causal models (see
    ``CausalBackend.embed_many``)."""
    return encode_many_cached(model, list(texts), list(instructions), cache, batch_size=batch_size)


@dataclass(frozen=True)
class ImportReport:
    """What ``import_embeddings`` did: shards read, documents written, documents skipped
    (already stored with the same text and metadata)."""

    shards: int
    imported: int
    skipped: int


@dataclass(frozen=True)
class InstructionSpec:
    """An instruction of the index, the instruction used for queries, and its space."""

    instruction: str
    query_instruction: str
    space: str


class InstructionIndex:
    """Documents x instructions, searchable per instruction.

    Create with ``InstructionIndex.create(path, model, instructions=[...])``, reopen with
    ``InstructionIndex.open(path)``. Use as a context manager, or call ``close()``.
    """

    def __init__(self, path: Path, model: InBedder, store: VectorStore, manifest: dict[str, Any], *,
                 lock_timeout: float, cache: EmbeddingCache | None = None) -> None:
        self.path = path
        self.model = model
        self.cache = cache
        self.store = store
        self._manifest = manifest
        self._manifest_stamp = self._stamp()
        self._specs: dict[str, InstructionSpec] | None = None
        self._lock = FileLock(str(path / LOCK_FILE))
        self.lock_timeout = lock_timeout

    # -- creation and opening -------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        model: InBedder | None = None,
        *,
        instructions: Iterable[str] = (),
        backend: str = "faiss",
        store_options: Mapping[str, Any] | None = None,
        lock_timeout: float = 10.0,
        cache: EmbeddingCache | bool | None = None,
        indexed_fields: Mapping[str, str] | Iterable[str] = (),
    ) -> InstructionIndex:
        """Create an empty index in the folder ``path`` (which must not hold one).

        ``backend`` is "faiss" (options: ``factory``, ``metric``) or "qdrant" (options:
        ``url``, ``api_key``, ``collection``, ``location``). ``cache=True`` (or an
        ``EmbeddingCache``) keeps every computed vector in the persistent embedding cache,
        so embedding the same text under the same instruction again is free.
        ``indexed_fields`` (names, or ``{name: kind}``; see ``index_field``) are metadata
        fields that filters look up in an index instead of scanning every document.
        """
        path = Path(path)
        if (path / MANIFEST).exists():
            raise FileExistsError(f"{path} already holds an index; open it with InstructionIndex.open")
        instructions = check_instructions(instructions)  # before the model loads
        fields = check_indexed_fields(indexed_fields)
        model = model or InBedder.from_pretrained()
        instructions = [model.check_instruction(instruction) for instruction in instructions]
        options = dict(store_options or {})
        manifest = {
            "format_version": FORMAT_VERSION,
            "model": model_record(model),
            "metric": "l2" if options.get("metric") == "l2" else "cosine",
            "backend": backend,
            "store_options": {k: v for k, v in options.items() if k not in SECRET_OPTIONS},
            "instructions": [],
            "indexed_fields": fields,
        }
        created = not path.exists()
        before = set(path.iterdir()) if not created else set()
        index = store = None
        try:
            path.mkdir(parents=True, exist_ok=True)
            store = open_store(backend, path, options, create=True)
            store.check_dim(model.dim)
            for field, kind in fields.items():
                store.index_field(field, kind)
            atomic_write_bytes(path / MANIFEST, json.dumps(manifest, indent=2).encode())
            index = cls(path, model, store, manifest, lock_timeout=lock_timeout, cache=_cache(cache))
            for instruction in instructions:
                index.add_instruction(instruction)
        except BaseException:
            if store is not None:
                store.close()
            _remove_new(path, created, before)
            raise
        return index

    @classmethod
    def open(
        cls,
        path: str | Path,
        model: InBedder | None = None,
        *,
        store_options: Mapping[str, Any] | None = None,
        lock_timeout: float = 10.0,
        cache: EmbeddingCache | bool | None = None,
        trust_index: bool = False,
    ) -> InstructionIndex:
        """Open an existing index; without ``model``, load the model it was built with.

        ``store_options`` are merged over the recorded ones (e.g. a Qdrant ``api_key``,
        which is never written to disk). ``trust_index=True`` opens formats that unpickle
        data from the folder (embedded Qdrant folders of qdrant-client's local mode, made
        by earlier releases): only for folders you made yourself, since a crafted folder
        runs code. Opening never creates or rewrites a file of the index.
        """
        path = Path(path)
        manifest = read_manifest(path)
        recorded = manifest["model"]
        if model is None:
            model = InBedder.from_pretrained(_entry_for(recorded), pooling=recorded["pooling"], layer=recorded["layer"],
                                             dtype=recorded.get("dtype"))
        if model.dim != recorded["dim"]:
            raise IncompatibleIndexError(
                f"{path} was built with {recorded['name']!r} (dimension {recorded['dim']}); "
                f"the given model {model.name!r} gives dimension {model.dim}"
            )
        if model.fingerprint != recorded["fingerprint"]:
            entry = entry_with_fingerprint(recorded["fingerprint"])
            hint = (f"; the registry entry {entry!r} gives its vectors: open it with "
                    f"model=InBedder.from_pretrained({entry!r}), or with no model") if entry else ""
            hint += dtype_hint(recorded, {"dtype": model.dtype})
            raise IncompatibleIndexError(
                f"{path} was built with {recorded['name']!r} (pooling {recorded['pooling']!r}, fingerprint "
                f"{recorded['fingerprint']}); the given model {model.name!r} (pooling {model.pooling!r}, "
                f"fingerprint {model.fingerprint}) would give incompatible vectors{hint}"
            )
        options = {**manifest["store_options"], **(store_options or {})}
        store = open_store(manifest["backend"], path, options, create=False, trust_index=trust_index)
        return cls(path, model, store, manifest, lock_timeout=lock_timeout, cache=_cache(cache))

    def __enter__(self) -> InstructionIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the store; a store holding committed changes that its derived files
        lack yet (FAISS: rows appended since the last snapshot) saves them first, when the
        writer lock is free (else the writer holding it saves them)."""
        if getattr(self.store, "unsaved", False):
            try:
                self._lock.acquire(timeout=0)
            except Timeout:
                logger.info("%s: another writer holds the lock; it saves the FAISS snapshots", self.path)
            else:
                try:
                    self.store.save()
                except (OSError, RuntimeError) as error:  # the writes are committed: the next open adds them
                    logger.warning("Saving the snapshots of %s on close failed (%s)", self.path, error)
                finally:
                    self._lock.release()
        self.store.close()

    # -- manifest -------------------------------------------------------------------------
    def _stamp(self) -> tuple[int, int]:
        stat = (self.path / MANIFEST).stat()
        return stat.st_mtime_ns, stat.st_size

    def _current_manifest(self) -> dict[str, Any]:
        """The manifest, re-read if another process changed it."""
        stamp = self._stamp()
        if stamp != self._manifest_stamp:
            self._manifest = read_manifest(self.path)
            self._manifest_stamp = stamp
            self._specs = None
        return self._manifest

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_bytes(self.path / MANIFEST, json.dumps(manifest, indent=2).encode())
        self._manifest = manifest
        self._manifest_stamp = self._stamp()
        self._specs = None

    def _spec_map(self) -> dict[str, InstructionSpec]:
        manifest = self._current_manifest()
        if self._specs is None:
            self._specs = {spec["instruction"]: InstructionSpec(**spec) for spec in manifest["instructions"]}
        return self._specs

    @property
    def specs(self) -> list[InstructionSpec]:
        """The instructions with their query instructions and space names."""
        return list(self._spec_map().values())

    @property
    def instructions(self) -> list[str]:
        """The instructions the corpus is embedded under."""
        return [spec.instruction for spec in self.specs]

    def _spec(self, instruction: str) -> InstructionSpec:
        specs = self._spec_map()
        if instruction in specs:
            return specs[instruction]
        known = "\n  ".join(self.instructions) or "(none yet: add one with add_instruction)"
        raise UnknownInstructionError(f"{instruction!r} is not an instruction of this index. Its instructions:\n  {known}")

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the writer lock; tidy what a killed writer may have left."""
        try:
            self._lock.acquire(timeout=self.lock_timeout)
        except Timeout:
            raise IndexLockedError(
                f"{self.path} is locked by another writer (waited {self.lock_timeout:g} s); try again later"
            ) from None
        try:
            for partial in self.path.glob(f".{MANIFEST}.*.partial"):
                partial.unlink(missing_ok=True)
            known = {spec.space for spec in self.specs}
            for orphan in set(self.store.spaces()) - known:  # left by a crash between store and manifest
                self.store.drop_space(orphan)
            yield
        finally:
            self._lock.release()

    # -- writes ---------------------------------------------------------------------------
    def add(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        instructions: Iterable[str] = (),
        *,
        batch_size: int = 64,
        show_progress_bar: bool | None = None,
    ) -> list[str]:
        """Add or replace documents (re-adding an id replaces it) and embed them under every
        instruction; ``instructions`` not yet in the index are added first. Documents whose
        id and text are unchanged keep their vectors (no model call). Returns the ids.

        All of it is one transaction: if anything fails, or the process dies, the index
        stays as it was.
        """
        texts, ids, metadatas = check_documents(texts, ids, metadatas)
        check_positive_int(batch_size, "batch_size")
        instructions = [self.model.check_instruction(instruction) for instruction in check_instructions(instructions)]
        with self._writing():
            for instruction in instructions:
                if instruction not in self.instructions:
                    self._add_instruction(instruction, instruction, batch_size, show_progress_bar)
            specs = self.specs
            if not specs and texts:
                raise ValueError("The index has no instruction yet: pass instructions=[...] or call add_instruction")
            documents = [Document(i, t, m) for i, t, m in zip(ids, texts, metadatas)]
            vectors: dict[str, list[np.ndarray]] = {spec.space: [] for spec in specs}
            with tqdm(total=len(texts), desc="Indexing", unit="text",
                      disable=not show_progress(show_progress_bar, len(texts))) as bar:
                for start in range(0, len(documents), batch_size):  # the model runs before anything is locked
                    batch = documents[start : start + batch_size]
                    for space, matrix in self._vectors_for(batch, specs, batch_size).items():
                        vectors[space].append(matrix)
                    bar.update(len(batch))
            stacked = {space: np.concatenate(parts) for space, parts in vectors.items() if parts}
            with self.store.transaction():
                for start in range(0, len(documents), WRITE_CHUNK):
                    stop = start + WRITE_CHUNK
                    self.store.upsert(documents[start:stop], {space: m[start:stop] for space, m in stacked.items()})
        return ids

    def _vectors_for(self, batch: list[Document], specs: list[InstructionSpec], batch_size: int) -> dict[str, np.ndarray]:
        """Vectors of ``batch`` per space, reusing stored ones where the text is unchanged;
        new texts get ``document_vectors``."""
        stored = self.store.get([doc.id for doc in batch])
        unchanged = [doc.id for doc, old in zip(batch, stored) if old is not None and old.text == doc.text]
        reused = {spec.space: self.store.get_vectors(spec.space, unchanged) if unchanged else {} for spec in specs}
        todo = [doc for doc in batch if not all(doc.id in reused[spec.space] for spec in specs)]
        fresh = document_vectors(self.model, [doc.text for doc in todo], [spec.instruction for spec in specs],
                                 self.cache, batch_size=batch_size) if todo else {}
        position = {doc.id: row for row, doc in enumerate(todo)}
        return {
            spec.space: np.stack([
                fresh[spec.instruction][position[doc.id]] if doc.id in position else reused[spec.space][doc.id]
                for doc in batch
            ])
            for spec in specs
        }

    def _encode(self, texts: list[str], instruction: str, batch_size: int) -> np.ndarray:
        return encode_cached(self.model, texts, instruction, self.cache, batch_size=batch_size)

    def import_embeddings(self, sources: Iterable[str | os.PathLike[str]], *, chunk_size: int = WRITE_CHUNK,
                          show_progress_bar: bool | None = None) -> ImportReport:
        """Import precomputed vectors from embedding shards (files, or folders of
        ``*.parquet`` files; see ``shards.py``) without calling the model.

        Every shard's header is checked before anything is written: the model fingerprint
        and dimension must be the index's, and every instruction of the index must have a
        column (``IncompatibleIndexError`` naming the file); a shard's instructions that the
        index lacks are ignored with a warning. Rows are then read ``chunk_size`` at a time,
        checked as ``add`` checks its input, and each chunk is one store transaction: a
        killed import leaves the index at a chunk boundary. Documents already stored with
        the same text and metadata are skipped, so running the import again resumes it.
        The derived files (FAISS snapshots) are saved at the end, not after every chunk.
        """
        files = shard_paths(sources)
        check_positive_int(chunk_size, "chunk_size")
        with self._writing():
            plan = self._import_plan(files)
            imported = skipped = 0
            total = sum(rows for _, rows in plan.values())
            with tqdm(total=total, desc="Importing", unit="text",
                      disable=not show_progress(show_progress_bar, total)) as bar:
                chunks = (chunk for file, (columns, _) in plan.items()
                          for chunk in iter_shard(file, columns, self.model.dim, chunk_size))
                for chunk in read_ahead(chunks):  # the next chunk is read while this one is written
                    written = self._import_chunk(chunk)
                    imported, skipped = imported + written, skipped + len(chunk.documents) - written
                    bar.update(len(chunk.documents))
            if getattr(self.store, "unsaved", False):
                self.store.save()
        return ImportReport(shards=len(files), imported=imported, skipped=skipped)

    def _import_plan(self, files: list[Path]) -> dict[Path, tuple[dict[str, str], int]]:
        """``{file: ({instruction: column}, rows)}``, every shard checked against the index."""
        manifest = self._current_manifest()
        if not manifest["instructions"]:
            raise ValueError("The index has no instruction yet: add its instructions before importing vectors")
        plan: dict[Path, tuple[dict[str, str], int]] = {}
        ignored: dict[str, None] = {}
        for file in files:
            header, rows = shard_summary(file)
            columns, extra = shard_columns(file, header, manifest, str(self.path))
            plan[file] = columns, rows
            ignored.update(dict.fromkeys(extra))
        if ignored:
            logger.warning("The shards also hold vectors for %s, which are not instructions of %s: ignored "
                           "(add_instruction embeds the corpus under a new instruction)", list(ignored), self.path)
        return plan

    def _import_chunk(self, chunk: ShardChunk) -> int:
        """Upsert the chunk's new or changed documents in one store transaction; returns how many."""
        stored = self.store.get([doc.id for doc in chunk.documents])
        rows = [row for row, (doc, old) in enumerate(zip(chunk.documents, stored)) if old != doc]
        if rows:
            with self.store.transaction():
                self.store.upsert([chunk.documents[row] for row in rows],
                                  {spec.space: chunk.vectors[spec.instruction][rows] for spec in self.specs})
        return len(rows)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete documents by id; returns how many existed."""
        ids = check_ids(ids)
        with self._writing(), self.store.transaction():
            return self.store.delete(ids)

    def add_instruction(self, instruction: str, query_instruction: str | None = None, *, batch_size: int = 64,
                        show_progress_bar: bool | None = None) -> None:
        """Add an instruction and embed the stored corpus under it.

        ``query_instruction`` (default: the instruction itself) embeds search queries, for
        asymmetric search such as queries phrased as requests.
        """
        instruction = self.model.check_instruction(instruction)
        query_instruction = self.model.check_instruction(query_instruction or instruction)
        check_positive_int(batch_size, "batch_size")
        with self._writing():
            self._add_instruction(instruction, query_instruction, batch_size, show_progress_bar)

    def _add_instruction(self, instruction: str, query_instruction: str, batch_size: int,
                         show_progress_bar: bool | None) -> None:
        """``add_instruction`` under the writer lock: embed the corpus, write the space in
        one transaction, then name it in the manifest (a crash between the two leaves an
        orphan space that the next write drops)."""
        if instruction in self.instructions:
            raise ValueError(f"{instruction!r} is already an instruction of this index")
        spec = InstructionSpec(instruction, query_instruction, space_name(instruction))
        self.store.check_dim(self.model.dim)
        ids: list[str] = []
        vectors: list[np.ndarray] = []
        total = len(self.store)
        with tqdm(total=total, desc="Embedding", unit="text", disable=not show_progress(show_progress_bar, total)) as bar:
            for batch in self.store.iter_documents(batch_size):
                ids.extend(doc.id for doc in batch)
                vectors.append(self._encode([doc.text for doc in batch], instruction, batch_size))
                bar.update(len(batch))
        stacked = np.concatenate(vectors) if vectors else np.empty((0, self.model.dim), dtype="float32")
        with self.store.transaction():
            self.store.create_space(spec.space, self.model.dim)
            for start in range(0, len(ids), WRITE_CHUNK):
                self.store.set_vectors(spec.space, ids[start : start + WRITE_CHUNK], stacked[start : start + WRITE_CHUNK])
        manifest = dict(self._current_manifest())
        manifest["instructions"] = [*manifest["instructions"], asdict(spec)]
        self._write_manifest(manifest)

    def remove_instruction(self, instruction: str) -> None:
        """Remove an instruction and its vectors (documents stay)."""
        with self._writing():
            spec = self._spec(instruction)
            manifest = dict(self._current_manifest())
            manifest["instructions"] = [s for s in manifest["instructions"] if s["instruction"] != instruction]
            self._write_manifest(manifest)  # from here on the space is an orphan: a crash cannot resurrect it
            self.store.drop_space(spec.space)  # outside a transaction: nothing to undo (the next write drops leftovers)

    def index_field(self, field: str, kind: str = "keyword") -> None:
        """Index the metadata ``field`` (a dotted path such as ``"meta.year"``) so that
        filters on it look it up instead of scanning every document; the stored documents
        are indexed in one store transaction, then the manifest records the field.

        ``kind`` ("keyword", "number" or "bool") is the type of Qdrant's payload index
        (one per field; conditions on values of other types still match, unindexed).
        FAISS indexes every string, number and boolean of the field whatever the kind.
        Results never change, only speed. Indexing a field again (e.g. with another kind)
        is allowed, and repairs a manifest that a crash left without the field.
        """
        field = check_field(field)
        kind = check_field_kind(field, kind)
        with self._writing():
            self.store.index_field(field, kind)
            manifest = dict(self._current_manifest())
            manifest["indexed_fields"] = {**manifest.get("indexed_fields", {}), field: kind}
            self._write_manifest(manifest)

    @property
    def indexed_fields(self) -> dict[str, str]:
        """The indexed metadata fields and their kinds, as the manifest records them."""
        return dict(self._current_manifest().get("indexed_fields", {}))

    def save(self) -> None:
        """Persist the derived files again (every write already persists; this is for
        explicit checkpoints)."""
        save = getattr(self.store, "save", None)
        if save is not None:
            with self._writing():
                save()

    # -- reads ----------------------------------------------------------------------------
    def get(self, ids: Sequence[str]) -> list[Document | None]:
        """Stored documents by id (``None`` where absent)."""
        return self.store.get(check_ids(ids))

    def get_vectors(self, ids: Sequence[str], instruction: str) -> dict[str, np.ndarray]:
        """Stored vectors of ``ids`` under ``instruction`` (absent ids are left out)."""
        return self.store.get_vectors(self._spec(instruction).space, check_ids(ids))

    def search(self, query: str, instruction: str, k: int = 10, filter: Filter | None = None) -> list[Hit]:
        """The ``k`` documents whose answer to ``instruction`` is closest to the query's."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be a non-empty string")
        check_k(k)
        return self.store.search(self._spec(instruction).space, self.encode_query(query, instruction), k, filter)

    def encode_query(self, query: str, instruction: str) -> np.ndarray:
        """The vector ``search`` compares with ``instruction``'s space (asked with its
        query instruction)."""
        return self.model.encode([query], self._spec(instruction).query_instruction)[0]

    def search_by_vector(self, vector: np.ndarray, instruction: str, k: int = 10, filter: Filter | None = None) -> list[Hit]:
        """Search ``instruction``'s space with a ready vector."""
        vector = np.asarray(vector, dtype="float32")
        if vector.shape != (self.model.dim,) or not math.isfinite(float(vector.sum())):
            raise ValueError(f"vector must be finite with shape ({self.model.dim},), got {vector.shape}")
        return self.store.search(self._spec(instruction).space, vector, k, filter)

    def verify(self) -> dict[str, Any]:
        """Check every file of the index (reads all of it); raise ``CorruptIndexError``
        naming the damaged file, else return counts per instruction."""
        manifest = read_manifest(self.path)
        check = getattr(self.store, "verify", None)
        report = check() if check is not None else {"documents": len(self.store), "spaces": {}}
        missing = {spec["space"] for spec in manifest["instructions"]} - set(self.store.spaces())
        if missing:
            raise CorruptIndexError(f"{self.path / MANIFEST} names vector spaces the store lacks: {sorted(missing)}")
        by_space = report["spaces"]
        return {"documents": report["documents"],
                "instructions": {spec.instruction: by_space.get(spec.space) for spec in self.specs}}

    def __len__(self) -> int:
        return len(self.store)

    @property
    def metric(self) -> str:
        """"cosine" or "l2", fixed when the index was created."""
        return self._manifest["metric"]

    def info(self) -> dict[str, Any]:
        """The manifest plus the document count."""
        return {**self._current_manifest(), "documents": len(self)}

    def __repr__(self) -> str:
        return f"InstructionIndex({str(self.path)!r}, documents={len(self)}, instructions={len(self.instructions)})"


def check_indexed_fields(fields: Mapping[str, str] | Iterable[str]) -> dict[str, str]:
    """``{field: kind}`` from field names (kind "keyword") or a mapping, every one checked."""
    if isinstance(fields, str):
        raise TypeError("indexed_fields must be a list of field names or a {field: kind} mapping, not a string")
    pairs = fields.items() if isinstance(fields, Mapping) else ((field, "keyword") for field in fields)
    return {check_field(field): check_field_kind(field, kind) for field, kind in pairs}


def _remove_new(path: Path, created: bool, before: set[Path]) -> None:
    """Undo a failed ``create``: remove the folder if it made it, else what it added."""
    if created:
        shutil.rmtree(path, ignore_errors=True)
        return
    for entry in set(path.iterdir()) - before if path.exists() else ():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _cache(cache: EmbeddingCache | bool | None) -> EmbeddingCache | None:
    if cache is True:
        return EmbeddingCache()
    return cache if isinstance(cache, EmbeddingCache) else None
