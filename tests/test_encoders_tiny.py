"""Exactness of every family's pooling on tiny random-weight models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inbedder_retrieval import InBedder, PromptTemplate

TEXTS = [
    "The pasta was cold and the waiter ignored us for twenty minutes.",
    "Love it.",
    "My laptop battery lasts all day, I love it, the screen is bright and sharp too.",
    "A text with {instruction} and {input} and braces {}.",
    "Short one",
]
INSTRUCTION = "How does the customer feel?"
CAUSAL = ["llama", "opt", "gpt2"]


def load(tiny_model_dir, kind: str, **kwargs) -> InBedder:
    return InBedder.from_pretrained(tiny_model_dir(kind), device="cpu", **kwargs)


@pytest.mark.parametrize("kind", CAUSAL)
def test_causal_one_pass_equals_generate_first_step(tiny_model_dir, kind):
    model = load(tiny_model_dir, kind)
    backend = model.backend
    prompts = backend.build_prompts(TEXTS, INSTRUCTION)
    ours = backend.embed(prompts, "fst_gen", -1)
    # The reference: generate() with hidden states, first step, last prompt position.
    features = backend.tokenize(prompts)
    assert (features["attention_mask"][:, 0] == 0).any(), "batch should be left-padded"
    with torch.inference_mode():
        out = backend.model.generate(
            **features, max_new_tokens=1, do_sample=False, output_hidden_states=True,
            return_dict_in_generate=True, pad_token_id=backend.tokenizer.pad_token_id,
        )
    reference = out.hidden_states[0][-1][:, -1]
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", CAUSAL + ["roberta", "t5"])
def test_batched_equals_one_by_one(tiny_model_dir, kind):
    model = load(tiny_model_dir, kind)
    batched = model.encode(TEXTS, INSTRUCTION, batch_size=4)
    single = np.stack([model.encode([text], INSTRUCTION, batch_size=1)[0] for text in TEXTS])
    assert batched.shape == (len(TEXTS), model.dim) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, single, atol=1e-5)
    # input order is restored after sorting by length
    np.testing.assert_allclose(model.encode(TEXTS[::-1], INSTRUCTION)[::-1], batched, atol=1e-5)


@pytest.mark.parametrize("kind", CAUSAL)
def test_avg_gen_equals_mean_of_answer_predicting_states(tiny_model_dir, kind):
    model = load(tiny_model_dir, kind, pooling="avg_gen")
    backend = model.backend
    max_new = backend.description.max_new_tokens
    vectors = model.encode(TEXTS, INSTRUCTION, normalize=False)
    special = set(backend.tokenizer.all_special_ids)
    for text, vector in zip(TEXTS, vectors):
        prompt = backend.build_prompts([text], INSTRUCTION)
        features = backend.tokenize(prompt)
        with torch.inference_mode():
            sequence = backend.model.generate(
                **features, max_new_tokens=max_new, do_sample=False,
                pad_token_id=backend.tokenizer.pad_token_id,
            )[0]
            states = backend.model(sequence[None], output_hidden_states=True).hidden_states[-1][0]
        start = features["input_ids"].shape[1]
        answer = sequence[start:].tolist()
        # state at position start-1+t predicts answer token t; the first always counts
        keep = [start - 1] + [start - 1 + t for t in range(1, len(answer)) if answer[t] not in special]
        expected = states[keep].mean(0).numpy()
        np.testing.assert_allclose(vector, expected, atol=1e-4)


def test_masked_is_mean_of_mask_states(tiny_model_dir):
    model = load(tiny_model_dir, "roberta")
    backend = model.backend
    assert model.pooling == "avg_gen"
    (prompt,) = backend.build_prompts([TEXTS[0]], INSTRUCTION)
    assert prompt.endswith("### Response:<mask><mask><mask>")
    ids = backend.tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        states = backend.model(**ids, output_hidden_states=True).hidden_states[-1][0]
    positions = ids["input_ids"][0] == backend.tokenizer.mask_token_id
    assert positions.sum() == 3
    expected = states[positions].mean(0).numpy()
    np.testing.assert_allclose(model.encode([TEXTS[0]], INSTRUCTION, normalize=False)[0], expected, atol=1e-5)


def test_seq2seq_equals_generate_first_decoder_state(tiny_model_dir):
    model = load(tiny_model_dir, "t5")
    backend = model.backend
    prompts = backend.build_prompts(TEXTS, INSTRUCTION)
    ours = backend.embed(prompts, "fst_gen", -1)
    features = backend.tokenize(prompts)
    with torch.inference_mode():
        out = backend.model.generate(
            **features, max_new_tokens=1, do_sample=False, output_hidden_states=True,
            return_dict_in_generate=True,
        )
    torch.testing.assert_close(ours, out.decoder_hidden_states[0][-1][:, 0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", CAUSAL + ["roberta", "t5"])
def test_left_truncation_keeps_the_instruction(tiny_model_dir, kind):
    model = load(tiny_model_dir, kind, max_length=48)
    backend = model.backend
    long_text = "filler words go here " * 100
    (prompt,) = backend.build_prompts([long_text], INSTRUCTION)
    ids = backend.tokenize([prompt])["input_ids"][0]
    assert len(ids) == 48
    decoded = backend.tokenizer.decode(ids, skip_special_tokens=False)
    assert "### Instruction:\n" + INSTRUCTION in decoded
    assert decoded.removesuffix("</s>").endswith(("### Response:", "<mask><mask><mask>"))
    vector = model.encode([long_text], INSTRUCTION)
    assert np.isfinite(vector).all()


@pytest.mark.parametrize("kind", ["llama", "roberta", "t5"])
def test_texts_with_braces_are_embedded_verbatim(tiny_model_dir, kind):
    model = load(tiny_model_dir, kind)
    text = "A text with {instruction} and {input} and {0} braces."
    (prompt,) = model.backend.build_prompts([text], INSTRUCTION)
    assert f"### Input:\n{text}\n\n### Instruction:\n{INSTRUCTION}" in prompt
    assert model.encode([text], INSTRUCTION).shape == (1, model.dim)


def test_instruction_changes_the_vector(tiny_model_dir):
    model = load(tiny_model_dir, "llama")
    a = model.encode(TEXTS, "How does the customer feel?")
    b = model.encode(TEXTS, "Which product is discussed?")
    assert not np.allclose(a, b, atol=1e-3)


@pytest.mark.parametrize("kind", CAUSAL + ["roberta", "t5"])
def test_answer_returns_one_string_per_text(tiny_model_dir, kind):
    model = load(tiny_model_dir, kind)
    answers = model.answer(TEXTS, INSTRUCTION, max_new_tokens=2)
    assert len(answers) == len(TEXTS) and all(isinstance(a, str) for a in answers)
    assert answers == [model.answer([t], INSTRUCTION, max_new_tokens=2)[0] for t in TEXTS]


def test_reencode_embeds_the_answers_with_the_sentence_embedder(tiny_model_dir):
    model = load(tiny_model_dir, "llama", pooling="reencode")
    assert model.dim == 384
    answers = model.answer(TEXTS, INSTRUCTION, max_new_tokens=model.description.max_new_tokens)
    expected = model.reencoder.encode(answers, normalize_embeddings=True)
    np.testing.assert_allclose(model.encode(TEXTS, INSTRUCTION), expected, atol=1e-5)


def test_layer_and_normalisation_options(tiny_model_dir):
    model = load(tiny_model_dir, "llama", layer=1)
    raw = model.encode(TEXTS, INSTRUCTION, normalize=False)
    unit = model.encode(TEXTS, INSTRUCTION)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)
    last = load(tiny_model_dir, "llama").encode(TEXTS, INSTRUCTION)
    assert not np.allclose(unit, last, atol=1e-3)
    tensor = model.encode(TEXTS, INSTRUCTION, convert_to="torch")
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    assert model.encode(TEXTS[0], INSTRUCTION).shape == (model.dim,)


FEW_SHOT = PromptTemplate(examples=(
    ("The pasta was cold and the waiter ignored us.", "How does the customer feel?", "Annoyed"),
    ("My laptop battery lasts all day, I love it.", "Which product is discussed?", "Laptop"),
))


@pytest.mark.parametrize("kind", CAUSAL)
def test_shared_prefix_reuse_equals_the_plain_path(tiny_model_dir, kind):
    model = load(tiny_model_dir, kind, template=FEW_SHOT)
    backend = model.backend
    assert len(backend._prefix_ids) >= backend.MIN_SHARED_PREFIX
    prompts = backend.build_prompts(TEXTS, INSTRUCTION)
    assert all(prompt.startswith(backend.constant_prefix()) for prompt in prompts)
    calls = []
    original = backend._run
    backend._run = lambda rows, layer, past=None, keep_cache=False: calls.append(past is not None or keep_cache) or original(rows, layer, past, keep_cache)
    reused = model.encode(TEXTS, INSTRUCTION, normalize=False, batch_size=3)
    assert calls and all(calls), "the prefix path was not taken"  # one prefix pass, then batches on top
    backend.reuse_prefix = False
    plain = model.encode(TEXTS, INSTRUCTION, normalize=False, batch_size=3)
    np.testing.assert_allclose(reused, plain, atol=1e-5)
    backend.reuse_prefix = True
    truncated = load(tiny_model_dir, kind, template=FEW_SHOT, max_length=40)  # prefix cut: plain path
    assert truncated.encode(TEXTS, INSTRUCTION).shape == (len(TEXTS), truncated.dim)


@pytest.mark.parametrize("kind", CAUSAL)
@pytest.mark.parametrize("template", [None, FEW_SHOT], ids=["plain", "few-shot"])
def test_encode_many_reuses_each_document_and_equals_separate_encodes(tiny_model_dir, kind, template):
    model = load(tiny_model_dir, kind, template=template)
    instructions = [INSTRUCTION, "Which product is discussed?", "What does the customer want?"]
    calls = []
    original = model.backend._run
    model.backend._run = lambda rows, layer, past=None, keep_cache=False: calls.append(len(rows[0])) or original(rows, layer, past, keep_cache)
    together = model.encode_many(TEXTS, instructions, batch_size=2)
    model.backend._run = original
    assert list(together) == instructions
    suffix_runs = [length for length in calls if length < 20]
    assert len(suffix_runs) >= len(instructions), "instructions did not run on a document cache"
    for instruction in instructions:
        np.testing.assert_allclose(together[instruction], model.encode(TEXTS, instruction, batch_size=2), atol=1e-5)
    model.backend.reuse_prefix = False
    np.testing.assert_allclose(model.encode_many(TEXTS, instructions)[instructions[1]], together[instructions[1]], atol=1e-5)


def test_encode_many_on_other_families_and_poolings(tiny_model_dir):
    for kind, pooling in (("roberta", None), ("t5", None), ("llama", "avg_gen")):
        model = load(tiny_model_dir, kind, pooling=pooling)
        together = model.encode_many(TEXTS[:3], ["Q1?", "Q2?"])
        np.testing.assert_allclose(together["Q2?"], model.encode(TEXTS[:3], "Q2?"), atol=1e-5)


def test_bfloat16_on_cpu_stays_close_to_float32(tiny_model_dir):
    """bf16 halves encode time on CPUs with bf16 instructions (benchmarks/cpu_bf16.py);
    the vectors stay float32 and close to the fp32 ones."""
    texts = ["The soup was cold.", "A much longer text about a broken laptop and a refund request."]
    full = load(tiny_model_dir, "llama").encode(texts, "What is it?")
    half = load(tiny_model_dir, "llama", dtype="bfloat16").encode(texts, "What is it?")
    assert half.dtype == np.float32 and half.shape == full.shape
    assert ((full * half).sum(1) > 0.99).all()
