"""``InBedderEmbeddings``: LangChain ``Embeddings`` that embed the answer to a question."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

from inbedder_retrieval import DEFAULT_INSTRUCTION, DEFAULT_MODEL, InBedder
from inbedder_retrieval.validation import check_sequence
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator

_LOAD_LOCK = threading.Lock()

#: ``encode_kwargs`` keys (sentence-transformers names, as HuggingFaceEmbeddings takes them)
#: -> ``InBedder.encode`` arguments
ENCODE_KWARGS = {
    "batch_size": "batch_size",
    "normalize_embeddings": "normalize",
    "normalize": "normalize",
    "show_progress_bar": "show_progress_bar",
    "max_batch_tokens": "max_batch_tokens",
}


@lru_cache(maxsize=4)
def _load(model_name: str, pooling: str | None, device: str | None, options: tuple[tuple[str, Any], ...]) -> InBedder:
    """Load a model once per process for each distinct set of settings."""
    return InBedder.from_pretrained(model_name, pooling=pooling, device=device, **dict(options))


class InBedderEmbeddings(BaseModel, Embeddings):
    """Instruction-following embeddings: each text is embedded as the answer a
    question-answering language model gives to ``embed_instruction`` about it.

    The instructions are questions about the texts ("How does the customer feel?"), so the
    same corpus embeds differently per question. Queries use ``query_instruction`` (default:
    the same question, so a query lands next to texts with the same answer).

    Example:
        .. code-block:: python

            from langchain_inbedder import InBedderEmbeddings

            embeddings = InBedderEmbeddings(embed_instruction="How does the customer feel?")
            vectors = embeddings.embed_documents(["The soup was cold.", "Great service!"])

    The model loads on first use; instances with the same model settings share it. With
    ``base_url`` (a running ``inbedder serve``) nothing is loaded: the server embeds.
    """

    model_name: str = DEFAULT_MODEL
    """Registry name (see ``inbedder models``), hub id or local folder of the InBedder."""
    embed_instruction: str = DEFAULT_INSTRUCTION
    """The question asked about every document."""
    query_instruction: str | None = None
    """The question asked about queries; ``None`` asks ``embed_instruction``."""
    pooling: str | None = None
    """Override the model's pooling ("fst_gen", "avg_gen", "reencode")."""
    batch_size: int = Field(default=32, gt=0)
    normalize: bool = True
    """Unit-length vectors (cosine similarity = dot product)."""
    device: str | None = None
    """"cpu", "cuda", ...; default CUDA when present."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """More ``InBedder.from_pretrained`` options (``device``, ``dtype``, ``max_length``,
    ``trust_remote_code``), as HuggingFaceEmbeddings takes them."""
    encode_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Options for embedding documents (and queries): ``batch_size``,
    ``normalize_embeddings``, ``show_progress_bar``, ``max_batch_tokens``."""
    query_encode_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Options for embedding queries, over ``encode_kwargs``."""
    cache_folder: str | None = None
    """Where hub downloads go (default: the Hugging Face cache)."""
    show_progress: bool = False
    base_url: str | None = None
    """URL of a running ``inbedder serve`` (e.g. "http://127.0.0.1:8080"): embed there."""
    api_key: SecretStr | None = None
    """The server's API key (default ``$INBEDDER_API_KEY``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    _client: InBedder | None = PrivateAttr(default=None)
    _server: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_server_options(self) -> InBedderEmbeddings:
        if self.base_url is not None and not self.normalize:
            raise ValueError("the server returns unit-length vectors: normalize=False needs a local model")
        return self

    @field_validator("encode_kwargs", "query_encode_kwargs")
    @classmethod
    def _known_encode_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(ENCODE_KWARGS))
        if unknown:
            raise ValueError(f"unknown encode option {unknown[0]!r}; known: {', '.join(ENCODE_KWARGS)}")
        return value

    @model_validator(mode="after")
    def _one_device(self) -> InBedderEmbeddings:
        """``model_kwargs={"device": ...}`` (HuggingFaceEmbeddings' way) is ``device``."""
        if "device" in self.model_kwargs:
            device = self.model_kwargs["device"]
            if self.device is not None and self.device != device:
                raise ValueError(f"device={self.device!r} and model_kwargs['device']={device!r} disagree: give one")
            self.device = device
            self.model_kwargs = {k: v for k, v in self.model_kwargs.items() if k != "device"}
        if "cache_dir" in self.model_kwargs:
            raise ValueError("give the download folder as cache_folder=..., not model_kwargs['cache_dir']")
        return self

    @classmethod
    def from_model(cls, model: InBedder, **kwargs: Any) -> InBedderEmbeddings:
        """Wrap an already loaded ``InBedder`` (no second load)."""
        embeddings = cls(model_name=model.name, **kwargs)
        embeddings._client = model
        return embeddings

    @property
    def client(self) -> InBedder:
        """The loaded ``InBedder`` (loaded on first access)."""
        if self._client is None:
            with _LOAD_LOCK:
                if self._client is None:
                    options = tuple(sorted({**self.model_kwargs, "cache_dir": self.cache_folder}.items()))
                    self._client = _load(self.model_name, self.pooling, self.device, options)
        return self._client

    @property
    def effective_query_instruction(self) -> str:
        """The question asked about queries."""
        return self.query_instruction or self.embed_instruction

    def with_instructions(self, embed_instruction: str, query_instruction: str | None = None) -> InBedderEmbeddings:
        """A copy asking other questions, sharing the loaded model."""
        return self.model_copy(update={"embed_instruction": embed_instruction, "query_instruction": query_instruction})

    def _remote(self) -> Any:
        """The ``InBedderClient`` of ``base_url`` (created on first use)."""
        if self._server is None:
            from inbedder_retrieval.server.client import InBedderClient

            key = self.api_key.get_secret_value() if self.api_key is not None else None
            self._server = InBedderClient(self.base_url, key)
        return self._server

    def _encode(self, texts: list[str], instruction: str, query: bool = False) -> list[list[float]]:
        if not texts:
            return []
        if self.base_url is not None:  # the server's model unless model_name was given
            model = self.model_name if "model_name" in self.model_fields_set else None
            return self._remote().embed(texts, instruction, model=model).tolist()
        options = {"batch_size": self.batch_size, "normalize": self.normalize, "show_progress_bar": self.show_progress}
        for given in (self.encode_kwargs, self.query_encode_kwargs if query else {}):
            options.update({ENCODE_KWARGS[key]: value for key, value in given.items()})
        return self.client.encode(texts, instruction, **options).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents as answers to ``embed_instruction``."""
        return self._encode(check_sequence(texts, "texts"), self.embed_instruction)

    def embed_query(self, text: str) -> list[float]:
        """Embed a query as the answer to ``query_instruction``."""
        if not isinstance(text, str):
            raise TypeError(f"query must be a str, got {type(text).__name__}")
        return self._encode([text], self.effective_query_instruction, query=True)[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """``embed_documents`` in a worker thread: the event loop keeps running."""
        return await run_in_executor(None, self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """``embed_query`` in a worker thread: the event loop keeps running."""
        return await run_in_executor(None, self.embed_query, text)
