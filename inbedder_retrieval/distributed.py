"""Distributed embedding on Ray: a Ray Dataset of documents in, the same rows with their
vectors under each instruction out, written as embedding shards (``shards.py``) that
``InstructionIndex.import_embeddings`` / ``inbedder index import`` read unchanged.

Each actor loads the model once and embeds its batches with ``encode_many`` (the function
``InstructionIndex.add`` uses: a causal model encodes a text's prompt prefix once for all
instructions). The driver loads the model too, once, to check the instructions and to record
the model (name, fingerprint, pooling, layer, dimension) in the shards' header; every actor
checks that it loaded a model with that fingerprint, so all rows hold comparable vectors.

This module is light to import: Ray, pyarrow and the model stack load on first use. Ray
comes with the ``ray`` extra: ``pip install 'inbedder-retrieval[ray]'``.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import IncompatibleIndexError
from .io import expand_sources, record_metadata
from .shards import (
    HEADER_KEY,
    distinct_instructions,
    refuse_existing_shards,
    reworded,
    shard_header,
    shard_schema,
    shard_table,
    write_shard,
)
from .stores.base import Document
from .validation import check_documents, check_positive_int

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

#: input file extension -> the ``ray.data`` reader of such files
READERS = {".jsonl": "read_json", ".parquet": "read_parquet", ".csv": "read_csv"}


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or a ``ModuleNotFoundError`` naming the extra."""
    try:
        import ray
        import ray.data
    except ModuleNotFoundError:
        raise ModuleNotFoundError("distributed embedding needs Ray Data: "
                                  "pip install 'inbedder-retrieval[ray]'") from None
    return ray


class EmbedBatches:
    """The Ray Data actor: loads the model once, then turns each batch of rows (a pyarrow
    table with the text and id columns; other columns are the metadata, or a ``metadata``
    column if there is one) into shard rows: ``id``, ``text``, ``metadata`` (JSON) and one
    vector column per instruction, in the schema of ``header`` (``shards.shard_schema``)."""

    def __init__(self, model: str | None, header: dict[str, Any], *, pooling: str | None, device: str,
                 dtype: str, text_column: str, id_column: str, batch_size: int) -> None:
        from .embedder import InBedder
        from .index import model_record

        self.model = InBedder.from_pretrained(model, pooling=pooling, device=device, dtype=dtype)
        if model_record(self.model) != header["model"]:
            raise IncompatibleIndexError(
                f"this worker loaded {model!r} as {model_record(self.model)}, the driver as {header['model']}: "
                "every worker must load the same weights (the same files, inbedder version and dtype)")
        self.header = header
        self.instructions = [spec["instruction"] for spec in header["instructions"]]
        self.text_column, self.id_column, self.batch_size = text_column, id_column, batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        from .index import document_vectors

        rows = batch.to_pylist()
        ids = [row.get(self.id_column) for row in rows]
        try:
            texts, ids, metadatas = check_documents(
                [row.get(self.text_column) for row in rows], ids,
                [record_metadata(row, self.text_column, self.id_column) for row in rows])
        except (TypeError, ValueError) as error:  # the checks name positions within the batch
            raise reworded(error, f"the batch of {len(rows)} rows from id {ids[0]!r} on") from None
        vectors = document_vectors(self.model, texts, self.instructions, batch_size=self.batch_size)
        return shard_table(self.header, [Document(*document) for document in zip(ids, texts, metadatas)], vectors)


def embed_dataset(
    dataset: ray.data.Dataset,
    instructions: Sequence[str],
    *,
    model: str | Path | None = None,
    text_column: str = "text",
    id_column: str = "id",
    batch_size: int = 64,
    concurrency: int = 1,
    num_gpus: float = 0,
    num_cpus: float | None = None,
    pooling: str | None = None,
    dtype: str | None = None,
) -> ray.data.Dataset:
    """Embed the rows of ``dataset`` under ``instructions`` on ``concurrency`` Ray actors.

    Every row needs a string id in ``id_column`` (ids are what an import upserts by, so they
    must not change when a job is re-run: none are generated) and a non-blank string in
    ``text_column``; its other columns, or its ``metadata`` column if it has one (a struct),
    are its metadata. The result has the rows of an embedding shard: ``id``, ``text``,
    ``metadata`` (a JSON string) and one ``fixed_size_list<float32>[dim]`` column per
    instruction (named as in the shards' header, which every block's schema carries under
    ``shards.HEADER_KEY``); write it with ``write_dataset_shards``.

    ``model`` is a registry name, hub id or folder that every node can load (default: the
    shipped model). Each actor takes ``num_gpus`` GPUs (a fraction packs several actors on
    one GPU; > 0 embeds on CUDA) and ``num_cpus`` CPUs (Ray's default: 1); leave CPUs free for
    the read tasks. ``dtype`` defaults to float32 on CPU and GPU actors alike: it is part of
    the model's fingerprint, and float32 vectors import into an index made on a CPU in float32
    (the default model is launch-bound on a GPU, so bfloat16 buys it no speed: measured on an
    H200, ``benchmarks/README.md``); pass ``"bfloat16"`` for large models and import into an
    index built in bfloat16.

    Rows come out in input order: this sets ``preserve_order`` in the dataset's
    ``DataContext`` (which Ray shares with the datasets derived from the same source). A
    worker that dies is restarted and its batch embedded again (Ray Data's actor retries).
    Everything that can be checked is checked before any actor starts: the instructions
    (one or more, distinct, accepted by the model), the columns and their types.
    """
    ray = require_ray()
    import pyarrow as pa

    from .embedder import InBedder

    instructions = distinct_instructions(instructions)
    batch_size = check_positive_int(batch_size, "batch_size")
    concurrency = check_positive_int(concurrency, "concurrency")
    _check_resource(num_gpus, "num_gpus")
    if num_cpus is not None:
        _check_resource(num_cpus, "num_cpus")
    _check_columns(pa, dataset, text_column, id_column)
    device, dtype = ("cuda" if num_gpus else "cpu"), dtype or "float32"
    name = None if model is None else str(model)
    header = shard_header(InBedder.from_pretrained(name, pooling=pooling, device="cpu", dtype=dtype), instructions)
    dataset.context.execution_options.preserve_order = True
    resources = {"num_gpus": num_gpus} | ({} if num_cpus is None else {"num_cpus": num_cpus})
    return dataset.map_batches(
        EmbedBatches, batch_size=batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        fn_constructor_kwargs={"model": name, "header": header, "pooling": pooling, "device": device,
                               "dtype": dtype, "text_column": text_column, "id_column": id_column,
                               "batch_size": batch_size},
        **resources)


def _check_resource(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{what} must be a number >= 0, got {value!r}")


def _check_columns(pa: Any, dataset: ray.data.Dataset, text_column: str, id_column: str) -> None:
    """The dataset has string ``text_column`` and ``id_column`` columns (types a block format
    other than Arrow reports are left to the per-row checks)."""
    schema = dataset.schema()
    if schema is None:
        raise ValueError("the dataset has no rows")
    types = dict(zip(schema.names, schema.types))
    for column, role, hint in ((text_column, "text", "text_column"), (id_column, "id", "id_column")):
        if column not in types:
            raise ValueError(f"the dataset has no {column!r} column for the {role} (columns: {', '.join(types)}); "
                             f"name it with {hint}" + ("; every row needs a stable string id" if role == "id" else ""))
        kind = types[column]
        if isinstance(kind, pa.DataType) and not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise TypeError(f"the {role} column {column!r} holds {kind}, expected strings")


def write_dataset_shards(embedded: ray.data.Dataset, out_dir: str | Path, *,
                         rows_per_shard: int = 10_000) -> list[Path]:
    """Run ``embedded`` (``embed_dataset``'s output) and write its rows, in order, to
    ``out_dir`` as embedding shards of ``rows_per_shard`` rows (``shard-00000.parquet``, ...);
    returns their paths.

    The rows stream through this process, one shard at a time; each shard is written to a
    temporary name and renamed when whole. ``out_dir`` must hold no shards yet, and an id
    that appears twice is an error (nothing after it is written).
    """
    check_positive_int(rows_per_shard, "rows_per_shard")
    out = Path(out_dir)
    refuse_existing_shards(out)
    written: list[Path] = []
    seen: set[str] = set()
    header: bytes | None = None
    for number, table in enumerate(embedded.iter_batches(batch_size=rows_per_shard, batch_format="pyarrow")):
        raw = (table.schema.metadata or {}).get(HEADER_KEY)
        if raw is None or header not in (None, raw):
            raise ValueError("write_dataset_shards writes the output of one embed_dataset call "
                             + ("(these rows have no shard header)" if raw is None else "(two shard headers)"))
        header = raw
        for doc_id in table.column("id").to_pylist():
            if doc_id in seen:
                raise ValueError(f"id {doc_id!r} appears twice in the dataset")
            seen.add(doc_id)
        written.append(write_shard(out, number, table.cast(shard_schema(json.loads(raw)))))
    return written


def input_files(sources: Iterable[str | Path]) -> list[Path]:
    """The input files named by ``sources``: files, and the files of folders (sorted by name,
    hidden ones left out); all ``.jsonl``, all ``.parquet`` or all ``.csv``."""
    files = expand_sources(sources, lambda folder: (path for path in folder.iterdir()
                                                    if path.is_file() and not path.name.startswith(".")),
                           kind="input", content="input file")
    if not files:
        raise ValueError("sources: no input file or folder given")
    suffixes = sorted({path.suffix.lower() for path in files})
    if len(suffixes) != 1 or suffixes[0] not in READERS:
        raise ValueError(f"inputs must all be {', '.join(READERS)} files of one kind, got {', '.join(suffixes)} "
                         f"({files[0]} ...)")
    return files


def read_dataset(sources: Iterable[str | Path]) -> ray.data.Dataset:
    """The rows of the ``input_files`` of ``sources`` as a Ray Dataset, in file order."""
    files = input_files(sources)
    ray = require_ray()
    return getattr(ray.data, READERS[files[0].suffix.lower()])([str(path) for path in files])
