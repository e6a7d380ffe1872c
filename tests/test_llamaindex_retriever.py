"""LlamaIndex retriever over one multi-instruction InstructionIndex: per-query
instructions, metadata filters, and a MockLLM query engine end to end (tiny model)."""

import pytest

pytest.importorskip("llama_index.core")
from inbedder_retrieval import FilterError, InBedder, InstructionIndex  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from llama_index.embeddings.inbedder import InstructionIndexRetriever, InstructionQueryBundle  # noqa: E402

TEXTS = ["the soup was cold", "the phone is fast", "a hot soup", "my laptop broke"]
IDS = ["a", "b", "c", "d"]
META = [{"topic": "food", "n": 0}, {"topic": "tech", "n": 1}, {"topic": "food", "n": 2}, {"topic": "tech", "n": 3}]
Q1, Q2 = "What is it about?", "How does the customer feel?"


@pytest.fixture(scope="module")
def index(tiny_model_dir, tmp_path_factory):
    model = InBedder.from_pretrained(str(tiny_model_dir("llama")), device="cpu")
    with InstructionIndex.create(tmp_path_factory.mktemp("li") / "index", model, instructions=[Q1, Q2]) as index:
        index.add(TEXTS, ids=IDS, metadatas=META)
        yield index


def ids(nodes):
    return [node.node.node_id for node in nodes]


def test_per_query_instruction(index):
    retriever = InstructionIndexRetriever(index, similarity_top_k=4)
    assert retriever.instruction == Q1  # the index's first
    assert ids(retriever.retrieve("soup")) == [hit.id for hit in index.search("soup", Q1, k=4)]
    under_q2 = retriever.retrieve(InstructionQueryBundle("soup", instruction=Q2))
    assert ids(under_q2) == [hit.id for hit in index.search("soup", Q2, k=4)]
    assert [n.score for n in under_q2] == pytest.approx([hit.score for hit in index.search("soup", Q2, k=4)])
    assert ids(retriever.with_instruction(Q2).retrieve("soup")) == ids(under_q2)
    assert under_q2[0].node.metadata == META[IDS.index(under_q2[0].node.node_id)]


def test_llamaindex_metadata_filters(index):
    food = MetadataFilters(filters=[MetadataFilter(key="topic", value="food")])
    assert set(ids(InstructionIndexRetriever(index, Q2, filters=food).retrieve("soup"))) == {"a", "c"}
    nested = MetadataFilters(condition=FilterCondition.OR, filters=[
        MetadataFilter(key="n", value=3, operator=FilterOperator.GTE),
        MetadataFilters(filters=[MetadataFilter(key="topic", value="food"),
                                 MetadataFilter(key="n", value=[0, 1], operator=FilterOperator.NIN)]),
    ])
    assert set(ids(InstructionIndexRetriever(index, filters=nested).retrieve("soup"))) == {"c", "d"}
    with pytest.raises(FilterError, match="'text_match' on 'topic' is not supported"):
        InstructionIndexRetriever(index, filters=MetadataFilters(filters=[
            MetadataFilter(key="topic", value="fo", operator=FilterOperator.TEXT_MATCH)]))
    with pytest.raises(FilterError, match="condition 'not' is not supported"):
        InstructionIndexRetriever(index, filters=MetadataFilters(condition=FilterCondition.NOT, filters=[
            MetadataFilter(key="topic", value="food")]))


def test_query_engine_with_mock_llm(index):
    retriever = InstructionIndexRetriever(index, Q2, similarity_top_k=2)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = engine.query("a cold soup")
    assert ids(response.source_nodes) == [hit.id for hit in index.search("a cold soup", Q2, k=2)]
    assert isinstance(response.response, str)


def test_bad_arguments(index, tmp_path):
    with pytest.raises(ValueError, match="positive"):
        InstructionIndexRetriever(index, similarity_top_k=0)
    with pytest.raises(KeyError, match="not an instruction"):
        InstructionIndexRetriever(index, "Unknown?").retrieve("soup")
    with InstructionIndex.create(tmp_path / "bare", index.model) as bare:
        with pytest.raises(ValueError, match="no instruction yet"):
            InstructionIndexRetriever(bare)
