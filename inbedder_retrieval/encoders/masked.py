"""Masked language models (RoBERTa, BERT ...): the answer is a few mask tokens."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModelForMaskedLM

from .base import Backend


class MaskedBackend(Backend):
    """Appends ``mask_length`` mask tokens right after the prompt and reads them.

    ``avg_gen`` is the mean of the last layer's states at the mask positions, one forward
    pass; ``generate`` decodes the most likely token at each mask.
    """

    family = "masked"
    auto_class = AutoModelForMaskedLM
    padding_side = "right"

    def build_prompts(self, texts: Sequence[str], instruction: str) -> list[str]:
        masks = self.tokenizer.mask_token * self.description.mask_length
        return [prompt + masks for prompt in super().build_prompts(texts, instruction)]

    def _run(self, prompts: Sequence[str], layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.tokenize(prompts)
        outputs = self.model(**features, output_hidden_states=True)
        is_mask = features["input_ids"] == self.tokenizer.mask_token_id
        return outputs.hidden_states[layer], outputs.logits, is_mask

    @torch.inference_mode()
    def embed(self, prompts: Sequence[str], pooling: str, layer: int) -> torch.Tensor:
        states, _, is_mask = self._run(prompts, layer)
        weights = is_mask.to(states.dtype).unsqueeze(-1)
        return ((states * weights).sum(1) / weights.sum(1)).float().cpu()

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        _, logits, is_mask = self._run(prompts, -1)
        predicted = logits.argmax(-1)
        rows = [predicted[row][is_mask[row]][:max_new_tokens] for row in range(len(prompts))]
        return self._decode(torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=self.tokenizer.pad_token_id))
