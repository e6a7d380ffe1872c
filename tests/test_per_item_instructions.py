"""One instruction per text, and INSTRUCTOR-style [instruction, text] pairs."""

import numpy as np
import pytest

from inbedder_retrieval import InBedder

TEXTS = ["The pasta was cold and the waiter ignored us.", "My laptop battery lasts all day, I love it.",
         "abc", "Which product is discussed? { } {input} {instruction}", "braces !?.,;:", "I love it."]
QUESTIONS = ["How does the customer feel?", "What is the topic of this text?", "Which product is discussed?"]
PER_ITEM = [QUESTIONS[n % 3] for n in range(len(TEXTS))]


@pytest.fixture(scope="module", params=["llama", "opt", "roberta", "t5"])
def model(request, tiny_model_dir):
    return InBedder.from_pretrained(str(tiny_model_dir(request.param)), device="cpu")


def separately(model, texts, instructions):
    """One ``encode`` call per instruction, reassembled in input order."""
    out = np.zeros((len(texts), model.dim), dtype=np.float32)
    for question in set(instructions):
        indices = [n for n, q in enumerate(instructions) if q == question]
        out[indices] = model.encode([texts[n] for n in indices], question)
    return out


def test_per_item_list_equals_separate_calls(model):
    mixed = model.encode(TEXTS, PER_ITEM, batch_size=32)  # one batch holds all three instructions
    np.testing.assert_allclose(mixed, separately(model, TEXTS, PER_ITEM), atol=1e-5)
    small_batches = model.encode(TEXTS, PER_ITEM, batch_size=2, max_batch_tokens=None)
    np.testing.assert_allclose(small_batches, mixed, atol=1e-5)
    one_by_one = np.stack([model.encode(text, question) for text, question in zip(TEXTS, PER_ITEM)])
    np.testing.assert_allclose(mixed, one_by_one, atol=1e-5)


def test_instructor_pairs_equal_the_per_item_list(model):
    pairs = [[question, text] for question, text in zip(PER_ITEM, TEXTS)]
    np.testing.assert_allclose(model.encode(pairs), model.encode(TEXTS, PER_ITEM), atol=1e-6)
    as_tuples = model.encode([tuple(pair) for pair in pairs], convert_to="torch")
    np.testing.assert_allclose(as_tuples.numpy(), model.encode(TEXTS, PER_ITEM), atol=1e-6)


def test_one_instruction_for_all_is_unchanged(model):
    np.testing.assert_allclose(model.encode(TEXTS, [QUESTIONS[0]] * len(TEXTS)), model.encode(TEXTS, QUESTIONS[0]),
                               atol=1e-6)


@pytest.mark.parametrize("texts, instruction, error, message", [
    (TEXTS, PER_ITEM[:-1], ValueError, "5 instructions for 6 texts"),
    (TEXTS, None, TypeError, "instruction must be a str .* or pass .instruction, text. pairs"),
    (TEXTS, [*PER_ITEM[:-1], 7], TypeError, r"instruction\[5\] is int"),
    (TEXTS, [*PER_ITEM[:-1], " "], ValueError, "instruction is empty"),
    ([["Q?", "a"], ["Q?", "b", "c"]], None, TypeError, r"texts\[1\] is 3 items"),
    ([["Q?", "a"], "b"], None, TypeError, r"texts\[1\] is str: with \[instruction, text\] pairs"),
    ([["Q?", "a"], ["Q?", " "]], None, ValueError, r"texts\[1\] is empty"),
    ([["Q?", "a"]], "Q?", ValueError, "leave instruction out"),
    ([[5, "a"]], None, TypeError, r"instruction\[0\] is int"),
    (TEXTS, "How?" * 2000, ValueError, "instruction is too long"),
])
def test_ragged_or_mismatched_input_is_a_clear_error(tiny_model_dir, texts, instruction, error, message):
    model = InBedder.from_pretrained(str(tiny_model_dir("llama")), device="cpu")
    with pytest.raises(error, match=message):
        model.encode(texts, instruction)
