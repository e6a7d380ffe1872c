"""LangChain integration of inbedder-retrieval: instruction-aware embeddings and search."""

from .embeddings import InBedderEmbeddings
from .vectorstores import InBedderRetriever, InBedderVectorStore

__all__ = ["InBedderEmbeddings", "InBedderRetriever", "InBedderVectorStore"]
