"""LangChain's standard retriever tests for InBedderRetriever (shipped default model and
support-message corpus, searched under "How does the customer feel?")."""

from typing import Any

import pytest
from inbedder_retrieval.samples import load_sample
from langchain_inbedder import InBedderEmbeddings, InBedderRetriever, InBedderVectorStore
from langchain_tests.integration_tests import RetrieversIntegrationTests

pytestmark = pytest.mark.slow  # loads the shipped default model

FEEL = "How does the customer feel?"


@pytest.fixture(scope="module", autouse=True)
def _store() -> Any:
    records = load_sample("support_messages")[:24]
    store = InBedderVectorStore.from_texts([r["text"] for r in records], InBedderEmbeddings(batch_size=8),
                                           metadatas=[{"mood": r["mood"]} for r in records],
                                           ids=[r["id"] for r in records], instructions=[FEEL])
    TestInBedderRetriever.store = store
    yield store
    store.close()


class TestInBedderRetriever(RetrieversIntegrationTests):
    store: InBedderVectorStore

    @property
    def retriever_constructor(self) -> type[InBedderRetriever]:
        return InBedderRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"vectorstore": self.store, "instruction": FEEL, "k": 4}

    @property
    def retriever_query_example(self) -> str:
        return "I am furious, nothing works."
