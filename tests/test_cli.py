import json
import re

import numpy as np
import pytest

from inbedder_retrieval.cli import build_parser, main


@pytest.fixture()
def texts_file(tmp_path):
    path = tmp_path / "texts.jsonl"
    path.write_text("\n".join(json.dumps({"text": t}) for t in ["The soup was cold.", "Great phone, fast charging."]) + "\n")
    return path


def test_every_command_has_help(capsys):
    parser = build_parser()
    for command in ("models", "embed", "answer", "demo"):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: inbedder " + command in capsys.readouterr().out


def test_models_lists_the_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-inbedder*" in out and "smollm2-135m-instruct " in out and "BrandonZYW/roberta-large-InBedder" in out
    assert main(["models", "--json"]) == 0
    names = [entry["name"] for entry in json.loads(capsys.readouterr().out)]
    assert "BrandonZYW/opt-1.3b-InBedder" in names


def test_embed_writes_npy(tiny_model_dir, texts_file, tmp_path):
    output = tmp_path / "vectors.npy"
    code = main(["embed", "-q", "How does the customer feel?", "-i", str(texts_file), "-o", str(output),
                 "--model", str(tiny_model_dir("llama")), "--device", "cpu"])
    assert code == 0
    vectors = np.load(output, allow_pickle=False)
    assert vectors.shape == (2, 32) and vectors.dtype == np.float32


def test_answer_prints_jsonl(tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "texts.txt"
    path.write_text("first text\n\nsecond text\n")
    code = main(["answer", "-q", "What?", "-i", str(path), "--model", str(tiny_model_dir("t5")),
                 "--max-new-tokens", "2"])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["text"] for row in rows] == ["first text", "second text"]


def test_bad_input_file_gives_clear_error(tmp_path, capsys):
    missing = tmp_path / "missing.jsonl"
    assert main(["embed", "-q", "Q?", "-i", str(missing), "-o", str(tmp_path / "v.npy")]) == 2
    assert "No such input file" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok"}\n{"txt": "wrong field"}\n')
    assert main(["embed", "-q", "Q?", "-i", str(broken), "-o", str(tmp_path / "v.npy")]) == 2
    assert "broken.jsonl:2" in capsys.readouterr().err
    assert not (tmp_path / "v.npy").exists()


def test_index_commands_end_to_end(tiny_model_dir, tmp_path, capsys):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(d) for d in [
        {"id": "a", "text": "the soup was cold", "topic": "food"},
        {"id": "b", "text": "the phone is fast", "topic": "tech"},
        {"id": "c", "text": "the soup was hot", "topic": "food"},
    ]) + "\n")
    path = str(tmp_path / "idx")
    model = str(tiny_model_dir("llama"))
    assert main(["index", "create", path, "-q", "Q1?", "--model", model, "--device", "cpu"]) == 0
    assert main(["index", "add", path, "-i", str(docs)]) == 0
    assert main(["index", "add-instruction", path, "Q2?"]) == 0
    capsys.readouterr()
    assert main(["search", path, "the soup was cold", "-q", "Q2?", "-k", "2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["id"] == "a" and rows[0]["metadata"] == {"topic": "food"} and len(rows) == 2
    assert main(["search", path, "soup", "-q", "Q1?", "--filter", '{"topic": "tech"}', "--json"]) == 0
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == ["b"]
    assert main(["index", "info", path]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["documents"] == 3 and [s["instruction"] for s in info["instructions"]] == ["Q1?", "Q2?"]
    assert main(["index", "delete", path, "a", "zzz"]) == 0
    assert "Deleted 1 of 2" in capsys.readouterr().out
    assert main(["index", "remove-instruction", path, "Q1?"]) == 0
    assert main(["search", path, "soup", "-q", "Q1?"]) == 2
    assert "not an instruction of this index" in capsys.readouterr().err
    assert main(["index", "create", path, "--model", model]) == 2
    assert "already holds an index" in capsys.readouterr().err


@pytest.fixture()
def cli_index(tiny_model_dir, tmp_path):
    """An index folder with three documents under "Q1?", built through the CLI."""
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps({"id": i, "text": t, "n": n}) for n, (i, t) in
                              enumerate({"a": "the soup was cold", "b": "the phone is fast", "c": "a hot soup"}.items())))
    path = str(tmp_path / "idx")
    assert main(["index", "create", path, "-q", "Q1?", "--model", str(tiny_model_dir("llama")), "--device", "cpu"]) == 0
    assert main(["index", "add", path, "-i", str(docs)]) == 0
    return path


def error_of(capsys, argv) -> str:
    """Run the CLI, expecting a clean input error: exit 2, one message line, no traceback."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("inbedder: error: ") and "Traceback" not in err
    return err


def nested_json(depth: int) -> str:
    """A JSON object nested ``depth`` levels deep (``json.dumps`` itself fails at ~1000)."""
    return '{"child": ' * (depth - 1) + '{"leaf": 1}' + "}" * (depth - 1)


@pytest.mark.parametrize("depth", [1000, 200])
def test_index_add_deep_metadata_is_a_clean_error(cli_index, tmp_path, capsys, depth):
    """Was a RecursionError traceback. (Whether 1000 levels already fail in the JSON parser
    depends on the Python version's recursion limits.)"""
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"text": "fine"}) + '\n{"text": "deep", "metadata": ' + nested_json(depth) + "}\n")
    err = error_of(capsys, ["index", "add", cli_index, "-i", str(docs)])
    assert re.search(r"docs.jsonl:2: (JSON nested too deeply to read|metadata is nested deeper than 32 levels)", err)
    assert main(["index", "info", cli_index]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 3  # nothing was added


def test_search_filter_nested_300_deep_is_a_clean_error(cli_index, capsys):
    """Was ``sqlite3.OperationalError: parser stack overflow`` (deeper: RecursionError)."""
    for depth in (300, 2000):
        deep = '{"$and": [' * depth + '{"n": 1}' + "]}" * depth
        err = error_of(capsys, ["search", cli_index, "soup", "-q", "Q1?", "--filter", deep])
        assert "--filter" in err and "nested" in err
    assert "--filter: not valid JSON" in error_of(capsys, ["search", cli_index, "soup", "-q", "Q1?", "--filter", "{'n': 1}"])
    shallow = {"$and": [{"$or": [{"n": 0}, {"n": 2}]}, {"n": {"$gte": 1}}]}
    assert main(["search", cli_index, "soup", "-q", "Q1?", "--filter", json.dumps(shallow), "--json"]) == 0
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == ["c"]


def test_unknown_instruction_and_missing_index_are_clean_errors(cli_index, tmp_path, capsys):
    assert "'Q9?' is not an instruction of this index" in error_of(capsys, ["search", cli_index, "soup", "-q", "Q9?"])
    assert "not an instruction" in error_of(capsys, ["index", "remove-instruction", cli_index, "Q9?"])
    missing = str(tmp_path / "nowhere")
    for argv in (["search", missing, "soup", "-q", "Q1?"], ["index", "info", missing], ["index", "delete", missing, "a"],
                 ["index", "info", missing, "--no-model"]):
        assert "holds no index" in error_of(capsys, argv)


def test_unknown_model_name_is_printed_unquoted(tmp_path, capsys):
    """A KeyError's message, not its repr."""
    err = error_of(capsys, ["index", "create", str(tmp_path / "idx"), "--model", "no-such-model"])
    assert err.startswith("inbedder: error: Unknown model 'no-such-model'. Known models: ")


@pytest.mark.parametrize("content", ["", "\n  \n\n"])
def test_index_add_of_an_empty_file_says_so(cli_index, tmp_path, capsys, content):
    """Was "Added 0 documents" and exit 0."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text(content)
    assert f"no documents in {empty}" in error_of(capsys, ["index", "add", cli_index, "-i", str(empty)])
    assert f"no texts in {empty}" in error_of(capsys, ["embed", "-q", "Q?", "-i", str(empty), "-o", str(tmp_path / "v.npy")])


@pytest.mark.parametrize("lines, message", [
    ([b'{"text": "ok"}', b'{"text": "no closing brace"'], "bad.jsonl:2: not valid JSON (Expecting ',' delimiter"),
    ([b'{"text": "ok"}', b'', b'{"text": "caf\xe9"}'], "bad.jsonl:3: not valid UTF-8 (byte 14 of the line)"),
    ([b'["a list"]'], "bad.jsonl:1: expected an object with a string 'text' field"),
    ([b'{"text": 5}'], "bad.jsonl:1: expected an object with a string 'text' field"),
    ([b'{"text": "x \\ud800"}'], "bad.jsonl:1: 'text' holds a lone surrogate"),
    ([b'{"text": "ok"}', b'{"text": "  "}'], "bad.jsonl:2: 'text' is empty or blank"),
    ([b'{"text": "x", "metadata": {"v": NaN}}'], "bad.jsonl:1: metadata is not JSON-serialisable"),
])
def test_malformed_jsonl_names_file_and_line(cli_index, tmp_path, capsys, lines, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(lines) + b"\n")
    assert message in error_of(capsys, ["index", "add", cli_index, "-i", str(bad)])


def test_jsonl_lines_split_at_newlines_only(tmp_path):
    """A JSON string may hold U+2028 or a form feed literally (``ensure_ascii=False``); the
    old ``str.splitlines`` cut such a record in two. A byte-order mark is skipped."""
    from inbedder_retrieval.io import read_documents, read_texts

    texts = ["one\u2028two", "three\x0cfour", "five\x85six"]
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("\ufeff" + "\r\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in texts) + "\r\n",
                     encoding="utf-8")
    assert read_documents(jsonl)[0] == texts and read_texts(jsonl) == texts
    plain = tmp_path / "texts.txt"
    plain.write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert read_texts(plain) == texts


def test_bugs_still_show_a_traceback(monkeypatch, tmp_path):
    """Only the registered input errors become messages; anything else propagates."""
    import inbedder_retrieval.cli as cli

    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "cmd_models", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["models"])


def test_store_options_from_the_command_line(tiny_model_dir, tmp_path, capsys):
    """``index create --store-option KEY=VALUE`` (digits are integers) reaches the store: a
    Qdrant cluster setting on the embedded store, a malformed pair and an unknown FAISS option
    are clean errors; FAISS's ``factory`` still works and is recorded."""
    model = str(tiny_model_dir("llama"))
    capsys.readouterr()
    assert main(["index", "create", str(tmp_path / "q"), "--backend", "qdrant", "--model", model,
                 "--store-option", "shard_number=2"]) == 2  # checked by the store, after the model loads
    err = capsys.readouterr().err
    assert "inbedder: error: shard_number: options of a Qdrant server or cluster" in err and "Traceback" not in err
    err = error_of(capsys, ["index", "create", str(tmp_path / "bad"), "--store-option", "shard_number"])
    assert "--store-option takes KEY=VALUE, got 'shard_number'" in err
    err = error_of(capsys, ["index", "create", str(tmp_path / "f"), "--model", "/nonexistent/model",
                            "--store-option", "nlist=4"])  # refused before the model loads
    assert "Unknown FAISS store option 'nlist'; known: factory, metric, use_gpu, ef_search, nprobe, rerank" in err
    err = error_of(capsys, ["index", "create", str(tmp_path / "g"), "--backend", "qdrant", "--model",
                            "/nonexistent/model", "--store-option", "shards=2"])
    assert "Unknown Qdrant store option 'shards'" in err and "shard_number" in err
    path = tmp_path / "ok"
    assert main(["index", "create", str(path), "--model", model, "--device", "cpu",
                 "--store-option", "factory=HNSW16"]) == 0
    assert json.loads((path / "index.json").read_text())["store_options"] == {"factory": "HNSW16"}


def test_the_option_names_checked_early_are_those_the_stores_take():
    import inspect

    from inbedder_retrieval.stores import FAISS_OPTIONS, qdrant_options
    from inbedder_retrieval.stores.faiss_store import FaissStore
    from inbedder_retrieval.stores.qdrant_client_engine import COLLECTION_OPTIONS, UPLOAD_OPTIONS
    from inbedder_retrieval.stores.qdrant_store import QdrantStore

    def keywords(cls):
        return {name for name, p in inspect.signature(cls).parameters.items()
                if p.kind is p.KEYWORD_ONLY and name not in ("create", "trust_index")}

    assert set(FAISS_OPTIONS) == keywords(FaissStore)
    assert set(qdrant_options()) == keywords(QdrantStore) | set(COLLECTION_OPTIONS) | set(UPLOAD_OPTIONS)
