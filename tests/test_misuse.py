"""Misuse that used to change or lose data silently: bare strings where lists belong, bad
counts, metadata too deep or too big, lone surrogates. Each is refused before anything is
written, through the index and through the LangChain and LlamaIndex integrations."""

from __future__ import annotations

import pytest

from inbedder_retrieval import InBedder, InstructionIndex
from inbedder_retrieval.validation import MAX_METADATA_BYTES, MAX_NESTING

Q = "What is it?"
DOCS = {"a": "red apples", "b": "green pears", "ab2": "ripe plums"}


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return InBedder.from_pretrained(tiny_model_dir("llama"), device="cpu")


@pytest.fixture()
def index(model, tmp_path):
    with InstructionIndex.create(tmp_path / "index", model, instructions=[Q]) as index:
        index.add(list(DOCS.values()), ids=list(DOCS))
        yield index


def unchanged(index: InstructionIndex) -> bool:
    return len(index) == len(DOCS) and [doc.text for doc in index.get(list(DOCS))] == list(DOCS.values())


def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"child": value}
    return value


@pytest.mark.parametrize("call, message", [
    (lambda index: index.add("hello"), "texts must be a list of strings, got a single str"),
    (lambda index: index.add(["x y"], ids="a"), "ids must be a list of str, got a single str"),
    (lambda index: index.add(["x y", "z w"], ids="ab"), "ids must be a list of str, got a single str"),
    (lambda index: index.add(["x y"], metadatas={"colour": "red"}), "metadatas must be a list of dicts.*got a single dict"),
    (lambda index: index.delete("ab2"), "ids must be a list of str, got a single str"),
    (lambda index: index.get("abc"), "ids must be a list of str, got a single str"),
], ids=["add-text", "add-id", "add-ids", "add-metadatas", "delete", "get"])
def test_a_bare_string_or_dict_for_a_list_is_a_type_error(index, call, message):
    """``list("hello")`` is five one-letter documents; ``delete("ab2")`` deleted "a" and "b"."""
    with pytest.raises(TypeError, match=message):
        call(index)
    assert unchanged(index)


def test_a_bare_string_of_instructions_is_a_type_error(model, index, tmp_path):
    """``instructions="Q?"`` made the instructions "Q" and "?"."""
    with pytest.raises(TypeError, match="instructions must be a list of str, got a single str"):
        index.add(["x y"], instructions="Q2?")
    assert unchanged(index) and index.instructions == [Q]
    with pytest.raises(TypeError, match="instructions must be a list of str, got a single str"):
        InstructionIndex.create(tmp_path / "other", model, instructions="Q2?")
    assert not (tmp_path / "other").exists()


def test_an_instruction_that_leaves_no_room_is_refused_before_it_is_stored(model, tmp_path):
    """On an empty index nothing is embedded, so only the index's own check (the model's
    ``check_instruction``) keeps an unusable instruction out of the manifest."""
    huge = "How does the customer feel? " * 358
    with InstructionIndex.create(tmp_path / "empty", model) as index:
        with pytest.raises(ValueError, match="instruction is too long"):
            index.add_instruction(huge)
        with pytest.raises(ValueError, match="instruction is too long"):
            index.add_instruction("Q?", query_instruction=huge)
        assert index.instructions == []
    with pytest.raises(ValueError, match="instruction is too long"):
        InstructionIndex.create(tmp_path / "other", model, instructions=[huge])
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("call", [
    lambda index: index.add(["x y"], batch_size=-1),
    lambda index: index.add(["x y"], batch_size=0),
    lambda index: index.add_instruction("Q2?", batch_size=0),
], ids=["add-minus-one", "add-zero", "add-instruction-zero"])
def test_batch_size_below_one_is_refused(index, call):
    """``batch_size=-1`` returned ids and stored nothing."""
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        call(index)
    assert unchanged(index) and index.instructions == [Q]


def test_metadata_nested_too_deep_is_refused_before_writing(index):
    with pytest.raises(ValueError, match=rf"metadatas\[1\] is nested deeper than {MAX_NESTING} levels"):
        index.add(["x y", "z w"], metadatas=[{}, nested(1000)])
    assert unchanged(index)
    index.add(["x y"], ids=["deep"], metadatas=[nested(MAX_NESTING)])  # the limit itself is fine
    assert index.get(["deep"])[0].metadata == nested(MAX_NESTING)


def test_self_referencing_metadata_is_refused(index):
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="nested deeper than"):
        index.add(["x y"], metadatas=[{"loop": loop}])
    assert unchanged(index)


def test_metadata_larger_than_the_limit_is_refused(index):
    with pytest.raises(ValueError, match=rf"metadatas\[0\] is \d+ bytes as JSON; the limit is {MAX_METADATA_BYTES}"):
        index.add(["x y"], metadatas=[{"blob": "x" * MAX_METADATA_BYTES}])
    with pytest.raises(ValueError, match="holds more than"):  # many small values: refused without walking them all
        index.add(["x y"], metadatas=[{"many": [0] * (MAX_METADATA_BYTES + 1)}])
    assert unchanged(index)


@pytest.mark.parametrize("call, message", [
    (lambda index: index.add(["ok", "fine", "good", "bad \ud800"]), r"texts\[3\] holds a lone surrogate '\\ud800' at character 4"),
    (lambda index: index.add(["x y"], ids=["\udc80"]), r"ids\[0\] holds a lone surrogate"),
    (lambda index: index.add(["x y"], metadatas=[{"k": "\ud800"}]), r"metadatas\[0\] \(as JSON\) holds a lone surrogate"),
    (lambda index: index.add_instruction("Why \ud800?"), r"instruction holds a lone surrogate"),
], ids=["text", "id", "metadata", "instruction"])
def test_lone_surrogates_are_refused_naming_the_position(index, call, message):
    """They gave a tokenizer ``TypeError`` that named no position (or failed in SQLite)."""
    with pytest.raises(ValueError, match=message):
        call(index)
    assert unchanged(index) and index.instructions == [Q]


# -- LangChain -------------------------------------------------------------------------------
@pytest.fixture()
def langchain_store(model, tmp_path):
    from langchain_inbedder import InBedderEmbeddings, InBedderVectorStore

    store = InBedderVectorStore(InBedderEmbeddings.from_model(model, embed_instruction=Q), path=tmp_path / "lc")
    store.add_texts(list(DOCS.values()), ids=list(DOCS))
    yield store
    store.close()


@pytest.mark.parametrize("call", [
    lambda store: store.embeddings.embed_documents("x"),
    lambda store: store.add_texts("abc"),
    lambda store: store.add_texts(["x y", "z w"], ids="ab"),
    lambda store: store.delete(ids="ab"),
    lambda store: store.get_by_ids("ab"),
], ids=["embed_documents", "add_texts", "add_texts-ids", "delete", "get_by_ids"])
def test_langchain_refuses_a_bare_string(langchain_store, call):
    with pytest.raises(TypeError, match="got a single str"):
        call(langchain_store)
    assert unchanged(langchain_store.index)


def test_langchain_still_takes_lists_and_generated_ids(langchain_store):
    assert len(langchain_store.embeddings.embed_documents(["x y"])) == 1
    ids = langchain_store.add_texts(iter(["one two", "three four"]), ids=[None, "given"])
    assert ids[1] == "given" and len(langchain_store.index) == len(DOCS) + 2
    assert [doc.id for doc in langchain_store.get_by_ids(["given", "missing"])] == ["given"]


# -- LlamaIndex ------------------------------------------------------------------------------
@pytest.fixture()
def llama_embedding(model):
    from llama_index.embeddings.inbedder import InBedderEmbedding

    return InBedderEmbedding(inbedder=model, query_instruction=Q, text_instruction=Q)


def test_llamaindex_batch_methods_refuse_a_bare_string(llama_embedding):
    with pytest.raises(TypeError, match="texts must be a list of str, got a single str"):
        llama_embedding.get_text_embedding_batch("abc")
    with pytest.raises(TypeError, match="queries must be a list of str, got a single str"):
        llama_embedding.get_agg_embedding_from_queries("abc")
    assert len(llama_embedding.get_text_embedding_batch(["abc", "def"])) == 2


async def test_llamaindex_async_batch_methods_refuse_a_bare_string(llama_embedding):
    with pytest.raises(TypeError, match="got a single str"):
        await llama_embedding.aget_text_embedding_batch("abc")
    with pytest.raises(TypeError, match="got a single str"):
        await llama_embedding.aget_agg_embedding_from_queries("abc")


def test_llamaindex_refuses_an_instruction_that_leaves_no_room(model):
    from llama_index.embeddings.inbedder import InBedderEmbedding

    with pytest.raises(ValueError, match="instruction is too long"):
        InBedderEmbedding(inbedder=model, text_instruction="Why? " * 2000)
