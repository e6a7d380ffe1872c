"""The one interface every model family implements.

A backend turns finished prompt strings into vectors (``embed``) or answers
(``generate``). Nothing above it knows which family runs. To add a family: subclass
``Backend``, set ``family``, ``auto_class`` and ``padding_side``, implement ``embed`` and
``generate``, and register the class in ``encoders/__init__.py``'s ``BACKENDS``.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from transformers import AutoTokenizer, BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

from ..models import ModelDescription
from ..prompts import PromptTemplate


def base_weights(base_model: str) -> str:
    """Where the weights of an adapter's base model are (registry name, hub id or folder)."""
    from ..models import REGISTRY
    from ..weights import resolve_source

    return resolve_source(REGISTRY[base_model].source if base_model in REGISTRY else base_model)


class Backend(ABC):
    """A loaded language model of one family, used as an InBedder."""

    family: ClassVar[str]
    auto_class: ClassVar[Any]
    padding_side: ClassVar[str]

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        description: ModelDescription,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.description = description
        tokenizer.padding_side = self.padding_side
        tokenizer.truncation_side = "left"  # the instruction sits at the end: keep it
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)

    @classmethod
    def load(
        cls,
        path: str,
        description: ModelDescription,
        *,
        device: torch.device,
        dtype: torch.dtype,
        trust_remote_code: bool = False,
        cache_dir: str | None = None,
    ) -> Backend:
        """Load tokenizer and model from a hub id or a folder (hub downloads go to
        ``cache_dir``, default the Hugging Face cache).

        For a LoRA adapter (``description.base_model`` set) the base model is loaded first
        and the adapter merged into it, so inference costs what the base model costs.
        """
        weights = path if description.base_model is None else base_weights(description.base_model)
        own_tokenizer = description.base_model is None or (Path(path) / "tokenizer_config.json").exists()
        tokenizer = AutoTokenizer.from_pretrained(path if own_tokenizer else weights, trust_remote_code=trust_remote_code,
                                                  cache_dir=cache_dir)
        model = cls.auto_class.from_pretrained(weights, dtype=dtype, trust_remote_code=trust_remote_code,
                                               cache_dir=cache_dir)
        if description.base_model is not None:
            from peft import PeftModel

            with warnings.catch_warnings():  # peft calls a transformers property deprecated in 5.x
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                model = PeftModel.from_pretrained(model, path).merge_and_unload()
        return cls(model.to(device), tokenizer, description)

    # -- prompts -------------------------------------------------------------------------
    @property
    def template(self) -> PromptTemplate:
        return self.description.template

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def hidden_size(self) -> int:
        config = self.model.config
        return int(getattr(config, "hidden_size", None) or config.d_model)

    def build_prompts(self, texts: Sequence[str], instruction: str) -> list[str]:
        """The prompt strings for ``texts`` under ``instruction`` (chat-formatted if asked)."""
        if not self.template.uses_chat:
            return [self.template.prompt(text, instruction) for text in texts]
        return [
            self.tokenizer.apply_chat_template(
                self.template.messages(text, instruction), tokenize=False, add_generation_prompt=True
            )
            for text in texts
        ]

    def constant_prefix(self) -> str:
        """The part of every prompt before the input text (system prompt, examples, header).

        The template puts the input first, so this part is the same for every text and
        every instruction; backends may encode it once and reuse it.
        """
        sentinel = "\u2063INBEDDER-INPUT\u2063"
        (prompt,) = self.build_prompts([sentinel], "instruction")
        return prompt.split(sentinel, 1)[0]

    def tokenize(self, prompts: Sequence[str]) -> BatchEncoding:
        """Padded, left-truncated token ids on the model's device."""
        features = self.tokenizer(
            list(prompts),
            padding=True,
            truncation=True,
            max_length=self.description.max_length,
            add_special_tokens=not self.template.uses_chat,
            return_tensors="pt",
        )
        return features.to(self.device)

    def token_lengths(self, prompts: Sequence[str]) -> list[int]:
        """Token count of each prompt after truncation (used to sort batches)."""
        ids = self.tokenizer(
            list(prompts),
            truncation=True,
            max_length=self.description.max_length,
            add_special_tokens=not self.template.uses_chat,
        )["input_ids"]
        return [len(row) for row in ids]

    # -- the interface -------------------------------------------------------------------
    @abstractmethod
    def embed(self, prompts: Sequence[str], pooling: str, layer: int) -> torch.Tensor:
        """One float32 CPU vector per prompt, pooled as ``pooling`` from ``layer``."""

    def embed_many(self, texts: Sequence[str], instructions: Sequence[str], pooling: str, layer: int) -> list[torch.Tensor]:
        """``texts`` embedded under each instruction (one tensor per instruction).

        Backends that can share work between instructions override this."""
        return [self.embed(self.build_prompts(texts, instruction), pooling, layer) for instruction in instructions]

    @abstractmethod
    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        """The model's greedy answer to each prompt, without the prompt."""

    # -- helpers shared by generating families --------------------------------------------
    def _greedy(self, features: BatchEncoding, max_new_tokens: int, **extra: Any) -> Any:
        return self.model.generate(
            **features,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=self.tokenizer.pad_token_id,
            **extra,
        )

    def _decode(self, token_ids: torch.Tensor) -> list[str]:
        return [answer.strip() for answer in self.tokenizer.batch_decode(token_ids, skip_special_tokens=True)]

    def _mean_over_answer(self, states: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
        """Mean of the states that predict answer tokens (the reference's ``avg_gen``).

        ``states`` is (batch, steps, hidden): the state at step t predicts ``predicted[:, t]``.
        States predicting a special token (end of answer, padding) are left out; the first
        state always counts, as in the reference.
        """
        keep = ~torch.isin(predicted, self._special_ids.to(predicted.device))
        keep[:, 0] = True
        weights = keep.to(states.dtype).unsqueeze(-1)
        return (states * weights).sum(1) / weights.sum(1)
