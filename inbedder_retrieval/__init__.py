"""inbedder-retrieval: instruction-aware text embedding and search.

Embed and search texts *as seen through a question*: an InBedder embeds the answer a
question-answering language model would give to an instruction about each text.

The public names are imported on first use (PEP 562), so ``import inbedder_retrieval``
and the ``inbedder`` command's ``--help`` do not pay for importing torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the submodule that defines it
_EXPORTS = {
    "DEFAULT_INSTRUCTION": "prompts",
    "DEFAULT_MODEL": "models",
    "INBEDDER_TEMPLATE": "prompts",
    "CorruptIndexError": "errors",
    "Document": "stores",
    "EmbeddingCache": "cache",
    "FilterError": "stores",
    "Hit": "stores",
    "ImportReport": "index",
    "InBedder": "embedder",
    "InBedderError": "errors",
    "IncompatibleIndexError": "errors",
    "IndexLockedError": "errors",
    "InstructionIndex": "index",
    "ModelDescription": "models",
    "PromptTemplate": "prompts",
    "UnknownInstructionError": "errors",
    "UntrustedIndexError": "errors",
    "embed_dataset": "distributed",
    "get_model": "models",
    "list_models": "models",
    "read_shard_header": "shards",
    "write_dataset_shards": "distributed",
    "write_embedding_shards": "shards",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from .cache import EmbeddingCache
    from .distributed import embed_dataset, write_dataset_shards
    from .embedder import InBedder
    from .errors import (
        CorruptIndexError,
        InBedderError,
        IncompatibleIndexError,
        IndexLockedError,
        UnknownInstructionError,
        UntrustedIndexError,
    )
    from .index import ImportReport, InstructionIndex
    from .models import DEFAULT_MODEL, ModelDescription, get_model, list_models
    from .prompts import DEFAULT_INSTRUCTION, INBEDDER_TEMPLATE, PromptTemplate
    from .shards import read_shard_header, write_embedding_shards
    from .stores import Document, FilterError, Hit


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'inbedder_retrieval' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
