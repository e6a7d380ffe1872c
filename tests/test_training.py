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
    for field in ("qtype", "group"):
        bad.write_text(json.dumps({"input": "a", "instruction": "b", "output": "c", field: ["x"]}) + "\n")
        with pytest.raises(ValueError, match=rf"bad.jsonl:1: field '{field}' must be a string, got \['x'\]"):
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


def test_a_lora_run_on_a_lora_inbedder_trains_its_adapter_further(tiny_model_dir, records_file, tmp_path):
    """Continuing an adapter: it starts where the first run ended (not from a fresh LoRA),
    saves an adapter on the first run's base, and a rank that differs is refused."""
    base, records = tiny_model_dir("llama"), load_records(records_file)
    first = train(base, records, tmp_path / "first", config(lora=True, learning_rate=1e-2), device="cpu",
                  show_progress_bar=False)
    fresh = train(base, records, tmp_path / "fresh", config(lora=True, learning_rate=1e-9, max_steps=2), device="cpu",
                  show_progress_bar=False)
    more = train(tmp_path / "first", records, tmp_path / "more", config(lora=True, learning_rate=1e-9, max_steps=2),
                 device="cpu", show_progress_bar=False)
    # a near-zero learning rate: the continued run's loss is the first run's end, not a fresh adapter's start
    assert more.losses[0] < fresh.losses[0] and abs(more.losses[0] - first.losses[-1]) < abs(fresh.losses[0] - first.losses[-1])
    continued = InBedder.from_pretrained(tmp_path / "more", device="cpu")
    assert continued.description.base_model == str(base)
    assert f"continuing the adapter of {tmp_path / 'first'}" in continued.description.description
    texts = ["text number 3 about shoes"]
    np.testing.assert_allclose(continued.encode(texts, "What?"),
                               InBedder.from_pretrained(tmp_path / "first", device="cpu").encode(texts, "What?"), atol=1e-3)
    with pytest.raises(ValueError, match=r"LoRA adapter of rank 16 \(alpha 32\); continuing it needs lora_r=16"):
        train(tmp_path / "first", records, tmp_path / "r8", config(lora=True, lora_r=8, lora_alpha=16), device="cpu",
              show_progress_bar=False)
    assert not (tmp_path / "r8").exists()  # refused before anything was loaded or written


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


# -- wording augmentation, the contrastive term, the pooled layer -------------------------
AUGMENTED_JSON = [
    {**record, "instructions": [record["instruction"], record["instruction"].replace("?", " here?"),
                                "Tell me: " + record["instruction"]], "qtype": record["instruction"][:8]}
    for record in RECORDS_JSON
]


@pytest.fixture()
def augmented_file(tmp_path):
    path = tmp_path / "augmented.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in AUGMENTED_JSON) + "\n")
    return path


def test_wording_is_drawn_per_epoch_from_the_record_alone(augmented_file):
    from inbedder_retrieval.training import QARecord, wording

    record = load_records(augmented_file)[0]
    draws = [wording(record, 0, epoch, 42) for epoch in range(12)]
    assert set(draws) == set(record.instructions)
    assert draws == [wording(record, 0, epoch, 42) for epoch in range(12)]
    assert wording(QARecord("t", "Q?", "a"), 0, 3, 42) == "Q?"  # no alternatives: its own wording


def test_augmented_training_asks_each_record_in_several_wordings(tiny_model_dir, augmented_file, tmp_path, monkeypatch):
    import inbedder_retrieval.training as training

    seen = []
    original = training.EXAMPLE_BUILDERS["causal"]

    def spy(backend, record, max_length):
        seen.append((record.input, record.instruction))
        return original(backend, record, max_length)

    monkeypatch.setitem(training.EXAMPLE_BUILDERS, "causal", spy)
    records = load_records(augmented_file)
    train(tiny_model_dir("llama"), records, tmp_path / "out", config(augment_wordings=True, max_steps=16),
          device="cpu", show_progress_bar=False)  # 4 epochs of 32 records
    pools = {(r.input, r.output): r.instructions for r in records}
    by_text = {}
    for text, instruction in seen:
        by_text.setdefault(text, set()).add(instruction)
    assert all(instruction in {w for (t, _), pool in pools.items() if t == text for w in pool}
               for text, instruction in seen)
    assert sum(len(asked) > 2 for asked in by_text.values()) >= len(by_text) // 2


def test_epoch_order_without_pairing_is_the_reference_shuffle_and_pairing_groups_positives():
    import random

    from inbedder_retrieval.training import epoch_order

    keys = [("topic", answer) for answer in "aabbbcdd"] * 3
    reference = list(range(len(keys)))
    random.Random(7 + 2).shuffle(reference)
    assert epoch_order(keys, 7, 2) == reference
    paired = epoch_order(keys, 7, 2, paired=True)
    assert sorted(paired) == list(range(len(keys)))
    pairs = [paired[i : i + 2] for i in range(0, 2 * (len(keys) // 2), 2)]
    assert sum(keys[a] == keys[b] for a, b in pairs) >= len(keys) // 2 - 2


def test_paired_order_spreads_unpaired_records_over_the_epoch():
    """Free-form records have keys of their own: a run that stops halfway through an epoch
    must still see about half of them (they were all put last)."""
    from inbedder_retrieval.training import epoch_order

    keys = [("topic", answer) for answer in "ab" * 200] + [(f"free {i}", "x") for i in range(400)]
    order = epoch_order(keys, 3, 0, paired=True)
    assert sorted(order) == list(range(len(keys)))
    first_half = order[: len(order) // 2]
    assert 150 <= sum(index >= 400 for index in first_half) <= 250
    pairs = [order[i : i + 2] for i in range(0, len(order), 2)]
    assert sum(keys[a] == keys[b] for a, b in pairs) == 200  # every "topic" record still has its partner beside it


def test_contrastive_loss_is_supervised_infonce():
    from inbedder_retrieval.training import contrastive_loss

    torch.manual_seed(0)
    vectors = torch.randn(5, 8, requires_grad=True)
    keys = ["a", "a", "b", "a", "c"]
    unit = torch.nn.functional.normalize(vectors.detach(), dim=-1).numpy()
    logits = unit @ unit.T / 0.1
    expected = []
    for i in range(5):
        others = [j for j in range(5) if j != i]
        positives = [j for j in others if keys[j] == keys[i]]
        if positives:
            log_norm = np.log(np.exp(logits[i, others]).sum())
            expected.append(-np.mean([logits[i, j] - log_norm for j in positives]))
    loss = contrastive_loss(vectors, keys, 0.1)
    assert loss.item() == pytest.approx(np.mean(expected), rel=1e-5)
    loss.backward()
    assert vectors.grad.abs().sum() > 0
    alone = contrastive_loss(vectors, ["a", "b", "c", "d", "e"], 0.1)
    assert alone.item() == 0.0 and alone.requires_grad


def test_weight_zero_is_exactly_the_reference_loss_and_the_pooled_vector_is_the_embedding(tiny_model_dir):
    from inbedder_retrieval.training import QARecord, _causal_pooled, _collate, batch_loss, causal_example

    model = InBedder.from_pretrained(tiny_model_dir("llama"), device="cpu")
    backend = model.backend
    records = [QARecord(r["input"], r["instruction"], r["output"]) for r in RECORDS_JSON[:6]]
    batch = _collate([causal_example(backend, r, 512) for r in records], backend.tokenizer.pad_token_id, backend.device)
    keys = [r.contrast_key for r in records]
    with torch.no_grad():
        reference = backend.model(**batch).loss
        plain, term = batch_loss(backend.model, batch, keys, "causal", config())
        assert term is None and plain.item() == reference.item()
        total, term = batch_loss(backend.model, batch, keys, "causal", config(contrastive_weight=0.5))
        assert total.item() == pytest.approx(reference.item() + 0.5 * term.item(), rel=1e-6)
        for layer in (-1, 1):
            states = backend.model(**batch, output_hidden_states=True).hidden_states[layer]
            pooled = _causal_pooled(states, batch["labels"]).numpy()
            embedded = np.concatenate([InBedder.from_pretrained(tiny_model_dir("llama"), device="cpu", layer=layer)
                                       .encode([r.input], r.instruction, normalize=False) for r in records])
            np.testing.assert_allclose(pooled, embedded, atol=1e-5)


@pytest.mark.parametrize("kind", ["llama", "roberta"])
def test_contrastive_training_lowers_the_term_and_saves_its_layer(tiny_model_dir, records_file, tmp_path, kind):
    result = train(tiny_model_dir(kind), load_records(records_file), tmp_path / "out",
                   config(contrastive_weight=1.0, contrastive_temperature=0.1, pool_layer=1, max_steps=16),
                   device="cpu", show_progress_bar=False)
    assert len(result.contrastive_losses) == 16
    assert np.mean(result.contrastive_losses[-4:]) < 0.9 * np.mean(result.contrastive_losses[:4]), result.contrastive_losses
    assert json.loads((tmp_path / "out" / "inbedder.json").read_text())["layer"] == 1
    model = InBedder.from_pretrained(tmp_path / "out", device="cpu")
    assert model.description.layer == 1
    with pytest.raises(ValueError, match="pool_layer 5 is out of range: the model has 2 layers"):
        train(tiny_model_dir(kind), load_records(records_file), tmp_path / "bad", config(pool_layer=5), device="cpu",
              show_progress_bar=False)
    with pytest.raises(ValueError, match="contrastive_weight must be >= 0"):
        config(contrastive_weight=-1.0)


def test_resume_is_exact_with_augmentation_and_the_contrastive_term(tiny_model_dir, augmented_file, tmp_path, monkeypatch):
    import inbedder_retrieval.training as training

    records = load_records(augmented_file)
    options = config(augment_wordings=True, contrastive_weight=0.5, max_steps=12)  # 12 steps x 8 = 3 epochs
    straight = train(tiny_model_dir("llama"), records, tmp_path / "straight", options, device="cpu", show_progress_bar=False)
    original = training._save_checkpoint

    def save_then_crash(output_dir, model, optimizer, scheduler, state):
        original(output_dir, model, optimizer, scheduler, state)
        if state["step"] == 8:
            raise KeyboardInterrupt("interrupted after the second checkpoint")

    monkeypatch.setattr(training, "_save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model_dir("llama"), records, tmp_path / "resumed", options, device="cpu", show_progress_bar=False)
    monkeypatch.setattr(training, "_save_checkpoint", original)
    resumed = train(tiny_model_dir("llama"), records, tmp_path / "resumed", options, device="cpu", show_progress_bar=False)
    np.testing.assert_allclose(resumed.losses, straight.losses, rtol=1e-4)
    np.testing.assert_allclose(resumed.contrastive_losses, straight.contrastive_losses, rtol=1e-4)


def test_cli_train_flags(tiny_model_dir, augmented_file, tmp_path):
    from inbedder_retrieval.cli import main

    out = tmp_path / "cli-v2"
    assert main(["train", "--base", str(tiny_model_dir("llama")), "--data", str(augmented_file), "-o", str(out),
                 "--max-steps", "2", "--micro-batch-size", "4", "--effective-batch-size", "4", "--device", "cpu",
                 "--augment-wordings", "--contrastive-weight", "0.2", "--contrastive-temperature", "0.1",
                 "--pool-layer", "-2"]) == 0
    settings = json.loads((out / "inbedder.json").read_text())
    assert settings["layer"] == -2 and "contrastive weight 0.2" in settings["description"]
