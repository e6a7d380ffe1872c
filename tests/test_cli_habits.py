"""CLI habits: input formats by extension, several queries, a default instruction, checks
before the model loads, ids with vectors, --show, quiet loading."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from inbedder_retrieval.cli import main
from inbedder_retrieval.io import read_documents, read_texts

DOCS = [{"id": "a", "text": "the soup was cold", "topic": "food"},
        {"id": "b", "text": "the phone is fast", "topic": "tech"},
        {"id": "c", "text": "a hot soup", "topic": "food"}]


def write_csv(path, rows):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture()
def index_path(tiny_model_dir, tmp_path):
    docs = write_csv(tmp_path / "docs.csv", DOCS)
    path = str(tmp_path / "idx")
    assert main(["index", "create", path, "-q", "Q1?", "-q", "Q2?", "--model", str(tiny_model_dir("llama")),
                 "--device", "cpu"]) == 0
    assert main(["index", "add", path, "-i", str(docs)]) == 0
    return path


def test_csv_header_is_not_a_text(tmp_path):
    """Was: a .csv was read as lines, so its header line became a text."""
    path = write_csv(tmp_path / "docs.csv", DOCS)
    texts, ids, metadatas = read_documents(path)
    assert texts == [d["text"] for d in DOCS] and ids == ["a", "b", "c"] and metadatas[1] == {"topic": "tech"}
    assert read_texts(path) == texts
    with pytest.raises(ValueError, match=r"docs.csv:1: the header line has no 'body' column .*--text-field"):
        read_texts(path, "body")


def test_parquet_input(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "docs.parquet"
    pq.write_table(pa.Table.from_pylist(DOCS), path)
    assert read_documents(path) == read_documents(write_csv(tmp_path / "docs.csv", DOCS))


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "docs.parquet").write_bytes(b"PAR1")
    with pytest.raises(ModuleNotFoundError, match="pip install pyarrow"):
        read_texts(tmp_path / "docs.parquet")


def test_search_several_queries_and_default_instruction(index_path, tmp_path, capsys, monkeypatch):
    queries = tmp_path / "queries.txt"
    queries.write_text("cold soup\nfast phone\n")
    capsys.readouterr()
    assert main(["search", index_path, "soup", "--queries", str(queries), "-k", "1", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["query"] for row in rows] == ["soup", "cold soup", "fast phone"]
    # the same as one query at a time under the first instruction, Q1?
    for row in rows:
        assert main(["search", index_path, row["query"], "-q", "Q1?", "-k", "1", "--json"]) == 0
        single = json.loads(capsys.readouterr().out)
        assert single["id"] == row["id"] and single["score"] == pytest.approx(row["score"], abs=1e-6)
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("soup\n\nphone\n"))
    assert main(["search", index_path, "--queries", "-", "-q", "Q2?", "-k", "2", "--show", "topic"]) == 0
    out = capsys.readouterr()
    assert out.out.count("query: ") == 2 and "topic" in out.out and "food" in out.out and "instruction:" not in out.err
    assert main(["search", index_path, "soup"]) == 0
    assert "instruction: 'Q1?'" in capsys.readouterr().err


def test_errors_in_cli_words_before_the_model_loads(index_path, tmp_path, capsys, monkeypatch):
    import inbedder_retrieval.embedder as embedder

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(embedder.InBedder, "from_pretrained", no_load)
    cases = [
        (["search", index_path, "soup", "-q", "Q9?"], "`inbedder index add-instruction"),
        (["search", index_path], "no query"),
        (["search", index_path, "soup", "-k", "0"], "k"),
        (["index", "remove-instruction", index_path, "Q9?"], "not an instruction"),
        (["index", "add-instruction", index_path, "Q1?"], "already an instruction"),
        (["index", "create", index_path, "-q", "Q?"], "`inbedder index add "),
        (["embed", "-q", "Q?", "-i", str(tmp_path / "docs.csv"), "-o", str(tmp_path / "v.txt")], ".npz"),
        (["cluster", "-q", "Q?", "-i", str(tmp_path / "docs.csv"), "-k", "9"], "between 1 and the number of texts (3)"),
        (["cluster", "-q", "Q?", "-i", str(tmp_path / "docs.csv"), "--k-min", "3"], "--k-min..--k-max (3..10)"),
        (["search", str(tmp_path / "nowhere"), "soup"], "`inbedder index create"),
        (["index", "add", str(tmp_path / "nowhere"), "-i", str(tmp_path / "docs.csv")], "`inbedder index create"),
        (["index", "delete", str(tmp_path / "nowhere"), "a"], "`inbedder index create"),
        (["index", "info", str(tmp_path / "nowhere")], "`inbedder index create"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "InstructionIndex" not in err and "Traceback" not in err, (argv, err)


def test_index_add_without_any_instruction_says_which_command(tiny_model_dir, tmp_path, capsys):
    path = str(tmp_path / "empty")
    assert main(["index", "create", path, "--model", str(tiny_model_dir("llama")), "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["index", "add", path, "-i", str(write_csv(tmp_path / "d.csv", DOCS))]) == 2
    assert f"`inbedder index add-instruction {path} INSTRUCTION`" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_embed_writes_ids_with_vectors(tiny_model_dir, tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    base, output = tmp_path / "v.npy", tmp_path / f"v{suffix}"
    for target in (base, output):
        assert main(["embed", "-q", "Q?", "-i", str(docs), "-o", str(target), "--model", str(tiny_model_dir("llama")),
                     "--device", "cpu"]) == 0
    if suffix == ".npz":
        with np.load(output) as data:
            ids, vectors = list(data["ids"]), data["vectors"]
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(output)
        ids, vectors = table["id"].to_pylist(), np.array(table["vector"].to_pylist(), dtype=np.float32)
    assert ids == ["a", "b", "c"]
    np.testing.assert_allclose(vectors, np.load(base), atol=1e-6)


def test_cluster_json_has_ids(tiny_model_dir, tmp_path):
    docs = write_csv(tmp_path / "docs.csv", DOCS)
    out = tmp_path / "clusters.json"
    assert main(["cluster", "-q", "Q?", "-i", str(docs), "-k", "2", "--json", str(out),
                 "--model", str(tiny_model_dir("llama")), "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    assert result["ids"] == ["a", "b", "c"] and len(result["labels"]) == 3


def test_weight_loading_bars_are_silent_unless_verbose(tiny_model_dir, tmp_path):
    texts = tmp_path / "t.txt"
    texts.write_text("one\ntwo\n")
    run = [sys.executable, "-c", "import sys; from inbedder_retrieval.cli import main; sys.exit(main())"]
    args = ["embed", "-q", "Q?", "-i", str(texts), "-o", str(tmp_path / "v.npy"),
            "--model", str(tiny_model_dir("llama")), "--device", "cpu"]
    env = {**__import__("os").environ}
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    env.pop("TQDM_DISABLE", None)
    quiet = subprocess.run(run + args, capture_output=True, text=True, env=env, timeout=300, check=True)
    loud = subprocess.run(run + ["--verbose"] + args, capture_output=True, text=True, env=env, timeout=300, check=True)
    assert "Loading weights" not in quiet.stderr and "Loading weights" in loud.stderr
