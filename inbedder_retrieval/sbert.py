"""An InBedder as a real ``SentenceTransformer``, so sentence-transformers' own tooling
(evaluators, ``encode_query``/``encode_document``, ``similarity``, prompts) works with it.

sentence-transformers prepends a *prompt* to each text; an InBedder asks an *instruction*
about it. ``InBedderModule`` is an input module that takes the prompt as the instruction,
so ``st.encode(texts, prompt="How does the customer feel?")`` equals
``inbedder.encode(texts, "How does the customer feel?")``, and a ``prompts`` dict names
instructions (``prompt_name="feel"``).

Example:
    >>> from inbedder_retrieval import InBedder
    >>> from inbedder_retrieval.sbert import to_sentence_transformer
    >>> st = to_sentence_transformer(InBedder.from_pretrained(),
    ...                              prompts={"query": "How does the customer feel?"})
    >>> st.encode_query(["I am furious"]).shape  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import InputModule

from .embedder import InBedder
from .validation import validate_instruction


class InBedderModule(InputModule):
    """A sentence-transformers input module that embeds each text as the answer to the
    prompt (the instruction); with no prompt, ``default_instruction``."""

    def __init__(self, inbedder: InBedder, default_instruction: str | None = None) -> None:
        super().__init__()
        self.inbedder = inbedder
        self.model = inbedder.backend.model  # registered: .to(), .eval() and parameters() reach it
        self.tokenizer = inbedder.backend.tokenizer
        self.default_instruction = None if default_instruction is None else validate_instruction(default_instruction)

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """The texts and the instruction (the prompt) for one batch; encoding happens in
        ``forward``, which builds the InBedder prompts."""
        instruction = prompt or self.default_instruction
        if instruction is None:
            raise ValueError("an InBedder needs an instruction: pass prompt='How does ...?' or prompt_name=..., "
                             "or give to_sentence_transformer(default_instruction=...)")
        return {"texts": list(inputs), "instruction": self.inbedder.check_instruction(instruction)}

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        vectors = self.inbedder.encode(features["texts"], features["instruction"], normalize=False,
                                       convert_to="torch", max_batch_tokens=None, batch_size=len(features["texts"]))
        return {**features, "sentence_embedding": vectors.to(self.model.device)}

    def get_embedding_dimension(self) -> int:
        return self.inbedder.dim

    @property
    def max_seq_length(self) -> int:
        """The prompt token limit (longer prompts lose tokens from the left)."""
        return self.inbedder.description.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        raise AttributeError("an InBedder's max_length is set when it loads: "
                             "InBedder.from_pretrained(..., max_length=N)")

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("save the InBedder itself (InBedder.from_pretrained loads it by name or folder); "
                                  "a SentenceTransformer made by to_sentence_transformer is not saved")


def to_sentence_transformer(
    inbedder: InBedder,
    prompts: Mapping[str, str] | None = None,
    *,
    default_prompt_name: str | None = None,
    default_instruction: str | None = None,
) -> SentenceTransformer:
    """A ``SentenceTransformer`` that embeds with ``inbedder``: ``prompts`` maps names to
    instructions (``"query"`` and ``"document"`` serve ``encode_query`` and
    ``encode_document``); cosine similarity."""
    checked = {name: validate_instruction(instruction) for name, instruction in (prompts or {}).items()}
    return SentenceTransformer(modules=[InBedderModule(inbedder, default_instruction)], prompts=checked,
                               default_prompt_name=default_prompt_name, device=str(inbedder.backend.device),
                               similarity_fn_name="cosine")


__all__ = ["InBedderModule", "to_sentence_transformer"]
