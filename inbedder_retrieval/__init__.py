"""inbedder-retrieval: instruction-aware text embedding and search.

Embed and search texts *as seen through a question*: an InBedder embeds the answer a
question-answering language model would give to an instruction about each text.
"""

from .embedder import InBedder
from .models import DEFAULT_MODEL, ModelDescription, get_model, list_models
from .prompts import INBEDDER_TEMPLATE, PromptTemplate

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "INBEDDER_TEMPLATE",
    "InBedder",
    "ModelDescription",
    "PromptTemplate",
    "__version__",
    "get_model",
    "list_models",
]
