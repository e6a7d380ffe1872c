"""``InBedder``: embed texts as the answers to a question about them."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoConfig

from .batching import token_budget_batches
from .encoders import BACKENDS, Backend, infer_family
from .models import DEFAULT_MODEL, ModelDescription, check_pooling, get_model, known_description
from .progress import show_progress
from .prompts import PromptTemplate
from .validation import check_instructions, check_positive_int, check_sequence, validate_instruction, validate_texts
from .weights import DEFAULT_REENCODER, resolve_source

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

#: Padded tokens per batch: 32 prompts of 512 tokens, or many more short ones.
DEFAULT_MAX_BATCH_TOKENS = 16384

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def choose_device(device: str | torch.device | None) -> torch.device:
    """``device`` if given, else CUDA when present, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def choose_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``dtype`` if given; else bf16 (or fp16) on GPU and fp32 on CPU (bf16 is slow there)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is not None:
        try:
            return _DTYPES[dtype]
        except KeyError:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}") from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def describe_unregistered(path: str, trust_remote_code: bool, cache_dir: str | None = None) -> ModelDescription:
    """A description for a hub id or folder that is not in the registry."""
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, cache_dir=cache_dir)
    family = infer_family(config)
    return ModelDescription(
        name=path,
        family=family,
        source=path,
        pooling="avg_gen" if family == "masked" else "fst_gen",
        dim=int(getattr(config, "hidden_size", None) or config.d_model),
    )


class InBedder:
    """An instruction-following text embedder.

    Each text is embedded as the answer a question-answering language model would give to
    ``instruction`` about it, so texts with the same answer land close together.

    Example:
        >>> model = InBedder.from_pretrained()
        >>> vectors = model.encode(["The soup was cold."], "How does the customer feel?")
    """

    def __init__(
        self,
        backend: Backend,
        *,
        pooling: str | None = None,
        layer: int | None = None,
        reencoder: SentenceTransformer | None = None,
        query_instruction: str | None = None,
        document_instruction: str | None = None,
    ) -> None:
        self.backend = backend
        self.description = backend.description.with_overrides(pooling=pooling, layer=layer)
        check_pooling(self.description.family, self.description.pooling)
        if self.description.pooling == "reencode" and reencoder is None:
            raise ValueError("pooling='reencode' needs a sentence embedder (reencoder=...)")
        self.reencoder = reencoder
        self.query_instruction = query_instruction
        self.document_instruction = document_instruction
        # one model call at a time: the tokenizer's padding/truncation state and the
        # backend's caches are shared, so concurrent threads take turns (CPU/GPU-bound anyway)
        self._lock = threading.RLock()
        self._tokens_after_input = lru_cache(maxsize=1024)(self._count_tokens_after_input)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        *,
        pooling: str | None = None,
        layer: int | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        max_length: int = 512,
        trust_remote_code: bool = False,
        reencoder: str | SentenceTransformer | None = None,
        template: PromptTemplate | None = None,
        query_instruction: str | None = None,
        document_instruction: str | None = None,
        cache_dir: str | Path | None = None,
    ) -> InBedder:
        """Load an InBedder.

        Args:
            name_or_path: a registry name (see ``list_models``), a hub id or a local folder;
                ``None`` loads the shipped default model.
            pooling: override the registry's pooling ("fst_gen", "avg_gen", "reencode").
            layer: hidden-state layer to read (-1 = last).
            device: "cpu", "cuda", ...; default CUDA when present.
            dtype: "float32", "bfloat16" or "float16"; default bf16/fp16 on GPU, fp32 on CPU.
            max_length: prompt token limit; longer prompts lose tokens from the left.
            trust_remote_code: run code shipped with a hub model (off unless you ask).
            reencoder: sentence embedder for ``reencode`` pooling (a path or a loaded
                ``SentenceTransformer``); default the shipped all-MiniLM-L6-v2.
            template: override the model's prompt template (see ``PromptTemplate``).
            query_instruction, document_instruction: defaults for ``encode_queries`` and
                ``encode_documents``.
            cache_dir: where hub downloads go (default: the Hugging Face cache).
        """
        cache_dir = None if cache_dir is None else str(cache_dir)
        name = str(name_or_path) if name_or_path is not None else DEFAULT_MODEL
        description = known_description(name)  # a registry entry, or saved by `inbedder train`
        if description is None:
            if not (Path(name).exists() or "/" in name):
                get_model(name)  # raises a KeyError that lists the known models
            description = describe_unregistered(name, trust_remote_code, cache_dir)
        description = description.with_overrides(
            max_length=max_length, pooling=pooling, layer=layer, template=template
        )
        check_pooling(description.family, description.pooling)
        torch_device = choose_device(device)
        backend = BACKENDS[description.family].load(
            resolve_source(description.source),
            description,
            device=torch_device,
            dtype=choose_dtype(dtype, torch_device),
            trust_remote_code=trust_remote_code,
            cache_dir=cache_dir,
        )
        if description.pooling == "reencode" and not hasattr(reencoder, "encode"):
            reencoder = load_reencoder(reencoder, torch_device)
        return cls(
            backend,
            reencoder=reencoder,
            query_instruction=query_instruction,
            document_instruction=document_instruction,
        )

    # -- properties ----------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Size of the vectors ``encode`` returns."""
        if self.description.pooling == "reencode":
            return int(self.reencoder.get_embedding_dimension())
        return self.backend.hidden_size

    @cached_property
    def fingerprint(self) -> str:
        """Identifies the vectors this model produces: settings, config and a weight sample.

        Two models with the same fingerprint give the same vectors; an index refuses to
        mix vectors of models whose fingerprints differ.
        """
        description = self.description
        digest = hashlib.sha256()
        for part in (
            description.family, description.pooling, str(description.layer), repr(description.template),
            str(description.mask_length), str(description.max_new_tokens), str(self.dim),
            _architecture(self.backend.model.config),
        ):
            digest.update(part.encode() + b"\0")
        with torch.no_grad():  # a few values of every weight tensor: fine-tunes differ here
            sample = torch.cat([p.detach().reshape(-1)[:4].float().cpu() for p in self.backend.model.parameters()])
        digest.update(sample.numpy().tobytes())
        return digest.hexdigest()[:16]

    @property
    def pooling(self) -> str:
        return self.description.pooling

    @property
    def dtype(self) -> str:
        """The weights' dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"`` (part of the fingerprint)."""
        return str(self.backend.model.dtype).removeprefix("torch.")

    @property
    def name(self) -> str:
        return self.description.name

    # -- encoding ------------------------------------------------------------------------
    def encode(
        self,
        texts: str | Sequence[str] | Sequence[Sequence[str]],
        instruction: str | Sequence[str] | None = None,
        *,
        batch_size: int = 32,
        max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
        normalize: bool = True,
        show_progress_bar: bool | None = None,
        convert_to: Literal["numpy", "torch"] = "numpy",
    ) -> np.ndarray | torch.Tensor:
        """Embed ``texts`` as answers to ``instruction``.

        ``instruction`` is one str for every text, or a list with one instruction per text;
        ``texts`` may instead be INSTRUCTOR-style ``[[instruction, text], ...]`` pairs (then
        leave ``instruction`` out). Texts under different instructions share batches (each
        prompt carries its own instruction). Prompts are sorted by token length (longest
        first) and batched by at most ``batch_size`` texts and ``max_batch_tokens`` padded
        tokens, then returned in input order, as a float32 array of shape (len(texts), dim);
        a single string gives (dim,).
        """
        single = isinstance(texts, str)
        checked, instructions = self._texts_and_instructions([texts] if single else texts, instruction)
        check_positive_int(batch_size, "batch_size")
        if convert_to not in ("numpy", "torch"):
            raise ValueError(f"convert_to must be 'numpy' or 'torch', got {convert_to!r}")
        with self._lock:
            vectors = self._encode_prompts(self._prompts(checked, instructions), batch_size, max_batch_tokens,
                                           show_progress_bar)
        if normalize:
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
        if single:
            vectors = vectors[0]
        return vectors.numpy() if convert_to == "numpy" else vectors

    def encode_many(
        self,
        texts: Sequence[str],
        instructions: Sequence[str],
        *,
        batch_size: int = 32,
        max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
        normalize: bool = True,
        show_progress_bar: bool | None = None,
    ) -> dict[str, np.ndarray]:
        """Embed ``texts`` under several instructions at once: ``{instruction: array}``.

        Causal models encode each text's part of the prompt once and run only each
        instruction's tokens on top of it (same vectors as separate ``encode`` calls; set
        ``model.backend.reuse_prefix = False`` to turn the sharing off).
        """
        checked = validate_texts(texts)
        instructions = [self.check_instruction(q) for q in check_instructions(instructions)]
        check_positive_int(batch_size, "batch_size")
        if len(set(instructions)) != len(instructions):
            raise ValueError("instructions must be distinct")
        outputs = {instruction: torch.zeros((len(checked), self.dim)) for instruction in instructions}
        if checked and instructions:
            self._encode_many_into(outputs, checked, instructions, batch_size, max_batch_tokens, show_progress_bar)
        result = {}
        for instruction, matrix in outputs.items():
            if normalize:
                matrix = torch.nn.functional.normalize(matrix, p=2, dim=-1)
            result[instruction] = matrix.numpy()
        return result

    def _encode_many_into(self, outputs: dict[str, torch.Tensor], checked: list[str], instructions: list[str],
                          batch_size: int, max_batch_tokens: int | None, show_progress_bar: bool | None) -> None:
        with self._lock:
            lengths = self.backend.token_lengths(self.backend.build_prompts(checked, instructions[0]))
            batches = token_budget_batches(lengths, batch_size, max_batch_tokens)
            show = show_progress(show_progress_bar, len(checked) * len(instructions))
            for indices in tqdm(batches, desc="Encoding", unit="batch", disable=not show):
                batch = [checked[index] for index in indices]
                if self.description.pooling == "reencode":
                    vectors = [self._embed_batch(self.backend.build_prompts(batch, q)) for q in instructions]
                else:
                    vectors = self.backend.embed_many(batch, instructions, self.description.pooling, self.description.layer)
                for instruction, matrix in zip(instructions, vectors):
                    outputs[instruction][indices] = matrix

    def encode_queries(self, queries: str | Sequence[str], instruction: str | None = None, **kwargs: object) -> np.ndarray | torch.Tensor:
        """Embed search queries under ``instruction`` (default: ``query_instruction``)."""
        return self.encode(queries, self._instruction_or(instruction, self.query_instruction, "query"), **kwargs)

    def encode_documents(self, documents: str | Sequence[str], instruction: str | None = None, **kwargs: object) -> np.ndarray | torch.Tensor:
        """Embed documents under ``instruction`` (default: ``document_instruction``)."""
        return self.encode(documents, self._instruction_or(instruction, self.document_instruction, "document"), **kwargs)

    def answer(
        self,
        texts: str | Sequence[str],
        instruction: str,
        *,
        max_new_tokens: int | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
    ) -> list[str]:
        """The model's short answer to ``instruction`` about each text (greedy decoding)."""
        checked = validate_texts([texts] if isinstance(texts, str) else texts)
        instruction = self.check_instruction(instruction)
        check_positive_int(batch_size, "batch_size")
        limit = self.description.max_new_tokens
        if max_new_tokens is not None:
            limit = check_positive_int(max_new_tokens, "max_new_tokens")
        answers: list[str] = [""] * len(checked)
        if not checked:
            return answers
        with self._lock:
            for indices, prompts in self._sorted_batches(self.backend.build_prompts(checked, instruction), batch_size,
                                                         None, show_progress_bar, "Answering"):
                for index, text in zip(indices, self.backend.generate(prompts, limit)):
                    answers[index] = text
        return answers

    def check_instruction(self, instruction: object) -> str:
        """``instruction`` if it is a non-blank string that leaves room for the text.

        Prompts longer than ``max_length`` lose tokens from the left, and the input comes
        before the instruction, so an instruction that is too long would cut the text away
        and give every text the same vector. Refused (``ValueError``) when the instruction
        and the template text after the input leave less than a quarter of ``max_length``
        tokens (128 of the default 512) for the text.
        """
        instruction = validate_instruction(instruction)
        max_length = self.description.max_length
        used, room = self._tokens_after_input(instruction), max_length // 4
        if used > max_length - room:
            raise ValueError(
                f"instruction is too long for this model: with the prompt text after the input it takes {used} of "
                f"max_length={max_length} tokens, leaving fewer than {room} for the text, which would be cut away. "
                f"Shorten it (it has {len(instruction)} characters) or load the model with a larger max_length"
            )
        return instruction

    # -- internals -----------------------------------------------------------------------
    def _texts_and_instructions(self, texts: object, instruction: object) -> tuple[list[str], str | list[str]]:
        """The texts and either one instruction or one per text, checked (see ``encode``)."""
        items = check_sequence(texts, "texts", "strings or [instruction, text] pairs")
        if any(isinstance(item, (list, tuple)) for item in items):
            if instruction is not None:
                raise ValueError("texts are [instruction, text] pairs, which carry their instructions: "
                                 "leave instruction out")
            for position, item in enumerate(items):
                if not isinstance(item, (list, tuple)) or len(item) != 2:
                    got = f"{len(item)} items" if isinstance(item, (list, tuple)) else type(item).__name__
                    raise TypeError(f"texts[{position}] is {got}: with [instruction, text] pairs every item "
                                    "must be such a pair")
            instruction, items = [pair[0] for pair in items], [pair[1] for pair in items]
        checked = validate_texts(items)
        if instruction is None:
            raise TypeError("instruction must be a str (one for every text) or a list with one per text; "
                            "or pass [instruction, text] pairs as texts")
        if isinstance(instruction, str):
            return checked, self.check_instruction(instruction)
        instructions = check_sequence(instruction, "instruction", "str (one per text)")
        if len(instructions) != len(checked):
            raise ValueError(f"{len(instructions)} instructions for {len(checked)} texts: give one instruction "
                             "per text, or one str for all")
        for position, item in enumerate(instructions):
            if not isinstance(item, str):
                raise TypeError(f"instruction[{position}] is {type(item).__name__}, expected str")
        for item in set(instructions):
            self.check_instruction(item)
        return checked, instructions

    def _prompts(self, texts: list[str], instructions: str | list[str]) -> list[str]:
        """One prompt per text, under one instruction or each text's own."""
        if isinstance(instructions, str):
            return self.backend.build_prompts(texts, instructions)
        prompts = [""] * len(texts)
        for instruction in dict.fromkeys(instructions):
            indices = [n for n, item in enumerate(instructions) if item == instruction]
            for index, prompt in zip(indices, self.backend.build_prompts([texts[n] for n in indices], instruction)):
                prompts[index] = prompt
        return prompts

    def _count_tokens_after_input(self, instruction: str) -> int:
        """Tokens of the prompt after the input text: instruction, template tail, masks."""
        sentinel = "\u2063INBEDDER-INPUT\u2063"
        with self._lock:  # the tokenizer's truncation state is shared
            (prompt,) = self.backend.build_prompts([sentinel], instruction)
            tail = prompt.split(sentinel, 1)[1]
            return len(self.backend.tokenizer(tail, add_special_tokens=False)["input_ids"])

    @staticmethod
    def _instruction_or(instruction: str | None, default: str | None, kind: str) -> str:
        if instruction is not None:
            return instruction
        if default is None:
            raise ValueError(f"No instruction given and no default {kind}_instruction set")
        return default

    def _sorted_batches(
        self,
        prompts: list[str],
        batch_size: int,
        max_batch_tokens: int | None,
        show_progress_bar: bool | None,
        description: str,
    ):
        """Yield (original indices, prompts) batches, longest prompts first."""
        batches = token_budget_batches(self.backend.token_lengths(prompts), batch_size, max_batch_tokens)
        for indices in tqdm(batches, desc=description, unit="batch", disable=not show_progress(show_progress_bar, len(prompts))):
            yield indices, [prompts[index] for index in indices]

    def _embed_batch(self, prompts: list[str]) -> torch.Tensor:
        if self.description.pooling == "reencode":
            answers = self.backend.generate(prompts, self.description.max_new_tokens)
            return self.reencoder.encode(answers, convert_to_tensor=True, show_progress_bar=False).float().cpu()
        return self.backend.embed(prompts, self.description.pooling, self.description.layer)

    def _encode_prompts(
        self, prompts: list[str], batch_size: int, max_batch_tokens: int | None, show_progress_bar: bool | None,
    ) -> torch.Tensor:
        output = torch.zeros((len(prompts), self.dim), dtype=torch.float32)
        if not prompts:
            return output
        for indices, batch in self._sorted_batches(prompts, batch_size, max_batch_tokens, show_progress_bar, "Encoding"):
            output[indices] = self._embed_batch(batch)
        return output

    def __repr__(self) -> str:
        return f"InBedder(name={self.name!r}, family={self.description.family!r}, pooling={self.pooling!r}, dim={self.dim})"


def _architecture(config: object) -> str:
    """The config as JSON, without fields that vary by machine, version or dtype."""
    settings = {key: value for key, value in config.to_dict().items() if key not in _VOLATILE_CONFIG_KEYS}
    return json.dumps(settings, sort_keys=True, default=str)


_VOLATILE_CONFIG_KEYS = frozenset({"_name_or_path", "transformers_version", "dtype", "torch_dtype", "_commit_hash"})


def load_reencoder(path: str | None, device: torch.device) -> SentenceTransformer:
    """A sentence embedder for ``reencode`` pooling (default: the shipped MiniLM)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_source(path or DEFAULT_REENCODER), device=str(device))
