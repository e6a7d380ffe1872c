"""Encoder-decoder models (T5, Flan-T5, BART ...)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModelForSeq2SeqLM

from .base import Backend


class Seq2SeqBackend(Backend):
    """Embeds with the decoder's state at the first decoding step.

    ``fst_gen`` runs the encoder and a single decoder step on the start token; it equals
    the first decoder state of ``generate(..., output_hidden_states=True)``.
    """

    family = "seq2seq"
    auto_class = AutoModelForSeq2SeqLM
    padding_side = "right"

    @torch.inference_mode()
    def embed(self, prompts: Sequence[str], pooling: str, layer: int) -> torch.Tensor:
        features = self.tokenize(prompts)
        if pooling == "avg_gen":
            output = self._greedy(
                features,
                self.description.max_new_tokens,
                output_hidden_states=True,
                return_dict_in_generate=True,
            )
            states = torch.stack([step[layer][:, -1] for step in output.decoder_hidden_states], dim=1)
            # sequences[:, 0] is the start token; state t predicts sequences[:, t + 1].
            predicted = output.sequences[:, 1 : 1 + states.shape[1]]
            return self._mean_over_answer(states, predicted).float().cpu()
        start = self.model.generation_config.decoder_start_token_id
        if start is None:
            start = self.model.config.decoder_start_token_id
        decoder_input_ids = torch.full((len(prompts), 1), start, dtype=torch.long, device=self.device)
        outputs = self.model(
            **features,
            decoder_input_ids=decoder_input_ids,
            output_hidden_states=True,
            use_cache=False,
        )
        return outputs.decoder_hidden_states[layer][:, 0].float().cpu()

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        sequences = self._greedy(self.tokenize(prompts), max_new_tokens)
        return self._decode(sequences)
