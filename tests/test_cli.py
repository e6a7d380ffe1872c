import json

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
