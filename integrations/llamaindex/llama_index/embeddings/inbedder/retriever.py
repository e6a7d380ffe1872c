"""``InstructionIndexRetriever``: a LlamaIndex retriever over one multi-instruction
``InstructionIndex``, with the instruction chosen per retriever or per query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inbedder_retrieval import FilterError, InstructionIndex
from inbedder_retrieval.validation import check_k, validate_instruction
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters

#: LlamaIndex filter operators -> the index's filter operators
OPERATORS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
}
CONDITIONS = {FilterCondition.AND: "$and", FilterCondition.OR: "$or"}


def to_index_filter(filters: MetadataFilters | MetadataFilter) -> dict[str, Any]:
    """LlamaIndex ``MetadataFilters`` (nested too) as the index's filter dict."""
    if isinstance(filters, MetadataFilter):
        given = FilterOperator(filters.operator)
        operator = OPERATORS.get(given)
        if operator is None:
            raise FilterError(f"filter operator {given.value!r} on {filters.key!r} is not supported; "
                              f"supported: {', '.join(op.value for op in OPERATORS)}")
        return {filters.key: {operator: filters.value}}
    given = FilterCondition(filters.condition or FilterCondition.AND)
    condition = CONDITIONS.get(given)
    if condition is None:
        raise FilterError(f"filter condition {given.value!r} is not supported; use 'and' or 'or'")
    return {condition: [to_index_filter(item) for item in filters.filters]}


@dataclass
class InstructionQueryBundle(QueryBundle):
    """A query with the instruction to search it under (``None``: the retriever's)."""

    instruction: str | None = None


class InstructionIndexRetriever(BaseRetriever):
    """Retrieve nodes from an ``InstructionIndex`` under one of its instructions.

    Example:
        .. code-block:: python

            retriever = InstructionIndexRetriever(index, instruction="How does the customer feel?",
                                                  similarity_top_k=5)
            nodes = retriever.retrieve("I am furious")
            by_product = retriever.retrieve(InstructionQueryBundle("headphones",
                                            instruction="Which product is discussed?"))
            engine = RetrieverQueryEngine.from_args(retriever, llm=llm)

    Args:
        index: an open ``InstructionIndex``.
        instruction: the default instruction (default: the index's first).
        similarity_top_k: nodes per query.
        filters: LlamaIndex ``MetadataFilters`` on the documents' metadata.
    """

    def __init__(self, index: InstructionIndex, instruction: str | None = None, *, similarity_top_k: int = 4,
                 filters: MetadataFilters | None = None, callback_manager: CallbackManager | None = None,
                 **kwargs: Any) -> None:
        super().__init__(callback_manager=callback_manager, **kwargs)
        if instruction is None:
            if not index.instructions:
                raise ValueError("the index has no instruction yet: index.add_instruction(question) first")
            instruction = index.instructions[0]
        self.index = index
        self.instruction = validate_instruction(instruction)
        self.similarity_top_k = check_k(similarity_top_k)
        self.filters = filters
        self._filter = None if filters is None else to_index_filter(filters)

    def with_instruction(self, instruction: str) -> InstructionIndexRetriever:
        """The same retriever under another instruction (e.g. for a second query engine)."""
        return InstructionIndexRetriever(self.index, instruction, similarity_top_k=self.similarity_top_k,
                                         filters=self.filters, callback_manager=self.callback_manager)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        instruction = getattr(query_bundle, "instruction", None) or self.instruction
        hits = self.index.search(query_bundle.query_str, instruction, k=self.similarity_top_k, filter=self._filter)
        return [NodeWithScore(node=TextNode(id_=hit.id, text=hit.text, metadata=dict(hit.metadata)), score=hit.score)
                for hit in hits]
