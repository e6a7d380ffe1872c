"""Embedding shards and their bulk import (issue 15, first slice): shards hold exactly what
``add`` stores, imports check every shard first, stream in chunks, never call the model and
resume after a kill."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from inbedder_retrieval import InBedder, read_shard_header, write_embedding_shards
from inbedder_retrieval.cli import main
from inbedder_retrieval.errors import CorruptIndexError, IncompatibleIndexError
from inbedder_retrieval.index import InstructionIndex
from inbedder_retrieval.shards import HEADER_KEY
from processes import child, wait_for

Q1, Q2, Q3 = "How does the customer feel?", "Which product is discussed?", "What does the customer want?"
TEXTS = [f"message number {i} about item {i % 3} and mood {i % 2}" for i in range(24)]
IDS = [f"doc-{i}" for i in range(24)]
METADATAS = [{"i": i, "shop": ["berlin", "paris"][i % 2]} for i in range(24)]
RECORDS = [{"id": d, "text": t, "metadata": m} for d, t, m in zip(IDS, TEXTS, METADATAS)]
BACKENDS = ["faiss", "qdrant"]


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return InBedder.from_pretrained(tiny_model_dir("llama"), device="cpu")


@pytest.fixture(scope="module")
def shards(model, tmp_path_factory):
    """24 records under Q1 and Q2 in three shards of 10, 10 and 4 rows."""
    out = tmp_path_factory.mktemp("shards")
    write_embedding_shards(model, RECORDS, [Q1, Q2], out, rows_per_shard=10)
    return out


def shard_vectors(folder, instruction):
    """{id: vector} of ``instruction`` across the shards of ``folder``."""
    found = {}
    for path in sorted(folder.glob("*.parquet")):
        header = read_shard_header(path)
        column = next(spec["column"] for spec in header["instructions"] if spec["instruction"] == instruction)
        table = pq.read_table(path)
        found.update(zip(table.column("id").to_pylist(), np.array(table.column(column).to_pylist(), dtype="float32")))
    return found


def empty_index(root, model, backend="faiss", instructions=(Q1, Q2)):
    return InstructionIndex.create(root, model, instructions=list(instructions), backend=backend)


def rewrite(source, target, header=None, table=None):
    """Copy shard ``source`` to ``target`` with another header and/or table."""
    original = pq.read_table(source)
    table = original if table is None else table
    header = read_shard_header(source) if header is None else header
    pq.write_table(table.replace_schema_metadata({HEADER_KEY: json.dumps(header).encode()}), target)
    return target


def state(index):
    """Everything an index stores: documents and vectors per instruction."""
    return index.get(IDS), {q: index.get_vectors(IDS, q) for q in index.instructions}


# -- the shard format -------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_shard_vectors_are_what_add_stores(tmp_path, model, shards, backend):
    with empty_index(tmp_path / "idx", model, backend) as index:
        index.add(TEXTS, ids=IDS, metadatas=METADATAS)
        for instruction in (Q1, Q2):
            stored, sharded = index.get_vectors(IDS, instruction), shard_vectors(shards, instruction)
            assert set(stored) == set(sharded) == set(IDS)
            for doc_id in IDS:
                np.testing.assert_allclose(sharded[doc_id], stored[doc_id], atol=1e-5)


def test_shard_layout_and_header(model, shards):
    paths = sorted(shards.glob("*.parquet"))
    assert [p.name for p in paths] == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    assert [pq.read_metadata(p).num_rows for p in paths] == [10, 10, 4]
    header = read_shard_header(paths[0])
    assert header["format_version"] == 1 and header["normalized"] is True
    assert header["model"] == {"name": model.name, "fingerprint": model.fingerprint, "pooling": model.pooling,
                               "layer": model.description.layer, "dim": model.dim, "dtype": "float32"}
    assert [spec["instruction"] for spec in header["instructions"]] == [Q1, Q2]
    schema = pq.read_schema(paths[0])
    assert schema.field("id").type == schema.field("text").type == schema.field("metadata").type == pa.string()
    assert schema.field(header["instructions"][0]["column"]).type == pa.list_(pa.float32(), model.dim)
    row = pq.read_table(paths[0]).slice(3, 1).to_pylist()[0]
    assert (row["id"], row["text"], json.loads(row["metadata"])) == (IDS[3], TEXTS[3], METADATAS[3])


def test_writer_checks_its_input(model, tmp_path):
    with pytest.raises(TypeError, match="iterable of mappings"):
        write_embedding_shards(model, "one text", [Q1], tmp_path / "a")
    with pytest.raises(ValueError, match=r"records\[0:3\]: texts\[1\] is empty"):
        write_embedding_shards(model, [{"text": "a"}, {"text": " "}, {"text": "c"}], [Q1], tmp_path / "b")
    with pytest.raises(ValueError, match=r"records\[2\]: id 'x' appears twice"):
        write_embedding_shards(model, [{"id": "x", "text": "a"}, {"id": "y", "text": "b"}, {"id": "x", "text": "c"}],
                               [Q1], tmp_path / "c", rows_per_shard=2)
    write_embedding_shards(model, [{"text": "a", "shop": "berlin"}], [Q1], tmp_path / "d")  # other fields: metadata
    row = pq.read_table(tmp_path / "d" / "shard-00000.parquet").to_pylist()[0]
    assert json.loads(row["metadata"]) == {"shop": "berlin"} and len(row["id"]) == 32
    with pytest.raises(FileExistsError, match="already holds shards"):
        write_embedding_shards(model, [{"text": "a"}], [Q1], tmp_path / "d")


def test_a_failed_write_leaves_no_shard_under_its_name(model, tmp_path, monkeypatch):
    real, calls = pq.write_table, []

    def fail_second(table, where, **kwargs):
        calls.append(1)
        real(table.slice(0, 1), where, **kwargs)  # half a shard reaches the temporary file ...
        if len(calls) == 2:
            raise OSError("disk full")  # ... then the writer dies

    monkeypatch.setattr(pq, "write_table", fail_second)
    with pytest.raises(OSError, match="disk full"):
        write_embedding_shards(model, RECORDS[:4], [Q1], tmp_path, rows_per_shard=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-00000.parquet"]  # the first is whole


# -- import -------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_import_equals_adding_the_texts(tmp_path, model, shards, backend):
    with empty_index(tmp_path / "added", model, backend) as added, \
            empty_index(tmp_path / "imported", model, backend) as imported:
        added.add(TEXTS, ids=IDS, metadatas=METADATAS)
        report = imported.import_embeddings([shards])
        assert (report.shards, report.imported, report.skipped) == (3, 24, 0) and len(imported) == 24
        (documents, vectors), (documents_added, vectors_added) = state(imported), state(added)
        assert documents == documents_added
        for instruction in (Q1, Q2):
            for doc_id in IDS:
                np.testing.assert_allclose(vectors[instruction][doc_id], vectors_added[instruction][doc_id], atol=1e-5)
        for query in ("message number 5", "item 2 and mood 0", "something else entirely"):
            for instruction in (Q1, Q2):
                assert ([h.id for h in imported.search(query, instruction, k=5)]
                        == [h.id for h in added.search(query, instruction, k=5)])
        again = imported.import_embeddings([shards])  # nothing new: every row is skipped
        assert (again.imported, again.skipped) == (0, 24) and len(imported) == 24


def test_import_updates_changed_documents_only(tmp_path, model, shards):
    with empty_index(tmp_path / "idx", model) as index:
        index.add(TEXTS[:5], ids=IDS[:5], metadatas=METADATAS[:5])
        index.add(["an old text"], ids=[IDS[5]], metadatas=[METADATAS[5]])
        index.add([TEXTS[6]], ids=[IDS[6]], metadatas=[{"old": True}])
        report = index.import_embeddings([shards])
        assert (report.imported, report.skipped) == (19, 5) and len(index) == 24
        assert [d.text for d in index.get(IDS[5:7])] == TEXTS[5:7] and index.get([IDS[6]])[0].metadata == METADATAS[6]


def test_import_streams_in_chunks_and_never_calls_the_model(tmp_path, model, shards, monkeypatch):
    sizes, upserts = [], []
    real_iter = pq.ParquetFile.iter_batches

    def spy_iter(self, *args, **kwargs):
        for batch in real_iter(self, *args, **kwargs):
            sizes.append(batch.num_rows)
            yield batch

    def refuse(*args, **kwargs):
        raise AssertionError("the import read a whole file or called the model")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy_iter)
    for name in ("read", "read_row_group", "read_row_groups"):
        monkeypatch.setattr(pq.ParquetFile, name, refuse)
    monkeypatch.setattr(pq, "read_table", refuse)
    with empty_index(tmp_path / "idx", model) as index:
        for name in ("encode", "encode_many", "encode_queries", "encode_documents"):
            monkeypatch.setattr(index.model, name, refuse)
        real_upsert = index.store.upsert
        monkeypatch.setattr(index.store, "upsert", lambda docs, vectors: (upserts.append(len(docs)),
                                                                          real_upsert(docs, vectors)))
        report = index.import_embeddings([shards], chunk_size=3)
        assert report.imported == 24 and len(index) == 24
    assert max(sizes) <= 3 and sum(sizes) == 24 and max(upserts) <= 3 and sum(upserts) == 24


def test_a_shard_of_another_model_is_refused_before_anything_is_written(tmp_path, model, shards, tiny_model_dir):
    other = InBedder.from_pretrained(tiny_model_dir("opt"), device="cpu")
    assert other.dim == model.dim and other.fingerprint != model.fingerprint
    write_embedding_shards(other, RECORDS[:3], [Q1, Q2], tmp_path / "other")
    bad = tmp_path / "other" / "shard-00000.parquet"
    with empty_index(tmp_path / "idx", model) as index:
        with pytest.raises(IncompatibleIndexError) as error:
            index.import_embeddings([shards, bad])  # the good shards come first: still nothing written
        message = str(error.value)
        assert str(bad) in message and model.fingerprint in message and other.fingerprint in message
        assert len(index) == 0


def test_a_shard_of_another_dimension_is_refused(tmp_path, model, shards):
    source = shards / "shard-00002.parquet"
    header = read_shard_header(source)
    header["model"]["dim"] = 16
    table = pq.read_table(source)
    for spec in header["instructions"]:
        halves = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(4 * 16, dtype="float32")), 16)
        table = table.set_column(table.schema.get_field_index(spec["column"]), spec["column"], halves)
    bad = rewrite(source, tmp_path / "dim16.parquet", header, table)
    with empty_index(tmp_path / "idx", model) as index:
        with pytest.raises(IncompatibleIndexError, match=f"{bad}.*dimension 16.*dimension {model.dim}"):
            index.import_embeddings([bad])
        assert len(index) == 0


def test_a_missing_instruction_is_refused_and_an_extra_one_ignored(tmp_path, model, shards, caplog):
    with empty_index(tmp_path / "idx", model, instructions=(Q1, Q2, Q3)) as index:
        with pytest.raises(IncompatibleIndexError, match=f"no vectors for the instruction.*{Q3}"):
            index.import_embeddings([shards])
        assert len(index) == 0
    with empty_index(tmp_path / "one", model, instructions=(Q2,)) as index:
        with caplog.at_level("WARNING", logger="inbedder_retrieval.index"):
            report = index.import_embeddings([shards])
        assert Q1 in caplog.text and "ignored" in caplog.text
        assert report.imported == 24 and index.instructions == [Q2]
        stored, sharded = index.get_vectors(IDS, Q2), shard_vectors(shards, Q2)
        assert all(np.allclose(stored[i], sharded[i], atol=1e-5) for i in IDS)


def test_damaged_and_foreign_files_are_clear_errors_naming_them(tmp_path, model, shards):
    whole = (shards / "shard-00000.parquet").read_bytes()
    truncated, garbage, foreign = tmp_path / "truncated.parquet", tmp_path / "garbage.parquet", tmp_path / "plain.parquet"
    truncated.write_bytes(whole[: len(whole) // 2])
    garbage.write_bytes(b"not a parquet file at all" * 10)
    pq.write_table(pa.table({"id": ["a"], "text": ["b"]}), foreign)
    with empty_index(tmp_path / "idx", model) as index:
        for path, error, message in ((truncated, CorruptIndexError, "truncated or corrupted"),
                                     (garbage, CorruptIndexError, "truncated or corrupted"),
                                     (foreign, ValueError, "not an inbedder embedding shard")):
            with pytest.raises(error, match=message) as raised:
                read_shard_header(path)
            assert str(path) in str(raised.value)
            with pytest.raises(error, match=message):
                index.import_embeddings([shards, path])
        with pytest.raises(FileNotFoundError, match="No such shard"):
            index.import_embeddings([tmp_path / "nowhere.parquet"])
        assert len(index) == 0


def test_bad_rows_are_refused_naming_the_file_and_rows(tmp_path, model, shards):
    source = shards / "shard-00002.parquet"
    table = pq.read_table(source)
    blank = table.set_column(1, "text", pa.array(["ok", "  ", "ok", "ok"]))
    broken = table.set_column(2, "metadata", pa.array(["{}", "{}", "{not json", "{}"]))
    listed = table.set_column(2, "metadata", pa.array(["[1]", "{}", "{}", "{}"]))
    column = read_shard_header(source)["instructions"][1]["column"]
    values = np.zeros((4, model.dim), dtype="float32")
    values[2, 5] = np.nan
    nan = table.set_column(table.schema.get_field_index(column), column,
                           pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), model.dim))
    with empty_index(tmp_path / "idx", model) as index:
        for name, bad_table, error, message in (("blank", blank, ValueError, r"texts\[1\] is empty"),
                                                ("broken", broken, ValueError, "Expecting"),
                                                ("listed", listed, TypeError, r"metadatas\[0\] must be a mapping"),
                                                ("nan", nan, ValueError, "NaN")):
            bad = rewrite(source, tmp_path / f"{name}.parquet", table=bad_table)
            with pytest.raises(error, match=f"{bad}, rows 0-3: .*{message}"):
                index.import_embeddings([bad])
        assert len(index) == 0


def test_null_metadata_is_empty(tmp_path, model, shards):
    source = shards / "shard-00002.parquet"
    table = pq.read_table(source)
    table = table.set_column(2, "metadata", pa.array([None] * 4, pa.string()))
    with empty_index(tmp_path / "idx", model) as index:
        index.import_embeddings([rewrite(source, tmp_path / "null.parquet", table=table)])
        assert [d.metadata for d in index.get(IDS[20:])] == [{}] * 4


def test_partial_files_of_a_killed_writer_are_not_shards(tmp_path, model, shards):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "shard-00000.parquet").write_bytes((shards / "shard-00000.parquet").read_bytes())
    (folder / ".shard-00001.parquet.0123456789ab.partial").write_bytes(b"half a shard")
    with empty_index(tmp_path / "idx", model) as index:
        assert index.import_embeddings([folder]).imported == 10


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_import_resumes_without_duplicates(tmp_path, model, shards, backend):
    root, marker = tmp_path / "idx", tmp_path / "marker"
    empty_index(root, model, backend).close()
    # the third chunk's upsert runs, then the process stops inside its transaction and is killed
    process = child(f"""
        import pathlib, time
        from inbedder_retrieval.index import InstructionIndex
        index = InstructionIndex.open({str(root)!r})
        real, calls = index.store.upsert, []
        def stop_in_third(*args, **kwargs):
            real(*args, **kwargs)
            calls.append(1)
            if len(calls) == 3:
                pathlib.Path({str(marker)!r}).touch()
                time.sleep(600)
        index.store.upsert = stop_in_third
        index.import_embeddings([{str(shards)!r}], chunk_size=4)
    """, tmp_path)
    wait_for(marker, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with InstructionIndex.open(root) as index:
        assert len(index) == 8  # two whole chunks, nothing of the third
        assert [d is not None for d in index.get(IDS)] == [True] * 8 + [False] * 16
        report = index.import_embeddings([shards], chunk_size=4)  # the lock died with the process
        assert (report.imported, report.skipped) == (16, 8) and len(index) == 24
        assert [d.text for d in index.get(IDS)] == TEXTS
        sharded = shard_vectors(shards, Q1)
        stored = index.get_vectors(IDS, Q1)
        assert all(np.allclose(stored[i], sharded[i], atol=1e-5) for i in IDS)
        assert all(index.search(text, Q1, k=1)[0].id == doc_id for doc_id, text in zip(IDS, TEXTS))


# -- the command line ----------------------------------------------------------------------------
def test_cli_embed_shards_and_index_import(tmp_path, tiny_model_dir, capsys):
    llama, opt = str(tiny_model_dir("llama")), str(tiny_model_dir("opt"))
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": d, "text": t, "shop": m["shop"]}) + "\n"
                            for d, t, m in zip(IDS, TEXTS, METADATAS)))
    out, index_path = tmp_path / "shards", tmp_path / "idx"
    assert main(["embed-shards", "-i", str(docs), "-q", Q1, "-q", Q2, "-o", str(out), "--rows-per-shard", "10",
                 "--model", llama, "--device", "cpu"]) == 0
    assert "Wrote 24 documents x 2 instructions in 3 shards" in capsys.readouterr().err
    assert main(["index", "create", str(index_path), "-q", Q1, "-q", Q2, "--model", llama, "--device", "cpu"]) == 0
    assert main(["index", "import", str(index_path), str(out), "--chunk-size", "7"]) == 0
    assert "Imported 24 documents (0 already stored) from 3 shards" in capsys.readouterr().out
    assert main(["index", "import", str(index_path), str(out / "shard-00001.parquet")]) == 0
    assert "Imported 0 documents (10 already stored) from 1 shards" in capsys.readouterr().out
    with InstructionIndex.open(index_path) as index:
        assert len(index) == 24 and index.get(["doc-3"])[0].metadata == {"shop": "paris"}

    assert main(["embed-shards", "-i", str(docs), "-q", Q1, "-q", Q2, "-o", str(tmp_path / "opt"),
                 "--model", opt, "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["index", "import", str(index_path), str(tmp_path / "opt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inbedder: error: ") and "shard-00000.parquet" in err and "fingerprint" in err
    assert "Traceback" not in err
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"garbage")
    for argv, message in (([str(garbage)], "garbage.parquet is not a readable Parquet file"),
                          ([str(tmp_path / "none")], "No such shard file or folder"),
                          ([str(out), "--chunk-size", "0"], "--chunk-size must be a positive integer")):
        assert main(["index", "import", str(index_path), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert main(["index", "import", str(tmp_path / "no-index"), str(out)]) == 2
    assert "holds no index" in capsys.readouterr().err
    assert main(["embed-shards", "-i", str(docs), "-q", Q1, "-o", str(out), "--model", llama]) == 2
    assert "already holds shards" in capsys.readouterr().err
