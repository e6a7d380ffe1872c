"""Embedders to compare, all with the signature ``embed(texts, instruction) -> array``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Embed = Callable[[Sequence[str], str], np.ndarray]


def ignores_instruction(embed: Embed) -> bool:
    """True for an embedder marked as blind to the instruction (its vectors depend on the texts only)."""
    return getattr(embed, "ignores_instruction", False)


def _blind(embed: Embed) -> Embed:
    embed.ignores_instruction = True
    return embed


def inbedder(model) -> Embed:
    """An InBedder: the instruction is the question about each text."""
    return lambda texts, instruction: model.encode(list(texts), instruction)


def sentence_embedder(model) -> Embed:
    """A plain sentence embedder: the instruction is ignored."""
    return _blind(lambda texts, instruction: model.encode(list(texts), show_progress_bar=False))


def prefixed_sentence_embedder(model) -> Embed:
    """INSTRUCTOR-style: ``"{instruction}: {text}"`` through a sentence embedder."""
    return lambda texts, instruction: model.encode([f"{instruction}: {text}" for text in texts], show_progress_bar=False)


def raw_language_model(model, batch_size: int = 16) -> Embed:
    """The InBedder's language model without its prompt: mean of the last layer's states
    over each text's tokens (the instruction is not seen)."""
    import torch  # here, not at the top: importing the evaluation package stays light

    backend = model.backend

    @torch.inference_mode()
    def embed(texts: Sequence[str], instruction: str) -> np.ndarray:
        rows = []
        for start in range(0, len(texts), batch_size):
            features = backend.tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True,
                                         max_length=backend.description.max_length, return_tensors="pt").to(backend.device)
            states = backend.model.base_model(**features, output_hidden_states=True).hidden_states[-1]
            mask = features["attention_mask"].unsqueeze(-1).to(states.dtype)
            rows.append(((states * mask).sum(1) / mask.sum(1)).float().cpu())
        return torch.cat(rows).numpy()

    return _blind(embed)
