"""Distributed embedding on Ray (issue 15, item 1), on one local Ray cluster per module
(2 CPUs, loopback): the vectors are single-process ``encode_many``'s, input order and ids
survive, a worker killed mid-job is replaced without duplicating or losing rows, and the
shards written are the ones ``inbedder index import`` takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import ray_faults  # noqa: E402

import inbedder_retrieval  # noqa: E402
from inbedder_retrieval import InBedder, InstructionIndex, read_shard_header  # noqa: E402
from inbedder_retrieval.cli import main  # noqa: E402
from inbedder_retrieval.distributed import (  # noqa: E402
    EmbedBatches,
    embed_dataset,
    read_dataset,
    write_dataset_shards,
)
from inbedder_retrieval.errors import IncompatibleIndexError  # noqa: E402
from inbedder_retrieval.shards import shard_header, shard_table  # noqa: E402
from inbedder_retrieval.stores import Document  # noqa: E402

# Ray's processes talk over loopback sockets, even under pytest-socket's --disable-socket
pytestmark = pytest.mark.enable_socket

Q1, Q2 = "How does the customer feel?", "Which product is discussed?"
TEXTS = [f"message number {i} about item {i % 3} and mood {i % 2}" for i in range(24)]
IDS = [f"doc-{i:02d}" for i in range(24)]
RECORDS = [{"id": d, "text": t, "shop": ["berlin", "paris"][i % 2]} for i, (d, t) in enumerate(zip(IDS, TEXTS))]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray cluster whose workers import this checkout and carry the crash fault
    (armed by creating the marker file this fixture yields)."""
    marker = tmp_path_factory.mktemp("faults") / "crash-once"
    paths = [str(Path(inbedder_retrieval.__file__).parents[1]), str(Path(__file__).parent),
             os.environ.get("PYTHONPATH", "")]
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", runtime_env={
        "env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, paths)), ray_faults.MARKER_ENV: str(marker)},
        "worker_process_setup_hook": "ray_faults.crash_once"})
    yield marker
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return tiny_model_dir("llama")


@pytest.fixture(scope="module")
def model(tiny):
    return InBedder.from_pretrained(tiny, device="cpu")


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def collect(embedded):
    """The rows of ``embedded`` as one table, in order."""
    return pa.concat_tables(embedded.iter_batches(batch_size=None, batch_format="pyarrow"))


def shard_rows(folder):
    """(ids, {instruction: matrix}) across the shards of ``folder``, in shard order."""
    ids, vectors = [], {}
    for path in sorted(folder.glob("*.parquet")):
        header, table = read_shard_header(path), pq.read_table(path)
        ids += table.column("id").to_pylist()
        for spec in header["instructions"]:
            vectors.setdefault(spec["instruction"], []).append(
                np.array(table.column(spec["column"]).to_pylist(), dtype="float32"))
    return ids, {q: np.concatenate(parts) for q, parts in vectors.items()}


def test_vectors_equal_single_process_encode_many(cluster, tiny, model):
    dataset = ray.data.from_items(RECORDS, override_num_blocks=4)
    table = collect(embed_dataset(dataset, [Q1, Q2], model=tiny, batch_size=5))
    assert table.column("id").to_pylist() == IDS and table.column("text").to_pylist() == TEXTS
    assert [json.loads(m) for m in table.column("metadata").to_pylist()] == [{"shop": r["shop"]} for r in RECORDS]
    header = shard_header(model, [Q1, Q2])
    assert json.loads(table.schema.metadata[b"inbedder"]) == header
    expected = model.encode_many(TEXTS, [Q1, Q2])
    for spec in header["instructions"]:
        vectors = np.array(table.column(spec["column"]).to_pylist(), dtype="float32")
        np.testing.assert_allclose(vectors, expected[spec["instruction"]], atol=1e-5)


def test_a_killed_worker_is_replaced_without_duplicates(cluster, tiny, model, tmp_path):
    cluster.touch()  # the first batch kills its worker; Ray restarts it and retries the batch
    first, second = write_jsonl(tmp_path / "a.jsonl", RECORDS[:13]), write_jsonl(tmp_path / "b.jsonl", RECORDS[13:])
    embedded = embed_dataset(read_dataset([first, second]), [Q1], model=tiny, batch_size=4)
    written = write_dataset_shards(embedded, tmp_path / "shards", rows_per_shard=10)
    assert not cluster.exists() and Path(f"{cluster}.taken").exists()  # the fault fired
    assert [path.name for path in written] == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    ids, vectors = shard_rows(tmp_path / "shards")
    assert ids == IDS  # every row once, in input order
    np.testing.assert_allclose(vectors[Q1], model.encode_many(TEXTS, [Q1])[Q1], atol=1e-5)


def test_cli_shards_import_into_an_index_unchanged(cluster, tiny, model, tmp_path, capsys):
    data = write_jsonl(tmp_path / "docs.jsonl", RECORDS)
    assert main(["embed-dataset", str(data), "-q", Q1, "-q", Q2, "-o", str(tmp_path / "shards"), "--model", str(tiny),
                 "--rows-per-shard", "10", "--batch-size", "8"]) == 0
    assert "Wrote 24 documents x 2 instructions in 3 shards" in capsys.readouterr().err
    with InstructionIndex.create(tmp_path / "added", model, instructions=[Q1, Q2]) as added:
        added.add(TEXTS, ids=IDS, metadatas=[{"shop": r["shop"]} for r in RECORDS])
    assert main(["index", "create", str(tmp_path / "imported"), "--model", str(tiny), "-q", Q1, "-q", Q2]) == 0
    assert main(["index", "import", str(tmp_path / "imported"), str(tmp_path / "shards")]) == 0
    assert "Imported 24 documents (0 already stored) from 3 shards" in capsys.readouterr().out
    with InstructionIndex.open(tmp_path / "imported") as imported, InstructionIndex.open(tmp_path / "added") as added:
        assert imported.get(IDS) == added.get(IDS)
        for instruction in (Q1, Q2):
            mine, theirs = imported.get_vectors(IDS, instruction), added.get_vectors(IDS, instruction)
            for doc_id in IDS:
                np.testing.assert_allclose(mine[doc_id], theirs[doc_id], atol=1e-5)
            hits = imported.search("item 2 and mood 0", instruction, k=5)
            assert [h.id for h in hits] == [h.id for h in added.search("item 2 and mood 0", instruction, k=5)]
            assert len(hits) == 5


def test_bad_input_is_refused_before_any_worker_starts(cluster, tiny):
    good = ray.data.from_items(RECORDS[:2])
    with pytest.raises(ValueError, match="one or more distinct"):
        embed_dataset(good, [], model=tiny)
    with pytest.raises(ValueError, match="one or more distinct"):
        embed_dataset(good, [Q1, Q1], model=tiny)
    with pytest.raises(TypeError, match="single str"):
        embed_dataset(good, Q1, model=tiny)
    with pytest.raises(ValueError, match="no 'body' column for the text"):
        embed_dataset(good, [Q1], model=tiny, text_column="body")
    with pytest.raises(ValueError, match="no 'id' column .* stable string id"):
        embed_dataset(ray.data.from_items([{"text": "a"}]), [Q1], model=tiny)
    with pytest.raises(TypeError, match="text column 'text' holds int64"):
        embed_dataset(ray.data.from_items([{"id": "a", "text": 3}]), [Q1], model=tiny)
    with pytest.raises(TypeError, match="id column 'id' holds int64"):
        embed_dataset(ray.data.from_items([{"id": 1, "text": "a"}]), [Q1], model=tiny)
    with pytest.raises(ValueError, match="num_gpus must be a number >= 0"):
        embed_dataset(good, [Q1], model=tiny, num_gpus=-1)
    with pytest.raises(ValueError, match="concurrency must be a positive integer"):
        embed_dataset(good, [Q1], model=tiny, concurrency=0)


def test_a_worker_refuses_a_model_other_than_the_drivers(tiny, model):
    header = shard_header(model, [Q1])
    header["model"] = {**header["model"], "fingerprint": "0" * 16}
    with pytest.raises(IncompatibleIndexError, match="every worker must load the same weights"):
        EmbedBatches(str(tiny), header, pooling=None, device="cpu", dtype="float32", text_column="text",
                     id_column="id", batch_size=8)


class Batches:
    """Stands in for an embedded dataset: ``iter_batches`` yields the given tables."""

    def __init__(self, *tables):
        self.tables = tables

    def iter_batches(self, batch_size, batch_format):
        yield from self.tables


def test_the_writer_refuses_duplicate_ids_and_foreign_rows(model, tmp_path):
    header = shard_header(model, [Q1])
    vectors = {Q1: np.ones((2, model.dim), dtype="float32")}
    first = shard_table(header, [Document("a", "x", {}), Document("b", "y", {})], vectors)
    again = shard_table(header, [Document("c", "x", {}), Document("a", "y", {})], vectors)
    with pytest.raises(ValueError, match="id 'a' appears twice"):
        write_dataset_shards(Batches(first, again), tmp_path / "twice", rows_per_shard=2)
    assert [p.name for p in (tmp_path / "twice").iterdir()] == ["shard-00000.parquet"]  # nothing after it
    with pytest.raises(ValueError, match="no shard header"):
        write_dataset_shards(Batches(first.replace_schema_metadata(None)), tmp_path / "bare")
    other = shard_table(shard_header(model, [Q2]), [Document("c", "z", {}), Document("d", "w", {})],
                        {Q2: vectors[Q1]})
    with pytest.raises(ValueError, match="two shard headers"):
        write_dataset_shards(Batches(first, other), tmp_path / "mixed", rows_per_shard=2)
    with pytest.raises(FileExistsError, match="already holds shards"):
        write_dataset_shards(Batches(first), tmp_path / "twice")


def test_cli_checks_before_ray_starts(tmp_path, capsys):
    data = write_jsonl(tmp_path / "docs.jsonl", RECORDS[:2])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "shard-00000.parquet").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("a text\n")
    cases = [([str(tmp_path / "missing.jsonl"), "-q", Q1, "-o", str(tmp_path / "o")], "No such input file"),
             ([str(data), "-q", Q1, "-o", str(tmp_path / "full")], "already holds shards"),
             ([str(data), "-q", Q1, "-q", Q1, "-o", str(tmp_path / "o")], "distinct"),
             ([str(data), str(tmp_path / "notes.txt"), "-q", Q1, "-o", str(tmp_path / "o")], "of one kind"),
             ([str(data), "-q", Q1, "-o", str(tmp_path / "o"), "--concurrency", "0"], "--concurrency")]
    for argv, message in cases:
        assert main(["embed-dataset", *argv]) == 2
        error = capsys.readouterr().err
        assert error.startswith("inbedder: error:") and message in error


def test_the_module_imports_without_ray_and_names_the_extra_when_ray_is_missing(tmp_path):
    code = """
        import sys
        import inbedder_retrieval.distributed as distributed
        print(sorted(m for m in ("ray", "torch", "pyarrow") if m in sys.modules))
        sys.modules["ray"] = None  # as if Ray were not installed
        try:
            distributed.require_ray()
        except ModuleNotFoundError as error:
            print(error)
    """
    output = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(Path(inbedder_retrieval.__file__).parents[1])})
    assert output.stdout.splitlines() == [
        "[]", "distributed embedding needs Ray Data: pip install 'inbedder-retrieval[ray]'"]


@pytest.mark.slow
def test_default_model_on_a_small_corpus(cluster, default_model):
    texts = ["The soup was cold and the waiter rude.", "My new phone charges in 20 minutes!",
             "I want my money back for the broken blender.", "Thanks, the laptop arrived early and works well.",
             "Where is my parcel? It is two weeks late.", "The hotel room was spotless and quiet.",
             "Please cancel my subscription today.", "The headphones stopped working after a day.",
             "Great coffee, friendly staff, will come back.", "Can I change the delivery address?",
             "The shoes are too small, I need a bigger size.", "Best pizza in town, crispy and hot."]
    dataset = ray.data.from_items([{"id": f"t{i}", "text": t} for i, t in enumerate(texts)], override_num_blocks=3)
    table = collect(embed_dataset(dataset, [Q1, Q2], batch_size=4))
    assert table.column("id").to_pylist() == [f"t{i}" for i in range(len(texts))]
    header = shard_header(default_model, [Q1, Q2])
    assert json.loads(table.schema.metadata[b"inbedder"]) == header
    expected = default_model.encode_many(texts, [Q1, Q2])
    for spec in header["instructions"]:
        vectors = np.array(table.column(spec["column"]).to_pylist(), dtype="float32")
        np.testing.assert_allclose(vectors, expected[spec["instruction"]], atol=1e-5)
