"""inbedder-retrieval: instruction-aware text embedding and search.

Embed and search texts *as seen through a question*: an InBedder embeds the answer a
question-answering language model would give to an instruction about each text.
"""

from .cache import EmbeddingCache
from .embedder import InBedder
from .errors import (
    CorruptIndexError,
    InBedderError,
    IncompatibleIndexError,
    IndexLockedError,
    UnknownInstructionError,
)
from .index import InstructionIndex
from .models import DEFAULT_MODEL, ModelDescription, get_model, list_models
from .prompts import DEFAULT_INSTRUCTION, INBEDDER_TEMPLATE, PromptTemplate
from .stores import Document, FilterError, Hit

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_INSTRUCTION",
    "DEFAULT_MODEL",
    "INBEDDER_TEMPLATE",
    "CorruptIndexError",
    "Document",
    "EmbeddingCache",
    "FilterError",
    "Hit",
    "InBedder",
    "InBedderError",
    "IncompatibleIndexError",
    "IndexLockedError",
    "InstructionIndex",
    "ModelDescription",
    "PromptTemplate",
    "UnknownInstructionError",
    "__version__",
    "get_model",
    "list_models",
]
