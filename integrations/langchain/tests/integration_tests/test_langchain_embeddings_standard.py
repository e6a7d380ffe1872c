"""LangChain's standard integration tests for InBedderEmbeddings on the shipped default
model, plus instruction awareness, batching and async behaviour."""

import asyncio
import time

import numpy as np
import pytest
from langchain_inbedder import InBedderEmbeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests

pytestmark = pytest.mark.slow  # every test loads the shipped default model

FEEL = "How does the customer feel?"
PRODUCT = "Which product or service is discussed?"


class TestInBedderEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[InBedderEmbeddings]:
        return InBedderEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"embed_instruction": FEEL, "batch_size": 8}


@pytest.fixture(scope="module")
def embeddings() -> InBedderEmbeddings:
    return InBedderEmbeddings(embed_instruction=FEEL)


def cos(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))


def test_the_instruction_decides_what_is_close(embeddings: InBedderEmbeddings) -> None:
    texts = [
        "My new headphones broke after one day, I am furious.",  # headphones, angry
        "The headphones sound amazing, thank you so much!",  # headphones, happy
        "My internet has been down all week, this is outrageous.",  # internet, angry
    ]
    by_feel = embeddings.embed_documents(texts)
    by_product = embeddings.with_instructions(PRODUCT).embed_documents(texts)
    assert cos(by_feel[0], by_feel[2]) > cos(by_feel[0], by_feel[1])
    assert cos(by_product[0], by_product[1]) > cos(by_product[0], by_product[2])


def test_one_model_is_shared(embeddings: InBedderEmbeddings) -> None:
    assert embeddings.with_instructions(PRODUCT).client is embeddings.client
    assert InBedderEmbeddings(embed_instruction=PRODUCT).client is embeddings.client
    wrapped = InBedderEmbeddings.from_model(embeddings.client)
    assert wrapped.client is embeddings.client and wrapped.model_name == embeddings.client.name


def test_batched_equals_one_by_one(embeddings: InBedderEmbeddings) -> None:
    texts = ["short", "a much longer message about a refund for a broken blender", "ok thanks"]
    batched = np.array(embeddings.embed_documents(texts))
    single = np.array([embeddings.embed_documents([text])[0] for text in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert embeddings.embed_documents([]) == []


def test_query_uses_query_instruction(embeddings: InBedderEmbeddings) -> None:
    asymmetric = embeddings.with_instructions(FEEL, PRODUCT)
    text = "The blender stopped working and I am upset."
    assert np.allclose(asymmetric.embed_query(text), asymmetric.with_instructions(PRODUCT).embed_documents([text])[0],
                       atol=1e-5)
    assert np.allclose(embeddings.embed_query(text), embeddings.embed_documents([text])[0], atol=1e-5)


async def test_async_matches_sync_and_does_not_block(embeddings: InBedderEmbeddings) -> None:
    texts = [f"Message number {i} about a late parcel and an angry customer." for i in range(24)]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    start = time.perf_counter()
    vectors = await embeddings.aembed_documents(texts)
    elapsed = time.perf_counter() - start
    task.cancel()
    assert ticks >= min(5, int(elapsed / 0.01) // 4)  # the loop kept running while encoding
    np.testing.assert_allclose(vectors, embeddings.embed_documents(texts), atol=1e-5)
    np.testing.assert_allclose(await embeddings.aembed_query(texts[0]), embeddings.embed_query(texts[0]), atol=1e-5)


@pytest.mark.parametrize("bad", ["", "   "])
def test_blank_text_is_a_clear_error(embeddings: InBedderEmbeddings, bad: str) -> None:
    with pytest.raises(ValueError, match="empty or blank"):
        embeddings.embed_documents(["fine", bad])
    with pytest.raises(ValueError, match="empty or blank"):
        embeddings.embed_query(bad)


def test_non_string_is_a_clear_error(embeddings: InBedderEmbeddings) -> None:
    with pytest.raises(TypeError, match="expected str"):
        embeddings.embed_documents(["fine", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="query must be a str"):
        embeddings.embed_query(None)  # type: ignore[arg-type]
