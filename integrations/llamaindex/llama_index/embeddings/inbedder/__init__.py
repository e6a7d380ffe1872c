from llama_index.embeddings.inbedder.base import DEFAULT_INSTRUCTION, InBedderEmbedding

__all__ = ["DEFAULT_INSTRUCTION", "InBedderEmbedding"]
