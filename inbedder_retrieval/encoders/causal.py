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

    @torch.inference_mode()
    def embed(self, prompts: Sequence[str], pooling: str, layer: int) -> torch.Tensor:
        features = self.tokenize(prompts)
        if pooling == "avg_gen":
            return self._avg_gen(features, layer).float().cpu()
        rows = [row[keep.bool()] for row, keep in zip(features["input_ids"], features["attention_mask"])]
        return self._last_states(rows, layer).float().cpu()

    @torch.inference_mode()
    def embed_many(self, texts: Sequence[str], instructions: Sequence[str], pooling: str, layer: int) -> list[torch.Tensor]:
        """Embed ``texts`` under several instructions, encoding each text once.

        The template puts the input before the instruction, so each prompt is
        [document part][instruction part]: the document part's key/value cache is computed
        once per batch and every instruction runs only its own tokens on top of it. Falls
        back to one pass per instruction when that split does not hold token for token
        (tokenizer merges across the boundary, or truncation).
        """
        split = self._split_rows(texts, instructions) if self.reuse_prefix and pooling == "fst_gen" else None
        if split is None:
            return super().embed_many(texts, instructions, pooling, layer)
        documents, suffixes = split
        _, cache, mask = self._run(documents, layer, keep_cache=True)
        return [
            self._run([suffix] * len(texts), layer, past=(cache, mask))[0].float().cpu()
            for suffix in suffixes
        ]

    def _split_rows(
        self, texts: Sequence[str], instructions: Sequence[str]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
        """Token rows of each text's document part and of each instruction's part, if the
        concatenation equals the tokenized full prompt for every pair."""
        sentinel = "\u2063INBEDDER-INSTRUCTION\u2063"
        heads, tails = zip(*(prompt.split(sentinel, 1) for prompt in self.build_prompts(texts, sentinel)))
        if len(set(tails)) != 1:
            return None
        special = not self.template.uses_chat
        documents = self.tokenizer(list(heads), add_special_tokens=special)["input_ids"]
        suffixes = [self.tokenizer(q + tails[0], add_special_tokens=False)["input_ids"] for q in instructions]
        for instruction, suffix in zip(instructions, suffixes):
            full = self.tokenizer(self.build_prompts(texts, instruction), add_special_tokens=special)["input_ids"]
            if any(len(f) > self.description.max_length or f != d + suffix for f, d in zip(full, documents)):
                return None
        as_tensor = lambda ids: torch.tensor(ids, dtype=torch.long, device=self.device)  # noqa: E731
        return [as_tensor(ids) for ids in documents], [as_tensor(ids) for ids in suffixes]

    def _last_states(self, rows: list[torch.Tensor], layer: int) -> torch.Tensor:
        """Last-token states of unpadded token rows, on top of the shared-prefix cache when
        every row starts with it."""
        prefix = self._prefix_ids if self.reuse_prefix else ()
        shared = len(prefix)
        if shared >= self.MIN_SHARED_PREFIX and all(
            len(row) > shared and row[:shared].tolist() == list(prefix) for row in rows
        ):
            past_mask = torch.ones((len(rows), shared), dtype=torch.long, device=self.device)
            return self._run([row[shared:] for row in rows], layer, past=(self._prefix_cache, past_mask))[0]
        return self._run(rows, layer)[0]

    def _run(
        self,
        rows: list[torch.Tensor],
        layer: int,
        past: tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor] | None = None,
        keep_cache: bool = False,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]] | None, torch.Tensor]:
        """One forward pass over left-padded ``rows`` after an optional cached ``past``
        (per-layer keys/values with batch 1 or len(rows), and its attention mask).

        Rows are laid out as [past][left padding][row] with positions that skip padding, so
        each row sees exactly the tokens and positions of its unpadded prompt. Returns the
        last-token states, the new cache (if ``keep_cache``) and the full attention mask.
        """
        batch, width = len(rows), max(len(row) for row in rows)
        input_ids = torch.full((batch, width), self.tokenizer.pad_token_id, dtype=torch.long, device=self.device)
        mask = torch.zeros((batch, width), dtype=torch.long, device=self.device)
        for index, row in enumerate(rows):
            input_ids[index, width - len(row):] = row
            mask[index, width - len(row):] = 1
        cache = DynamicCache(config=self.model.config) if keep_cache else None
        if past is not None:
            layers, past_mask = past
            mask = torch.cat([past_mask, mask], dim=1)
            cache = DynamicCache(
                ddp_cache_data=[(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in layers],
                config=self.model.config,
            )
        outputs = self.model.base_model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=position_ids_for(mask)[:, -width:],
            output_hidden_states=True,
            use_cache=cache is not None,
            **({self._cache_argument: cache} if cache is not None else {}),
        )
        new_cache = None
        if keep_cache:
            returned = outputs.get("cache") or outputs.get("past_key_values")
            new_cache = [(item.keys, item.values) for item in returned.layers]
        return outputs.hidden_states[layer][:, -1], new_cache, mask

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
        ids = torch.tensor(self._prefix_ids, device=self.device)
        with torch.inference_mode():
            return self._run([ids], -1, keep_cache=True)[1]

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
