"""LangChain's standard vector-store tests for InBedderVectorStore, on FAISS and Qdrant.

The suite's default embeddings are a fake, instruction-less model; an InBedder store
needs an InBedder, so ``get_embeddings`` returns the shipped default model (the suite's
assertions hold for any embedder that maps identical texts to identical vectors)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_inbedder import InBedderEmbeddings, InBedderVectorStore
from langchain_tests.integration_tests import VectorStoreIntegrationTests

pytestmark = pytest.mark.slow  # every test loads the shipped default model


class _InBedderStandard(VectorStoreIntegrationTests):
    backend = "faiss"

    @staticmethod
    def get_embeddings() -> InBedderEmbeddings:
        return InBedderEmbeddings(batch_size=8)

    @pytest.fixture()
    def vectorstore(self, tmp_path: Path) -> Iterator[InBedderVectorStore]:  # type: ignore[override]
        store = InBedderVectorStore(self.get_embeddings(), path=tmp_path / "index", backend=self.backend)
        try:
            yield store
        finally:
            store.close()


class TestFaissStandard(_InBedderStandard):
    backend = "faiss"


class TestQdrantStandard(_InBedderStandard):
    backend = "qdrant"
