from llama_index.embeddings.inbedder.base import DEFAULT_INSTRUCTION, InBedderEmbedding
from llama_index.embeddings.inbedder.retriever import (
    InstructionIndexRetriever,
    InstructionQueryBundle,
    to_index_filter,
)

__all__ = ["DEFAULT_INSTRUCTION", "InBedderEmbedding", "InstructionIndexRetriever", "InstructionQueryBundle",
           "to_index_filter"]
