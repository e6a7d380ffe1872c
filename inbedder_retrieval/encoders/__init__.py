"""Model-family backends behind one interface (see ``base.Backend``)."""

from __future__ import annotations

from types import MappingProxyType

from transformers import PretrainedConfig

from .base import Backend
from .causal import CausalBackend
from .masked import MaskedBackend
from .seq2seq import Seq2SeqBackend

BACKENDS: MappingProxyType[str, type[Backend]] = MappingProxyType(
    {backend.family: backend for backend in (CausalBackend, MaskedBackend, Seq2SeqBackend)}
)


def infer_family(config: PretrainedConfig) -> str:
    """Guess the family of an unregistered model from its config."""
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    if any(name.endswith("ForMaskedLM") for name in config.architectures or ()):
        return "masked"
    return "causal"


__all__ = ["BACKENDS", "Backend", "CausalBackend", "MaskedBackend", "Seq2SeqBackend", "infer_family"]
