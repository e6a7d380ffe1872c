"""Fine-tuning tiny random models: loss goes down, resume works, the result loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from inbedder_retrieval import InBedder
from inbedder_retrieval.training import TrainingConfig, load_records, train

RECORDS_JSON = [
    {"input": f"text number {i} about {topic} and a {mood} mood", "instruction": question, "output": answer}
    for i, (topic, mood) in enumerate([("food", "happy"), ("phones", "angry"), ("hotels", "calm"), ("shoes", "sad")] * 4)
    for question, answer in (("What is the topic?", topic), ("How does the writer feel?", mood))
]


@pytest.fixture()
def records_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS_JSON) + "\n")
    return path


def config(**changes) -> TrainingConfig:
    base = dict(learning_rate=3e-3, effective_batch_size=8, micro_batch_size=4, max_steps=8, save_steps=4,
                warmup_ratio=0.0, log_steps=1)
    return TrainingConfig(**{**base, **changes})


def test_records_are_validated_with_the_line(tmp_path, records_file):
    assert len(load_records(records_file)) == len(RECORDS_JSON)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "instruction": "b", "output": "c"}\n\n{"input": "a", "instruction": "", "output": "c"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:3: field 'instruction' must be a non-empty string"):
        load_records(bad)
    bad.write_text('{"input": "a"\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: not valid JSON"):
        load_records(bad)
    with pytest.raises(FileNotFoundError):
        load_records(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("kind", ["llama", "roberta"])
def test_training_lowers_the_loss_and_the_result_loads(tiny_model_dir, records_file, tmp_path, kind):
    result = train(tiny_model_dir(kind), load_records(records_file), tmp_path / "out", config(max_steps=12),
                   device="cpu", show_progress_bar=False)
    assert result.steps == 12
    assert np.mean(result.losses[-3:]) < 0.9 * np.mean(result.losses[:3]), result.losses
    model = InBedder.from_pretrained(tmp_path / "out", device="cpu")
    assert model.description.family == ("causal" if kind == "llama" else "masked")
    vectors = model.encode(["text number 1 about phones"], "What is the topic?")
    assert vectors.shape == (1, 32) and np.isfinite(vectors).all()


def test_causal_labels_cover_only_the_answer(tiny_model_dir):
    from inbedder_retrieval.training import QARecord, causal_example

    backend = InBedder.from_pretrained(tiny_model_dir("llama"), device="cpu").backend
    ids, labels = causal_example(backend, QARecord("some text", "What?", "food"), 512)
    answer = [token for token in labels if token != -100]
    assert answer[-1] == backend.tokenizer.eos_token_id
    assert backend.tokenizer.decode(answer[:-1]) == " food"
    assert ids[-len(answer):] == answer and len(ids) == len(labels)


@pytest.mark.parametrize("kind", ["llama", "roberta"])
def test_resume_after_interruption_matches_an_uninterrupted_run(tiny_model_dir, records_file, tmp_path, monkeypatch, kind):
    import inbedder_retrieval.training as training

    records = load_records(records_file)
    straight = train(tiny_model_dir(kind), records, tmp_path / "straight", config(), device="cpu", show_progress_bar=False)
    original = training._save_checkpoint

    def save_then_crash(output_dir, model, optimizer, scheduler, state):
        original(output_dir, model, optimizer, scheduler, state)
        raise KeyboardInterrupt("interrupted after the first checkpoint")

    monkeypatch.setattr(training, "_save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model_dir(kind), records, tmp_path / "resumed", config(), device="cpu", show_progress_bar=False)
    monkeypatch.setattr(training, "_save_checkpoint", original)
    assert not (tmp_path / "resumed" / "inbedder.json").exists()
    resumed = train(tiny_model_dir(kind), records, tmp_path / "resumed", config(), device="cpu", show_progress_bar=False)
    assert resumed.steps == 8
    np.testing.assert_allclose(resumed.losses, straight.losses, rtol=1e-4)
    a = InBedder.from_pretrained(tmp_path / "straight", device="cpu").encode(["x y z"], "What?")
    b = InBedder.from_pretrained(tmp_path / "resumed", device="cpu").encode(["x y z"], "What?")
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_lora_adapter_trains_saves_and_loads_on_its_base(tiny_model_dir, records_file, tmp_path):
    base = tiny_model_dir("llama")
    result = train(base, load_records(records_file), tmp_path / "lora", config(lora=True, learning_rate=1e-2),
                   device="cpu", show_progress_bar=False)
    assert (tmp_path / "lora" / "adapter_config.json").exists()
    assert not (tmp_path / "lora" / "model.safetensors").exists()
    assert result.losses[-1] < result.losses[0]
    tuned = InBedder.from_pretrained(tmp_path / "lora", device="cpu")
    assert tuned.description.base_model == str(base)
    plain = InBedder.from_pretrained(base, device="cpu")
    texts = ["text number 3 about shoes"]
    assert not np.allclose(tuned.encode(texts, "What?"), plain.encode(texts, "What?"), atol=1e-4)
    assert isinstance(tuned.backend.model, torch.nn.Module) and not hasattr(tuned.backend.model, "peft_config")


def test_cli_train_and_distill(tiny_model_dir, records_file, tmp_path):
    from inbedder_retrieval.cli import main

    out = tmp_path / "cli-model"
    assert main(["train", "--base", str(tiny_model_dir("llama")), "--data", str(records_file), "-o", str(out),
                 "--max-steps", "2", "--micro-batch-size", "4", "--effective-batch-size", "4", "--device", "cpu"]) == 0
    assert (out / "inbedder.json").exists()
    texts = tmp_path / "texts.txt"
    texts.write_text("the soup was cold\nthe phone is fast\n")
    records = tmp_path / "distilled.jsonl"
    assert main(["distill", "-q", "What is it about?", "-q", "How does it feel?", "-i", str(texts), "-o", str(records),
                 "--model", str(out), "--device", "cpu"]) == 0
    distilled = load_records(records) if records.read_text().strip() else []
    assert all(r.instruction in ("What is it about?", "How does it feel?") and len(r.output.split()) <= 3 for r in distilled)


def test_short_answers_for_distillation():
    from inbedder_retrieval.training import _short_answer

    assert _short_answer("Frustrated.\nThe customer is upset", 3) == "Frustrated"
    assert _short_answer("  very happy indeed today!", 3) == "very happy indeed"
    assert _short_answer("", 3) == ""


def test_shipped_training_data_is_valid_and_separate_from_fixtures():
    from importlib import resources
    from pathlib import Path

    from inbedder_retrieval.training_data import load_texts

    data = Path(str(resources.files("inbedder_retrieval.data")))
    records = load_records(data / "train")
    assert len(records) >= 3000
    fixtures = [path for path in data.rglob("*.jsonl") if not {"train", "train_v2"} & set(path.relative_to(data).parts)]
    fixture_texts = {record[key] for path in fixtures  # every evaluation fixture, new ones too
                     for record in map(json.loads, filter(str.strip, path.read_text("utf-8").splitlines()))
                     for key in ("text", "text1", "text2") if key in record}
    assert len(fixture_texts) >= 400
    training_texts = {record.input for record in records} | {text.text for text in load_texts()}
    assert not fixture_texts & training_texts
    first_words = {record.output.split()[0].lower() for record in records}
    assert not first_words & {"the", "a", "an", "it", "this", "answer"}
