"""Decoder-only language models (Llama, OPT, GPT-2, SmolLM ...)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from functools import cached_property

import torch
from transformers import AutoModelForCausalLM, BatchEncoding, DynamicCache

from .base import Backend


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that ignore left padding, as ``generate`` computes them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class CausalBackend(Backend):
    """Embeds with the state at the last prompt token: the one predicting the answer.

    ``fst_gen`` needs one forward pass and no generation; it equals the first-step state
    that the reference reads from ``generate(..., output_hidden_states=True)``.

    Shared prefix: every prompt starts with the same tokens (the chat system prompt and
    few-shot examples, up to ``### Input:``). When that prefix is at least
    ``MIN_SHARED_PREFIX`` tokens, its key/value cache is computed once and each batch runs
    only the rest of its prompts. Set ``reuse_prefix = False`` to turn it off.
    """

    MIN_SHARED_PREFIX = 16
    reuse_prefix = True

    family = "causal"
    auto_class = AutoModelForCausalLM
    padding_side = "left"
    native_poolings = ("fst_gen", "avg_gen")

    @torch.inference_mode()
    def embed(self, prompts: Sequence[str], pooling: str, layer: int) -> torch.Tensor:
        features = self.tokenize(prompts)
        if pooling == "avg_gen":
            return self._avg_gen(features, layer).float().cpu()
        prefix = self._prefix_ids if self.reuse_prefix else ()
        if len(prefix) >= self.MIN_SHARED_PREFIX:
            rows = features["input_ids"]
            mask = features["attention_mask"].bool()
            if all(row[keep].tolist()[: len(prefix)] == list(prefix) and keep.sum() > len(prefix)
                   for row, keep in zip(rows, mask)):
                return self._embed_after_prefix(rows, mask, prefix, layer).float().cpu()
        outputs = self.model.base_model(
            **features,
            position_ids=position_ids_for(features["attention_mask"]),
            output_hidden_states=True,
            use_cache=False,
        )
        return outputs.hidden_states[layer][:, -1].float().cpu()

    @cached_property
    def _cache_argument(self) -> str:
        """transformers >= 5.2x names the key/value cache ``cache``, older releases ``past_key_values``."""
        parameters = inspect.signature(self.model.base_model.forward).parameters
        return "cache" if "cache" in parameters else "past_key_values"

    @cached_property
    def _prefix_ids(self) -> tuple[int, ...]:
        ids = self.tokenizer(self.constant_prefix(), add_special_tokens=not self.template.uses_chat)["input_ids"]
        return tuple(ids)

    @cached_property
    def _prefix_cache(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Keys and values of the shared prefix for one sequence, per layer."""
        ids = torch.tensor([self._prefix_ids], device=self.device)
        with torch.inference_mode():
            outputs = self.model.base_model(input_ids=ids, use_cache=True)
        cache = outputs.get("cache") or outputs.get("past_key_values")
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _embed_after_prefix(
        self, rows: torch.Tensor, mask: torch.Tensor, prefix: tuple[int, ...], layer: int
    ) -> torch.Tensor:
        """Run only what follows the shared prefix, on top of its cached keys and values.

        Rows are re-packed as [prefix][left padding][rest], with positions that skip the
        padding, so each row sees exactly the tokens (and positions) of the plain path.
        """
        batch, shared = rows.shape[0], len(prefix)
        rests = [row[keep][shared:] for row, keep in zip(rows, mask)]
        width = max(len(rest) for rest in rests)
        input_ids = torch.full((batch, width), self.tokenizer.pad_token_id, dtype=torch.long, device=self.device)
        rest_mask = torch.zeros((batch, width), dtype=torch.long, device=self.device)
        for index, rest in enumerate(rests):
            input_ids[index, width - len(rest):] = rest
            rest_mask[index, width - len(rest):] = 1
        attention_mask = torch.cat([torch.ones((batch, shared), dtype=torch.long, device=self.device), rest_mask], 1)
        cache = DynamicCache(
            ddp_cache_data=[(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in self._prefix_cache],
            config=self.model.config,
        )
        outputs = self.model.base_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_for(attention_mask)[:, shared:],
            **{self._cache_argument: cache},
            output_hidden_states=True,
            use_cache=True,
        )
        return outputs.hidden_states[layer][:, -1]

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
