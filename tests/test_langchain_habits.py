"""LangChain habits on a tiny model: reopening never writes, delete() deletes all, the
store as a context manager, save_local/load_local, HuggingFaceEmbeddings' argument names,
and InBedderRetriever's own k and instruction."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("langchain_inbedder")
from langchain_inbedder import InBedderEmbeddings, InBedderRetriever, InBedderVectorStore  # noqa: E402

TEXTS = ["the soup was cold", "the phone is fast", "a hot soup", "my laptop broke"]
IDS = ["a", "b", "c", "d"]
Q1, Q2 = "What is it about?", "How does the customer feel?"


@pytest.fixture()
def embeddings(tiny_model_dir):
    return InBedderEmbeddings(model_name=str(tiny_model_dir("llama")), device="cpu")


#: qdrant-edge maintains its own shard folder when it loads one (re-saves its configs in
#: another key order, consumes its tracker journal): our files are what must not change
ENGINE_FOLDER = Path("qdrant-store") / "edge"


def folder_digest(path: Path) -> dict[str, str]:
    """Every file under ``path`` (lock files and the engine's own folder aside) with a hash of its bytes."""
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file() and not f.name.endswith(".lock")
            and ENGINE_FOLDER not in f.relative_to(path).parents}


@pytest.mark.parametrize("backend", ["faiss", "qdrant"])
def test_reopening_without_instructions_never_writes(embeddings, tmp_path, backend):
    """Was: reopening embedded the whole corpus under embed_instruction and made it the default."""
    path = tmp_path / "index"
    with InBedderVectorStore.from_texts(TEXTS, embeddings, ids=IDS, instructions=[Q2, Q1], path=path,
                                        backend=backend) as store:
        expected = store.similarity_search("soup", k=2)
    before = folder_digest(path)
    with InBedderVectorStore(embeddings.with_instructions("Something else entirely?"), path=path) as reopened:
        assert reopened.instructions == [Q2, Q1] and reopened.default_instruction == Q2
        assert reopened.similarity_search("soup", k=2) == expected
    assert folder_digest(path) == before


def test_adding_an_instruction_on_reopen_is_explicit(embeddings, tmp_path):
    path = tmp_path / "index"
    InBedderVectorStore.from_texts(TEXTS, embeddings, ids=IDS, instructions=[Q1], path=path).close()
    with InBedderVectorStore(embeddings, path=path, instructions=[Q2]) as store:
        assert store.instructions == [Q1, Q2] and store.default_instruction == Q2


def test_reopening_an_index_without_instructions(embeddings, tmp_path):
    from inbedder_retrieval import InstructionIndex

    InstructionIndex.create(tmp_path / "bare", embeddings.client).close()
    with InBedderVectorStore(embeddings, path=tmp_path / "bare") as store:
        assert store.instructions == [] and store.default_instruction is None
        with pytest.raises(ValueError, match=r"store.add_instruction"):
            store.similarity_search("soup")
        store.add_instruction(Q1)
        assert store.default_instruction == Q1


def test_delete_without_ids_deletes_all(embeddings):
    with InBedderVectorStore.from_texts(TEXTS, embeddings, ids=IDS, instructions=[Q1]) as store:
        assert store.delete(["a"]) is True and len(store.index) == 3
        assert store.delete() is True
        assert len(store.index) == 0 and store.get_by_ids(IDS) == [] and store.similarity_search("soup") == []
        assert store.instructions == [Q1]  # the instructions stay
        assert store.delete() is True  # an empty store: nothing to do
        store.add_texts(["again"], ids=["e"])
        assert [d.id for d in store.similarity_search("again", k=4)] == ["e"]


def test_context_manager_closes_and_removes_a_temporary_folder(embeddings):
    with InBedderVectorStore.from_texts(TEXTS, embeddings, instructions=[Q1]) as store:
        folder = Path(store.index.path)
        assert folder.exists()
    assert not folder.exists()


@pytest.mark.parametrize("backend", ["faiss", "qdrant"])
def test_save_local_and_load_local(embeddings, tmp_path, backend):
    with InBedderVectorStore.from_texts(TEXTS, embeddings, ids=IDS, metadatas=[{"n": n} for n in range(4)],
                                        instructions=[Q1, Q2], backend=backend) as store:
        expected = store.similarity_search_with_score("soup", k=3, instruction=Q2)
        store.save_local(tmp_path / "saved")
        with pytest.raises(FileExistsError, match="already holds an index"):
            store.save_local(tmp_path / "saved")
    assert not list((tmp_path / "saved").rglob("*.pkl"))
    with InBedderVectorStore.load_local(tmp_path / "saved", embeddings, allow_dangerous_deserialization=True) as loaded:
        got = loaded.similarity_search_with_score("soup", k=3, instruction=Q2)
        assert [d for d, _ in got] == [d for d, _ in expected]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=1e-6)
    with pytest.raises(FileNotFoundError, match="holds no index"):
        InBedderVectorStore.load_local(tmp_path / "nothing", embeddings)


def test_huggingface_embeddings_argument_names(tiny_model_dir, tmp_path):
    """Was: TypeError (multiple values for 'device') or a pydantic error."""
    name = str(tiny_model_dir("llama"))
    hf_style = InBedderEmbeddings(model_name=name, model_kwargs={"device": "cpu"}, cache_folder=str(tmp_path),
                                  encode_kwargs={"normalize_embeddings": False, "batch_size": 2},
                                  query_encode_kwargs={"normalize_embeddings": True})
    assert hf_style.device == "cpu" and hf_style.model_kwargs == {}
    raw = np.array(hf_style.embed_documents(TEXTS))
    np.testing.assert_allclose(raw, hf_style.client.encode(TEXTS, hf_style.embed_instruction, normalize=False),
                               atol=1e-6)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    assert np.linalg.norm(hf_style.embed_query("soup")) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="unknown encode option 'prompt'"):
        InBedderEmbeddings(model_name=name, encode_kwargs={"prompt": "x"})
    with pytest.raises(ValueError, match="disagree"):
        InBedderEmbeddings(model_name=name, device="cpu", model_kwargs={"device": "cuda"})


def test_retriever_has_its_own_k_and_instruction(embeddings):
    with InBedderVectorStore.from_texts(TEXTS, embeddings, ids=IDS, instructions=[Q1, Q2],
                                        metadatas=[{"n": n} for n in range(4)]) as store:
        retriever = InBedderRetriever(vectorstore=store, k=2, instruction=Q2)
        assert retriever.invoke("soup") == store.similarity_search("soup", k=2, instruction=Q2)
        assert len(retriever.invoke("soup", k=1)) == 1
        assert retriever.invoke("soup", instruction=Q1, k=4) == store.similarity_search("soup", k=4, instruction=Q1)
        filtered = store.as_retriever(k=4, filter={"n": {"$gte": 2}})
        assert isinstance(filtered, InBedderRetriever) and {d.id for d in filtered.invoke("soup")} == {"c", "d"}


def test_relevance_scores_are_calibrated_on_the_index(embeddings):
    """Relevance = share of stored document pairs less similar to each other than the hit
    is to the query (was (cosine+1)/2, which sat at 0.94-0.96 for every document)."""
    texts = [f"message number {n} about {topic}" for n in range(6) for topic in ("soup", "phones")]
    with InBedderVectorStore.from_texts(texts, embeddings, instructions=[Q1, Q2]) as store:
        for instruction in (Q1, Q2):
            vectors = np.array(embeddings.with_instructions(instruction).embed_documents(texts))
            pairs = (vectors @ vectors.T)[np.triu_indices(len(texts), 1)]
            raw = store.similarity_search_with_score("soup", k=len(texts), instruction=instruction)
            relevance = store.similarity_search_with_relevance_scores("soup", k=len(texts), instruction=instruction)
            assert [d for d, _ in relevance] == [d for d, _ in raw]  # same ranking
            expected = [float((pairs <= score + 1e-6).mean()) for _, score in raw]
            np.testing.assert_allclose([s for _, s in relevance], expected, atol=1.5 / len(pairs))
            assert all(0.0 <= s <= 1.0 for _, s in relevance)
        top = store.similarity_search_with_relevance_scores(texts[0], k=1, instruction=Q1)
        assert top[0][0].page_content == texts[0] and top[0][1] == 1.0  # closer than any pair
        kept = store.as_retriever(search_type="similarity_score_threshold",
                                  search_kwargs={"score_threshold": 0.9, "k": len(texts), "instruction": Q1})
        assert 0 < len(kept.invoke(texts[0])) < len(texts)
