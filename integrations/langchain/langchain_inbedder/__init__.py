"""LangChain integration of inbedder-retrieval: instruction-aware embeddings and search."""

from .embeddings import DEFAULT_EMBED_INSTRUCTION, InBedderEmbeddings
from .vectorstores import InBedderVectorStore

__all__ = ["DEFAULT_EMBED_INSTRUCTION", "InBedderEmbeddings", "InBedderVectorStore"]
