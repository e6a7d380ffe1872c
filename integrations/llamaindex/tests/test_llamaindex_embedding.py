"""InBedderEmbedding: LlamaIndex's embedding interface and retrieval inside VectorStoreIndex."""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from inbedder_retrieval import DEFAULT_MODEL, InBedder  # noqa: E402
from llama_index.core import Document, Settings, StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.embeddings.inbedder import DEFAULT_INSTRUCTION, InBedderEmbedding  # noqa: E402
from llama_index.vector_stores.faiss import FaissVectorStore  # noqa: E402

FEELING = "How does the customer feel?"
PRODUCT = "What product is discussed?"
QUERY = "My pizza was late and cold, I am furious."
REVIEWS = [  # (text, product, sentiment): three products, each praised and criticized
    ("The new phone's battery died after two hours. Total waste of money.", "phone", "negative"),
    ("This phone has a gorgeous screen and the battery lasts two days. Love it.", "phone", "positive"),
    ("The pizza arrived cold and soggy, and the delivery guy was rude.", "pizza", "negative"),
    ("Best pizza in town: crispy crust, fresh basil, friendly staff.", "pizza", "positive"),
    ("My hotel room smelled of smoke and the shower was broken.", "hotel", "negative"),
    ("Wonderful hotel stay, spotless room and a breathtaking view.", "hotel", "positive"),
]
TEXTS = [text for text, _, _ in REVIEWS]

pytestmark = pytest.mark.slow  # every test uses the shipped default model


@pytest.fixture(scope="module")
def inbedder() -> InBedder:
    """The shipped default model, loaded once for this module."""
    return InBedder.from_pretrained()


@pytest.fixture(scope="module", autouse=True)
def no_openai():
    """Keep LlamaIndex's global LLM away from OpenAI while these tests run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Settings, "_llm", MockLLM())
        yield


def documents() -> list[Document]:
    """The reviews, labelled in metadata that is kept out of the embedded text."""
    return [
        Document(
            text=text,
            metadata={"product": product, "sentiment": sentiment},
            excluded_embed_metadata_keys=["product", "sentiment"],
            excluded_llm_metadata_keys=["product", "sentiment"],
        )
        for text, product, sentiment in REVIEWS
    ]


def retrieve(index: VectorStoreIndex, top_k: int, query: str = QUERY) -> list[dict[str, str]]:
    return [hit.node.metadata for hit in index.as_retriever(similarity_top_k=top_k).retrieve(query)]


def test_is_a_llama_index_embedding(inbedder: InBedder) -> None:
    assert issubclass(InBedderEmbedding, BaseEmbedding)
    assert InBedderEmbedding.class_name() == "InBedderEmbedding"
    embed = InBedderEmbedding(inbedder=inbedder)
    assert embed.inbedder is inbedder
    assert (embed.model_name, embed.pooling, embed.device) == (DEFAULT_MODEL, "fst_gen", str(inbedder.backend.device))
    assert embed.query_instruction == embed.text_instruction == DEFAULT_INSTRUCTION
    assert embed.to_dict()["class_name"] == "InBedderEmbedding"
    assert len(embed.get_query_embedding(QUERY)) == inbedder.dim


def test_settings_round_trip_reload_the_model(inbedder: InBedder, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_from_pretrained(name: str, **options: object) -> InBedder:
        calls.append((name, options))
        return inbedder

    monkeypatch.setattr(InBedder, "from_pretrained", fake_from_pretrained)
    saved = InBedderEmbedding(inbedder=inbedder, query_instruction=FEELING, embed_batch_size=4).to_dict()
    restored = InBedderEmbedding.from_dict(saved)
    assert calls == [(DEFAULT_MODEL, {"pooling": "fst_gen", "device": str(inbedder.backend.device)})]
    assert (restored.query_instruction, restored.text_instruction) == (FEELING, DEFAULT_INSTRUCTION)
    assert restored.embed_batch_size == 4
    InBedderEmbedding()
    assert calls[-1] == (DEFAULT_MODEL, {"pooling": None, "device": None})


def test_query_and_text_instructions_are_used(inbedder: InBedder) -> None:
    embed = InBedderEmbedding(inbedder=inbedder, query_instruction=FEELING, text_instruction=PRODUCT)
    query_vector = np.array(embed.get_query_embedding(QUERY))
    text_vector = np.array(embed.get_text_embedding(QUERY))
    assert not np.allclose(query_vector, text_vector, atol=1e-3)
    np.testing.assert_allclose(query_vector, inbedder.encode(QUERY, FEELING), atol=1e-5)
    np.testing.assert_allclose(text_vector, inbedder.encode(QUERY, PRODUCT), atol=1e-5)
    assert np.linalg.norm(query_vector) == pytest.approx(1.0, abs=1e-5)
    raw = InBedderEmbedding(inbedder=inbedder, query_instruction=FEELING, normalize=False)
    assert np.linalg.norm(raw.get_query_embedding(QUERY)) > 1.5


def test_batch_is_one_encode_call_and_matches_one_by_one(
    inbedder: InBedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    embed = InBedderEmbedding(inbedder=inbedder, text_instruction=FEELING)
    one_by_one = [embed.get_text_embedding(text) for text in TEXTS]
    calls = []
    encode = inbedder.encode

    def spy(texts: list[str], *args: object, **options: object) -> np.ndarray:
        calls.append(texts)
        return encode(texts, *args, **options)

    monkeypatch.setattr(inbedder, "encode", spy)
    batched = embed.get_text_embedding_batch(TEXTS)
    assert calls == [TEXTS]
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


@pytest.mark.asyncio
async def test_async_matches_sync(inbedder: InBedder) -> None:
    embed = InBedderEmbedding(
        inbedder=inbedder, query_instruction=FEELING, text_instruction=PRODUCT, embed_batch_size=2, num_workers=3
    )
    batch, query, text = await asyncio.gather(  # five encodes in worker threads at once, one model
        embed.aget_text_embedding_batch(TEXTS), embed.aget_query_embedding(QUERY), embed.aget_text_embedding(QUERY)
    )
    np.testing.assert_allclose(batch, embed.get_text_embedding_batch(TEXTS), atol=1e-5)
    np.testing.assert_allclose(query, embed.get_query_embedding(QUERY), atol=1e-5)
    np.testing.assert_allclose(text, embed.get_text_embedding(QUERY), atol=1e-5)


@pytest.mark.asyncio
async def test_async_does_not_block_the_event_loop(inbedder: InBedder) -> None:
    embed = InBedderEmbedding(inbedder=inbedder)
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(heartbeat())
    await asyncio.sleep(0)
    await embed.aget_text_embedding_batch(TEXTS)
    task.cancel()
    assert ticks > 5


@pytest.mark.parametrize(
    ("instruction", "top_k", "field", "expected"),
    [(FEELING, 3, "sentiment", "negative"), (PRODUCT, 2, "product", "pizza")],
)
def test_in_memory_index_follows_the_instruction(
    inbedder: InBedder, instruction: str, top_k: int, field: str, expected: str
) -> None:
    embed = InBedderEmbedding(inbedder=inbedder, query_instruction=instruction, text_instruction=instruction)
    index = VectorStoreIndex.from_documents(documents(), embed_model=embed)
    hits = retrieve(index, top_k)
    assert [hit[field] for hit in hits] == [expected] * top_k
    if field == "sentiment":  # the same (pizza) query finds angry reviews of every product
        assert {hit["product"] for hit in hits} == {"phone", "pizza", "hotel"}


def test_faiss_index_follows_the_instruction(inbedder: InBedder) -> None:
    embed = InBedderEmbedding(inbedder=inbedder, query_instruction=FEELING, text_instruction=FEELING)
    store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(inbedder.dim))  # unit vectors: cosine
    index = VectorStoreIndex.from_documents(
        documents(), storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed
    )
    assert store.client.ntotal == len(REVIEWS)
    assert [hit["sentiment"] for hit in retrieve(index, 3)] == ["negative"] * 3
    praise = retrieve(index, 3, "Absolutely delighted, this made my day!")
    assert [hit["sentiment"] for hit in praise] == ["positive"] * 3


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [("", ValueError, "empty or blank"), ("  \n", ValueError, "empty or blank"),
     (None, TypeError, "NoneType, expected str"), (b"bytes", TypeError, "decode bytes first")],
)
def test_bad_input_raises_clear_errors(inbedder: InBedder, text: object, error: type, message: str) -> None:
    embed = InBedderEmbedding(inbedder=inbedder)
    with pytest.raises(error, match=message):
        embed.get_query_embedding(text)
    with pytest.raises(error, match=message):
        embed.get_text_embedding(text)
    with pytest.raises(error, match=r"texts\[1\]"):
        embed.get_text_embedding_batch(["fine", text])


@pytest.mark.asyncio
async def test_bad_input_raises_in_async_methods(inbedder: InBedder) -> None:
    embed = InBedderEmbedding(inbedder=inbedder)
    with pytest.raises(ValueError, match="empty or blank"):
        await embed.aget_query_embedding("")
    with pytest.raises(ValueError, match="empty or blank"):
        await embed.aget_text_embedding_batch(["fine", " "])


def test_bad_settings_are_rejected(inbedder: InBedder) -> None:
    with pytest.raises(ValueError, match="instruction is empty"):
        InBedderEmbedding(inbedder=inbedder, query_instruction=" ")
    with pytest.raises(TypeError, match="instruction must be a str"):
        InBedderEmbedding(inbedder=inbedder, text_instruction=None)
    with pytest.raises(ValueError, match="pooling, device cannot be set with inbedder"):
        InBedderEmbedding(inbedder=inbedder, pooling="avg_gen", device="cpu")
    with pytest.raises(KeyError, match="Unknown model 'no-such-model'"):
        InBedderEmbedding(model_name="no-such-model")
