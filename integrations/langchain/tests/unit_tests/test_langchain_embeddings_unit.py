"""LangChain's standard unit tests for InBedderEmbeddings, plus construction checks."""

import pytest
from langchain_inbedder import InBedderEmbeddings
from langchain_tests.unit_tests import EmbeddingsUnitTests
from pydantic import ValidationError


class TestInBedderEmbeddingsStandard(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[InBedderEmbeddings]:
        return InBedderEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"embed_instruction": "How does the customer feel?", "batch_size": 8}


def test_model_loads_lazily() -> None:
    embeddings = InBedderEmbeddings(model_name="no-such-model")
    assert embeddings._client is None  # nothing loaded, nothing raised yet
    with pytest.raises(KeyError, match="no-such-model"):
        embeddings.client


def test_unknown_fields_and_bad_values_are_rejected() -> None:
    with pytest.raises(ValidationError, match="embed_instructions"):
        InBedderEmbeddings(embed_instructions="typo")
    with pytest.raises(ValidationError, match="batch_size"):
        InBedderEmbeddings(batch_size=0)


def test_query_instruction_defaults_to_embed_instruction() -> None:
    embeddings = InBedderEmbeddings(embed_instruction="Which product is discussed?")
    assert embeddings.effective_query_instruction == "Which product is discussed?"
    other = embeddings.with_instructions("How does the customer feel?", "What mood is asked about?")
    assert (other.embed_instruction, other.effective_query_instruction) == (
        "How does the customer feel?", "What mood is asked about?"
    )
    assert embeddings.embed_instruction == "Which product is discussed?"  # the original is unchanged
