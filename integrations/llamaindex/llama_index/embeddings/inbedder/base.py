"""LlamaIndex embedding model backed by an InBedder."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from inbedder_retrieval import DEFAULT_INSTRUCTION, DEFAULT_MODEL, InBedder
from inbedder_retrieval.validation import check_sequence, validate_instruction
from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager

#: Texts per encode call (the library's own default ``batch_size``).
DEFAULT_INBEDDER_BATCH_SIZE = 32



class InBedderEmbedding(BaseEmbedding):
    """Instruction-aware embeddings: each text is embedded as the answer an InBedder gives
    to a question (the instruction) about it, so texts with the same answer land together.

    Queries and texts should usually be asked the same question, which picks the aspect
    that retrieval follows ("How does the customer feel?" finds reviews with the same
    sentiment, "What product is discussed?" those about the same product).

    Args:
        model_name: a registry name, hub id or local folder; default the shipped model.
        query_instruction: the question asked about each query.
        text_instruction: the question asked about each text (node) to index.
        pooling: override the model's pooling ("fst_gen", "avg_gen", "reencode").
        device: "cpu", "cuda", ...; default CUDA when present.
        normalize: return unit-length vectors (cosine similarity = dot product).
        embed_batch_size: texts per encode call.
        inbedder: an already loaded ``InBedder`` to share (e.g. between embedding models
            with different instructions); ``model_name``, ``pooling`` and ``device`` are
            then read from it and must not be given.
        base_url, api_key: a running ``inbedder serve`` that embeds instead of a local
            model (the key defaults to ``$INBEDDER_API_KEY``); ``model_name`` then picks
            one of the server's models (default: the server's), and ``pooling``,
            ``device`` and ``inbedder`` must not be given.
        callback_manager, **kwargs: passed to ``BaseEmbedding``.

    Example:
        >>> embed_model = InBedderEmbedding(
        ...     query_instruction="How does the customer feel?",
        ...     text_instruction="How does the customer feel?",
        ... )
        >>> vector = embed_model.get_query_embedding("The soup was cold.")
    """

    query_instruction: str = Field(
        default=DEFAULT_INSTRUCTION, description="Question asked about each query."
    )
    text_instruction: str = Field(
        default=DEFAULT_INSTRUCTION, description="Question asked about each text."
    )
    pooling: str = Field(description="How the answer's hidden states become a vector.")
    device: str = Field(description="Device the model runs on.")
    normalize: bool = Field(default=True, description="Return unit-length vectors.")
    base_url: str | None = Field(default=None, description="A running `inbedder serve` that embeds instead.")

    _model: InBedder | None = PrivateAttr(default=None)
    _server: Any = PrivateAttr(default=None)

    def __init__(
        self,
        model_name: str | None = None,
        query_instruction: str = DEFAULT_INSTRUCTION,
        text_instruction: str = DEFAULT_INSTRUCTION,
        pooling: str | None = None,
        device: str | None = None,
        normalize: bool = True,
        embed_batch_size: int = DEFAULT_INBEDDER_BATCH_SIZE,
        inbedder: InBedder | None = None,
        callback_manager: CallbackManager | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        validate_instruction(query_instruction)
        validate_instruction(text_instruction)
        if base_url is not None:
            self._init_remote(base_url, api_key, model_name, query_instruction, text_instruction, pooling, device,
                              normalize, embed_batch_size, inbedder, callback_manager, **kwargs)
            return
        if inbedder is None:
            inbedder = InBedder.from_pretrained(
                model_name or DEFAULT_MODEL, pooling=pooling, device=device
            )
        else:
            settings = {"model_name": model_name, "pooling": pooling, "device": device}
            given = [name for name, value in settings.items() if value is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)} cannot be set with inbedder=...: they are read from the loaded model"
                )
        super().__init__(
            model_name=inbedder.name,
            query_instruction=query_instruction,
            text_instruction=text_instruction,
            pooling=inbedder.pooling,
            device=str(inbedder.backend.device),
            normalize=normalize,
            embed_batch_size=embed_batch_size,
            callback_manager=callback_manager,
            **kwargs,
        )
        self._model = inbedder
        inbedder.check_instruction(query_instruction)  # room left for the text under this model
        inbedder.check_instruction(text_instruction)

    def _init_remote(self, base_url: str, api_key: str | None, model_name: str | None, query_instruction: str,
                     text_instruction: str, pooling: str | None, device: str | None, normalize: bool,
                     embed_batch_size: int, inbedder: InBedder | None, callback_manager: CallbackManager | None,
                     **kwargs: Any) -> None:
        from inbedder_retrieval.server.client import InBedderClient

        given = [name for name, value in (("pooling", pooling), ("device", device), ("inbedder", inbedder))
                 if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} cannot be set with base_url=...: the server's model embeds")
        if not normalize:
            raise ValueError("the server returns unit-length vectors: normalize=False needs a local model")
        super().__init__(
            model_name=model_name or "", query_instruction=query_instruction, text_instruction=text_instruction,
            pooling="(server)", device="(server)", normalize=True, base_url=base_url, embed_batch_size=embed_batch_size,
            callback_manager=callback_manager, **kwargs,
        )
        self._server = InBedderClient(base_url, api_key)

    @classmethod
    def class_name(cls) -> str:
        return "InBedderEmbedding"

    @property
    def inbedder(self) -> InBedder:
        """The underlying model (share it with other ``InBedderEmbedding`` instances)."""
        if self._model is None:
            raise AttributeError("this InBedderEmbedding embeds on a server (base_url): it holds no model")
        return self._model

    def _encode(self, texts: list[str], instruction: str) -> np.ndarray:
        """One ``InBedder.encode`` call (or one server request): shape (len(texts), dim)."""
        if self._server is not None:
            if not texts:
                return np.empty((0, 0), dtype="float32")
            return self._server.embed(texts, instruction, model=self.model_name or None)
        return self._model.encode(
            texts,
            instruction,
            batch_size=self.embed_batch_size,
            normalize=self.normalize,
            show_progress_bar=False,
        )

    def get_text_embedding_batch(self, texts: list[str], show_progress: bool = False, **kwargs: Any) -> list[Embedding]:
        """``BaseEmbedding``'s batching, refusing a bare string (it would embed each letter)."""
        return super().get_text_embedding_batch(check_sequence(texts, "texts"), show_progress, **kwargs)

    async def aget_text_embedding_batch(self, texts: list[str], show_progress: bool = False, **kwargs: Any) -> list[Embedding]:
        """``BaseEmbedding``'s async batching, refusing a bare string."""
        return await super().aget_text_embedding_batch(check_sequence(texts, "texts"), show_progress, **kwargs)

    def get_agg_embedding_from_queries(self, queries: list[str], agg_fn: Any = None) -> Embedding:
        """The aggregate of several queries' embeddings, refusing a bare string."""
        return super().get_agg_embedding_from_queries(check_sequence(queries, "queries"), agg_fn)

    async def aget_agg_embedding_from_queries(self, queries: list[str], agg_fn: Any = None) -> Embedding:
        """Async ``get_agg_embedding_from_queries``, refusing a bare string."""
        return await super().aget_agg_embedding_from_queries(check_sequence(queries, "queries"), agg_fn)

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._encode([query], self.query_instruction)[0].tolist()

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._encode([text], self.text_instruction)[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._encode(texts, self.text_instruction).tolist()

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
