"""Decoder-only language models (Llama, OPT, GPT-2, SmolLM ...)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModelForCausalLM, BatchEncoding

from .base import Backend


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that ignore left padding, as ``generate`` computes them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class CausalBackend(Backend):
    """Embeds with the state at the last prompt token: the one predicting the answer.

    ``fst_gen`` needs one forward pass and no generation; it equals the first-step state
    that the reference reads from ``generate(..., output_hidden_states=True)``.
    """

    family = "causal"
    auto_class = AutoModelForCausalLM
    padding_side = "left"
    native_poolings = ("fst_gen", "avg_gen")

    @torch.inference_mode()
    def embed(self, prompts: Sequence[str], pooling: str, layer: int) -> torch.Tensor:
        features = self.tokenize(prompts)
        if pooling == "avg_gen":
            return self._avg_gen(features, layer).float().cpu()
        outputs = self.model.base_model(
            **features,
            position_ids=position_ids_for(features["attention_mask"]),
            output_hidden_states=True,
            use_cache=False,
        )
        return outputs.hidden_states[layer][:, -1].float().cpu()

    def _avg_gen(self, features: BatchEncoding, layer: int) -> torch.Tensor:
        output = self._greedy(
            features,
            self.description.max_new_tokens,
            output_hidden_states=True,
            return_dict_in_generate=True,
        )
        prompt_length = features["input_ids"].shape[1]
        # hidden_states[t][layer] is (batch, tokens fed at step t, hidden); the last one predicts
        # generated token t.
        states = torch.stack([step[layer][:, -1] for step in output.hidden_states], dim=1)
        predicted = output.sequences[:, prompt_length : prompt_length + states.shape[1]]
        return self._mean_over_answer(states, predicted)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        features = self.tokenize(prompts)
        sequences = self._greedy(features, max_new_tokens)
        return self._decode(sequences[:, features["input_ids"].shape[1] :])
