"""Shared fixtures: tiny random-weight models built offline, and the shipped default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    GPT2Config,
    LlamaConfig,
    OPTConfig,
    PreTrainedTokenizerFast,
    RobertaConfig,
    T5Config,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]
CORPUS = [
    "### Input:\n### Instruction:\n### Response:",
    "The pasta was cold and the waiter ignored us.",
    "My laptop battery lasts all day, I love it.",
    "How does the customer feel? What is the topic of this text?",
    "Which product is discussed? { } {input} {instruction} braces and symbols !?.,;:",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789",
]


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A small byte-level BPE tokenizer trained on the fly (no download)."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        mask_token="<mask>",
    )


TOKENIZER = build_tokenizer()
VOCAB = len(TOKENIZER)
IDS = {
    "pad_token_id": TOKENIZER.pad_token_id,
    "bos_token_id": TOKENIZER.bos_token_id,
    "eos_token_id": TOKENIZER.eos_token_id,
}

TINY_CONFIGS = {
    "llama": (
        AutoModelForCausalLM,
        LlamaConfig(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, **IDS,
        ),
    ),
    "opt": (
        AutoModelForCausalLM,
        OPTConfig(
            vocab_size=VOCAB, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=1024, word_embed_proj_dim=32, **IDS,
        ),
    ),
    "gpt2": (
        AutoModelForCausalLM,
        GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=1024, **IDS),
    ),
    "roberta": (
        AutoModelForMaskedLM,
        RobertaConfig(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=1024, **IDS,
        ),
    ),
    "t5": (
        AutoModelForSeq2SeqLM,
        T5Config(
            vocab_size=VOCAB, d_model=32, d_ff=64, d_kv=8, num_layers=2, num_heads=4,
            decoder_start_token_id=TOKENIZER.pad_token_id, **IDS,
        ),
    ),
}


def save_tiny_model(kind: str, folder: Path) -> Path:
    """Build a random-weight model of ``kind`` with a fixed seed and save it to ``folder``."""
    auto_class, config = TINY_CONFIGS[kind]
    torch.manual_seed(0)
    model = auto_class.from_config(config)
    model.save_pretrained(folder)
    TOKENIZER.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory):
    """``tiny_model_dir(kind)`` -> folder of a saved tiny model (built once per session)."""
    built: dict[str, Path] = {}

    def make(kind: str) -> Path:
        if kind not in built:
            built[kind] = save_tiny_model(kind, tmp_path_factory.mktemp(f"tiny-{kind}"))
        return built[kind]

    return make


@pytest.fixture(scope="session")
def default_model():
    """The shipped default InBedder (converted once into the cache on first use)."""
    from inbedder_retrieval import InBedder

    return InBedder.from_pretrained()
