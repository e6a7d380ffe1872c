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
    assert "smollm2-135m-instruct*" in out and "BrandonZYW/roberta-large-InBedder" in out
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
