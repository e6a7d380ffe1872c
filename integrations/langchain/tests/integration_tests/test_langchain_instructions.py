"""InBedderVectorStore beyond the standard suite: per-query instructions, retrievers,
filters, persistence and clear errors. Uses the shipped default model and corpus."""

from collections import Counter
from pathlib import Path

import pytest
from inbedder_retrieval import FilterError, IncompatibleIndexError, UnknownInstructionError
from inbedder_retrieval.samples import load_sample
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_inbedder import InBedderEmbeddings, InBedderVectorStore

pytestmark = pytest.mark.slow  # every test loads the shipped default model

PRODUCT = "Which product or service is discussed?"
FEEL = "How does the customer feel?"


@pytest.fixture(scope="module")
def records() -> list[dict[str, str]]:
    sample = load_sample("support_messages")
    products = ("headphones", "laptop", "internet service")
    chosen = [r for r in sample if r["product"] in products and r["mood"] in ("angry", "happy")]
    return chosen[:36]


@pytest.fixture(scope="module", params=["faiss", "qdrant"])
def store(request: pytest.FixtureRequest, records: list[dict[str, str]],
          tmp_path_factory: pytest.TempPathFactory) -> InBedderVectorStore:
    store = InBedderVectorStore.from_texts(
        [r["text"] for r in records],
        InBedderEmbeddings(),
        metadatas=[{"product": r["product"], "mood": r["mood"]} for r in records],
        ids=[r["id"] for r in records],
        instructions=[PRODUCT, FEEL],
        path=tmp_path_factory.mktemp("lc") / "index",
        backend=request.param,
    )
    yield store
    store.close()


def majority(docs: list[Document], field: str) -> tuple[str, int]:
    return Counter(doc.metadata[field] for doc in docs).most_common(1)[0]


def test_one_store_searched_by_two_instructions(store: InBedderVectorStore) -> None:
    query = "I am absolutely furious, nothing works and nobody helps me."
    by_feel = store.similarity_search(query, k=5, instruction=FEEL)
    assert majority(by_feel, "mood") == ("angry", 5)
    by_product = store.similarity_search("my headphones", k=5, instruction=PRODUCT)
    assert majority(by_product, "product") == ("headphones", 5)
    assert store.default_instruction == PRODUCT
    assert store.similarity_search("my headphones", k=5) == by_product


def test_retriever_with_an_instruction(store: InBedderVectorStore) -> None:
    retriever = store.as_retriever(search_kwargs={"k": 4, "instruction": FEEL})
    docs = retriever.invoke("Thank you, this made my day, I love it!")
    assert majority(docs, "mood") == ("happy", 4)
    scored = store.similarity_search_with_relevance_scores("Thank you so much!", k=3, instruction=FEEL)
    assert all(0.0 <= score <= 1.0 for _, score in scored)


async def test_async_search_and_retriever(store: InBedderVectorStore) -> None:
    query = "I am absolutely furious, nothing works and nobody helps me."
    assert await store.asimilarity_search(query, k=5, instruction=FEEL) == store.similarity_search(
        query, k=5, instruction=FEEL
    )
    docs = await store.as_retriever(search_kwargs={"k": 3, "instruction": PRODUCT}).ainvoke("my laptop")
    assert majority(docs, "product") == ("laptop", 3)


def test_filter_and_scores(store: InBedderVectorStore) -> None:
    results = store.similarity_search_with_score("great", k=50, instruction=FEEL, filter={"product": "laptop"})
    assert results and all(doc.metadata["product"] == "laptop" for doc, _ in results)
    assert [s for _, s in results] == sorted((s for _, s in results), reverse=True)
    both = store.similarity_search("x y z", k=50, filter={"$and": [{"product": "laptop"}, {"mood": {"$ne": "happy"}}]})
    assert both and all(d.metadata == {"product": "laptop", "mood": "angry"} for d in both)


def test_by_vector_and_mmr(store: InBedderVectorStore) -> None:
    vector = store.embeddings.with_instructions(FEEL).embed_query("I am so angry")
    by_vector = store.similarity_search_by_vector(vector, k=3, instruction=FEEL)
    assert by_vector == store.similarity_search("I am so angry", k=3, instruction=FEEL)
    diverse = store.max_marginal_relevance_search("I am so angry", k=4, fetch_k=12, instruction=FEEL)
    assert len(diverse) == 4 and len({doc.id for doc in diverse}) == 4
    assert diverse[0].id == by_vector[0].id


def test_string_ids_round_trip(store: InBedderVectorStore, records: list[dict[str, str]]) -> None:
    first = records[0]
    [doc] = store.get_by_ids([first["id"]])
    assert (doc.id, doc.page_content) == (first["id"], first["text"])


def test_unknown_instruction_empty_query_and_bad_filters(store: InBedderVectorStore) -> None:
    with pytest.raises(UnknownInstructionError, match="What colour"):
        store.similarity_search("anything", instruction="What colour is it?")
    with pytest.raises(ValueError, match="non-empty"):
        store.similarity_search("   ", instruction=FEEL)
    with pytest.raises(FilterError, match="callable"):
        store.similarity_search("anything", filter=lambda metadata: True)
    with pytest.raises(FilterError, match=r"\$regex"):
        store.similarity_search("anything", filter={"product": {"$regex": "lap.*"}})


def test_only_inbedder_embeddings_are_accepted(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="InBedderEmbeddings"):
        InBedderVectorStore(DeterministicFakeEmbedding(size=6), path=tmp_path)  # type: ignore[arg-type]


def test_reopen_adds_instruction_and_refuses_another_model(tmp_path: Path) -> None:
    path = tmp_path / "persisted"
    first = InBedderVectorStore.from_texts(["The laptop fan is loud."], InBedderEmbeddings(), ids=["a"],
                                           instructions=[PRODUCT], path=path)
    first.close()
    reopened = InBedderVectorStore(InBedderEmbeddings(), path=path, instructions=[PRODUCT, FEEL])
    assert reopened.instructions == [PRODUCT, FEEL]
    assert reopened.similarity_search("noisy", k=1, instruction=FEEL)[0].id == "a"
    reopened.close()
    with pytest.raises(IncompatibleIndexError):
        InBedderVectorStore(InBedderEmbeddings(pooling="avg_gen"), path=path)
