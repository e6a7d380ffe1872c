import numpy as np
import pytest

from inbedder_retrieval import InBedder
from inbedder_retrieval.batching import token_budget_batches


def test_batches_respect_count_and_token_budget():
    lengths = [5, 100, 7, 50, 50, 3, 200, 8, 9, 10]
    batches = token_budget_batches(lengths, max_batch_size=4, max_batch_tokens=120)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 4
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 120
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(flat, reverse=True)
    assert batches[0] == [6]  # longer than the budget: alone
    assert token_budget_batches(lengths, 3, None) == [[6, 1, 3], [4, 9, 8], [7, 2, 0], [5]]
    with pytest.raises(ValueError, match="batch_size"):
        token_budget_batches(lengths, 0, None)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        token_budget_batches(lengths, 2, 0)


def test_token_budget_does_not_change_vectors(tiny_model_dir):
    model = InBedder.from_pretrained(tiny_model_dir("llama"), device="cpu")
    texts = ["short", "a much longer text " * 20, "medium sized text here", "x y", "another long one " * 10]
    default = model.encode(texts, "What?")
    np.testing.assert_allclose(model.encode(texts, "What?", max_batch_tokens=64), default, atol=1e-5)
    np.testing.assert_allclose(model.encode_many(texts, ["What?", "Why?"], max_batch_tokens=64)["What?"], default, atol=1e-5)
