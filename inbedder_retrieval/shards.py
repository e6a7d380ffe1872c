"""Embedding shards: Parquet files of documents with their vectors under several instructions.

A shard has the columns ``id`` (string), ``text`` (string), ``metadata`` (a JSON object as a
string; null means ``{}``) and one ``fixed_size_list<float32>[dim]`` column per instruction.
Its Parquet schema metadata holds, under the key ``inbedder``, a JSON header: the format and
its version, the model (name, fingerprint, pooling, layer, dimension, dtype, as an index's manifest
records it), ``normalized`` (the vectors are unit length, as an index stores them) and the
instructions with the column of each.

``write_embedding_shards`` makes shards with a model; ``InstructionIndex.import_embeddings``
reads them into an index without one. Anything that writes this format (a Ray job, another
machine) can be imported. This module is light to import: pyarrow and the model stack load
on first use.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from .atomic import atomic_file
from .errors import CorruptIndexError, IncompatibleIndexError
from .io import expand_sources, record_metadata
from .manifest import dtype_hint
from .progress import PROGRESS_BAR_MIN_TEXTS, show_progress
from .stores.base import Document
from .validation import check_documents, check_instructions, check_positive_int

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .embedder import InBedder

#: the schema metadata key that holds the header
HEADER_KEY = b"inbedder"
SHARD_FORMAT = "inbedder-embedding-shard"
SHARD_FORMAT_VERSION = 1
#: rows per Parquet row group (what a reader decodes at once)
ROW_GROUP_ROWS = 1024
#: the name of the ``number``-th shard ``write_embedding_shards`` writes, and the names of all
SHARD_NAME, SHARD_NAMES = "shard-{number:05d}.parquet", "shard-*.parquet"
#: the files a folder given to ``import_embeddings`` contributes
SHARD_GLOB = "*.parquet"


@dataclass(frozen=True)
class ShardChunk:
    """Rows of a shard: documents and their vectors per instruction (row order)."""

    documents: list[Document]
    vectors: dict[str, np.ndarray]


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise ModuleNotFoundError("embedding shards need pyarrow: pip install 'inbedder-retrieval[parquet]'") from None
    return pa, pq


# -- writing ------------------------------------------------------------------------------
def write_embedding_shards(
    model: InBedder,
    records: Iterable[Mapping[str, Any]],
    instructions: Sequence[str],
    out_dir: str | Path,
    *,
    rows_per_shard: int = 10_000,
    batch_size: int = 64,
    show_progress_bar: bool | None = None,
) -> list[Path]:
    """Embed ``records`` under ``instructions`` and write them to ``out_dir`` as shards of at
    most ``rows_per_shard`` rows (``shard-00000.parquet``, ...); returns their paths.

    A record is ``{"id": ..., "text": ..., "metadata": {...}}``; without ``metadata`` its
    other fields are the metadata; without ``id`` one is generated (uuid4), as ``add`` does.
    The vectors are exactly the ones ``InstructionIndex.add`` stores (``document_vectors``).
    ``records`` is read lazily, one shard at a time; each shard appears whole or not at all.
    """
    header = shard_header(model, instructions)
    instructions = [spec["instruction"] for spec in header["instructions"]]
    check_positive_int(rows_per_shard, "rows_per_shard")
    check_positive_int(batch_size, "batch_size")
    out = Path(out_dir)
    refuse_existing_shards(out)
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
        raise TypeError(f"records must be an iterable of mappings, got {type(records).__name__}")
    total = len(records) if isinstance(records, Sized) else None
    written: list[Path] = []
    seen: set[str] = set()
    with tqdm(total=total, desc="Embedding", unit="text",
              disable=not show_progress(show_progress_bar, PROGRESS_BAR_MIN_TEXTS if total is None else total)) as bar:
        for number, chunk in enumerate(_chunks(records, rows_per_shard)):
            documents = _documents(chunk, number * rows_per_shard, seen)
            table = shard_table(header, documents, _embed(model, documents, instructions, batch_size, bar))
            written.append(write_shard(out, number, table))
    return written


def shard_header(model: InBedder, instructions: Sequence[str]) -> dict[str, Any]:
    """The header of shards holding ``model``'s vectors under ``instructions`` (checked: one
    or more distinct instructions the model accepts)."""
    from .index import model_record, space_name

    instructions = [model.check_instruction(q) for q in distinct_instructions(instructions)]
    return {"format": SHARD_FORMAT, "format_version": SHARD_FORMAT_VERSION, "model": model_record(model),
            "normalized": True, "instructions": [{"instruction": q, "column": space_name(q)} for q in instructions]}


def distinct_instructions(instructions: Sequence[str]) -> list[str]:
    """``instructions`` checked: one or more distinct valid instructions."""
    instructions = check_instructions(instructions)
    if not instructions or len(set(instructions)) != len(instructions):
        raise ValueError("instructions must be one or more distinct instructions")
    return instructions


def write_shard(out: Path, number: int, table: pa.Table) -> Path:
    """Write ``table`` as the ``number``-th shard of ``out`` (whole or not at all); its path."""
    _, pq = _pyarrow()
    path = out / SHARD_NAME.format(number=number)
    with atomic_file(path) as file:
        pq.write_table(table, file, row_group_size=ROW_GROUP_ROWS)
    return path


def _embed(model: InBedder, documents: list[Document], instructions: list[str], batch_size: int,
           bar: tqdm) -> dict[str, np.ndarray]:
    """``document_vectors`` of ``documents``, ``batch_size`` at a time (as ``add`` embeds)."""
    from .index import document_vectors

    parts: dict[str, list[np.ndarray]] = {q: [] for q in instructions}
    for start in range(0, len(documents), batch_size):
        batch = documents[start : start + batch_size]
        for q, matrix in document_vectors(model, [d.text for d in batch], instructions, batch_size=batch_size).items():
            parts[q].append(matrix)
        bar.update(len(batch))
    return {q: np.concatenate(matrices) for q, matrices in parts.items()}


def refuse_existing_shards(out: Path) -> None:
    """``FileExistsError`` if ``out`` already holds shards (a writer never mixes two runs)."""
    existing = sorted(out.glob(SHARD_NAMES)) if out.is_dir() else []
    if existing:
        raise FileExistsError(f"{out} already holds shards ({existing[0].name} ...): write into a new folder")


def _chunks(records: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    iterator = iter(records)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _documents(chunk: list[Mapping[str, Any]], first: int, seen: set[str]) -> list[Document]:
    """The checked documents of ``chunk`` (records ``first``...); ids must be new to ``seen``."""
    for position, record in enumerate(chunk, start=first):
        if not isinstance(record, Mapping):
            raise TypeError(f"records[{position}] must be a mapping with a 'text' field, got {type(record).__name__}")
    try:
        texts, ids, metadatas = check_documents(
            [record.get("text") for record in chunk],
            [uuid.uuid4().hex if record.get("id") is None else record["id"] for record in chunk],
            [record_metadata(record) for record in chunk])
    except (TypeError, ValueError) as error:  # the checks name positions within the chunk
        raise reworded(error, f"records[{first}:{first + len(chunk)}]") from None
    for position, doc_id in enumerate(ids, start=first):
        if doc_id in seen:
            raise ValueError(f"records[{position}]: id {doc_id!r} appears twice")
        seen.add(doc_id)
    return [Document(i, t, m) for i, t, m in zip(ids, texts, metadatas)]


def shard_schema(header: dict[str, Any]) -> pa.Schema:
    """The Arrow schema of a shard with ``header`` (stored under ``HEADER_KEY``)."""
    pa, _ = _pyarrow()
    dim = header["model"]["dim"]
    fields = [pa.field("id", pa.string(), nullable=False), pa.field("text", pa.string(), nullable=False),
              pa.field("metadata", pa.string())]
    fields += [pa.field(spec["column"], pa.list_(pa.float32(), dim), nullable=False) for spec in header["instructions"]]
    return pa.schema(fields, metadata={HEADER_KEY: json.dumps(header, ensure_ascii=False).encode()})


def shard_table(header: dict[str, Any], documents: list[Document], vectors: dict[str, np.ndarray]) -> pa.Table:
    """A shard's rows: ``documents`` with their ``vectors`` ({instruction: matrix}), in the
    schema of ``header``."""
    pa, _ = _pyarrow()
    dim = header["model"]["dim"]
    columns = [pa.array([d.id for d in documents], pa.string()), pa.array([d.text for d in documents], pa.string()),
               pa.array([json.dumps(dict(d.metadata), ensure_ascii=False) for d in documents], pa.string())]
    columns += [pa.FixedSizeListArray.from_arrays(pa.array(vectors[spec["instruction"]].reshape(-1), pa.float32()), dim)
                for spec in header["instructions"]]
    return pa.Table.from_arrays(columns, schema=shard_schema(header))


# -- reading ------------------------------------------------------------------------------
def shard_paths(sources: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The shard files named by ``sources``: files, and the ``*.parquet`` files of folders
    (sorted); each file once."""
    return expand_sources(sources, lambda folder: folder.glob(SHARD_GLOB), kind="shard", content=".parquet shard")


def _parquet_file(path: Path) -> pq.ParquetFile:
    pa, pq = _pyarrow()
    if not path.is_file():
        raise FileNotFoundError(f"No such shard file: {path}")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise CorruptIndexError(f"{path} is not a readable Parquet file (truncated or corrupted): {error}") from None


def read_shard_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header of the shard ``path``, with its schema checked: ``CorruptIndexError`` if the
    file is truncated or damaged, ``ValueError`` if it is not an inbedder shard."""
    path = Path(path)
    with _parquet_file(path) as parquet:
        return _header(path, parquet.schema_arrow)


def shard_summary(path: Path) -> tuple[dict[str, Any], int]:
    """The checked header of shard ``path`` and its number of rows (from the file's footer)."""
    with _parquet_file(path) as parquet:
        return _header(path, parquet.schema_arrow), parquet.metadata.num_rows


def _header(path: Path, schema: pa.Schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(HEADER_KEY)
    if raw is None:
        raise ValueError(f"{path} is not an inbedder embedding shard (no {HEADER_KEY.decode()!r} key in its "
                         "Parquet metadata); make shards with write_embedding_shards or `inbedder embed-shards`")
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CorruptIndexError(f"{path}: the shard header is not valid JSON") from None
    if not isinstance(header, dict) or (header.get("format"), header.get("format_version")) != (
            SHARD_FORMAT, SHARD_FORMAT_VERSION):
        raise ValueError(f"{path} is not an inbedder embedding shard of format version {SHARD_FORMAT_VERSION}")
    _check_header(path, header, schema)
    return header


def _check_header(path: Path, header: dict[str, Any], schema: pa.Schema) -> None:
    """The header's fields have their types, and the schema has every column it names."""
    pa, _ = _pyarrow()
    model, specs = header.get("model"), header.get("instructions")
    if (not isinstance(model, dict) or not isinstance(model.get("fingerprint"), str)
            or not isinstance(model.get("dim"), int) or not isinstance(header.get("normalized"), bool)
            or not isinstance(specs, list) or not all(isinstance(spec, dict) and isinstance(spec.get("instruction"), str)
                                                      and isinstance(spec.get("column"), str) for spec in specs)):
        raise CorruptIndexError(f"{path}: the shard header lacks model.fingerprint, model.dim, normalized or "
                                "instructions [{instruction, column}]")
    for name in ("id", "text", "metadata"):
        kind = schema.field(name).type if schema.get_field_index(name) >= 0 else None
        if kind is None or not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise ValueError(f"{path}: a shard needs a string column {name!r}")
    for spec in specs:
        kind = schema.field(spec["column"]).type if schema.get_field_index(spec["column"]) >= 0 else None
        if not (isinstance(kind, pa.FixedSizeListType) and kind.list_size == model["dim"]
                and kind.value_type == pa.float32()):
            raise ValueError(f"{path}: column {spec['column']!r} ({spec['instruction']!r}) must be "
                             f"fixed_size_list<float32>[{model['dim']}], got {kind}")


def shard_columns(path: Path, header: Mapping[str, Any], manifest: Mapping[str, Any],
                  where: str) -> tuple[dict[str, str], list[str]]:
    """``({instruction: column}, extra)`` for importing shard ``path`` into the index
    ``where`` described by ``manifest``: the columns of every index instruction, and the
    shard's instructions the index lacks. Raise ``IncompatibleIndexError`` naming both
    sides if its vectors cannot go there."""
    model, recorded = header["model"], manifest["model"]
    if model["dim"] != recorded["dim"]:
        raise IncompatibleIndexError(f"{path} holds vectors of dimension {model['dim']} ({model.get('name')!r}); "
                                     f"the index {where} has dimension {recorded['dim']} ({recorded['name']!r})")
    if model["fingerprint"] != recorded["fingerprint"]:
        raise IncompatibleIndexError(
            f"{path} was embedded with {model.get('name')!r} (pooling {model.get('pooling')!r}, fingerprint "
            f"{model['fingerprint']}); the index {where} was built with {recorded['name']!r} (pooling "
            f"{recorded['pooling']!r}, fingerprint {recorded['fingerprint']}): the vectors would not be comparable"
            + dtype_hint(recorded, model))
    if not header["normalized"]:
        raise IncompatibleIndexError(f"{path} holds vectors that are not unit length; an index stores unit vectors")
    columns = {spec["instruction"]: spec["column"] for spec in header["instructions"]}
    wanted = [spec["instruction"] for spec in manifest["instructions"]]
    missing = [q for q in wanted if q not in columns]
    if missing:
        raise IncompatibleIndexError(f"{path} has no vectors for the instruction(s) {missing} of the index {where} "
                                     f"(the shard holds {list(columns)}): embed the shards under every instruction "
                                     "of the index")
    return {q: columns[q] for q in wanted}, [q for q in columns if q not in wanted]


def iter_shard(path: Path, columns: Mapping[str, str], dim: int, chunk_size: int) -> Iterator[ShardChunk]:
    """The rows of shard ``path`` in chunks of at most ``chunk_size``, read batch by batch
    (never the whole file), with ``columns`` ({instruction: column}) as vectors; rows are
    checked as ``add`` checks its input, errors name the file and rows."""
    pa, _ = _pyarrow()
    first = 0
    with _parquet_file(path) as parquet:
        batches = parquet.iter_batches(batch_size=chunk_size, columns=["id", "text", "metadata", *columns.values()])
        try:
            for batch in batches:
                yield _chunk(path, batch, columns, dim, first)
                first += batch.num_rows
        except (pa.ArrowException, OSError) as error:
            raise CorruptIndexError(f"{path}: rows from {first} on cannot be read (truncated or corrupted): "
                                    f"{error}") from None


def _chunk(path: Path, batch: pa.RecordBatch, columns: Mapping[str, str], dim: int, first: int) -> ShardChunk:
    where = f"{path}, rows {first}-{first + batch.num_rows - 1}"
    try:
        metadatas = [None if raw is None else json.loads(raw) for raw in batch.column("metadata").to_pylist()]
        texts, ids, metadatas = check_documents(batch.column("text").to_pylist(), batch.column("id").to_pylist(),
                                                metadatas)
    except (TypeError, ValueError) as error:
        raise reworded(error, where) from None
    vectors = {q: _matrix(where, batch.column(column), dim) for q, column in columns.items()}
    return ShardChunk([Document(i, t, m) for i, t, m in zip(ids, texts, metadatas)], vectors)


def reworded(error: TypeError | ValueError, where: str) -> TypeError | ValueError:
    """``error``'s message prefixed with ``where``, as a plain ``TypeError`` or ``ValueError``."""
    return (TypeError if isinstance(error, TypeError) else ValueError)(f"{where}: {error}")


def _matrix(where: str, column: pa.FixedSizeListArray, dim: int) -> np.ndarray:
    values = column.flatten()
    if column.null_count or values.null_count:
        raise ValueError(f"{where}: a vector is missing (null)")
    matrix = values.to_numpy(zero_copy_only=False).astype("float32", copy=False).reshape(len(column), dim)
    if not np.isfinite(matrix).all():
        raise ValueError(f"{where}: a vector holds NaN or infinity")
    return matrix
