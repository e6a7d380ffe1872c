"""Settings of a server (no third-party imports: the CLI reads them for its help text)."""

from __future__ import annotations

from dataclasses import dataclass

from ..prompts import DEFAULT_INSTRUCTION

#: prompt tokens per merged batch, by device type (the padded cost is bounded again inside
#: ``encode``). On a 2-core CPU the default model's throughput stops growing at about 8
#: one-message texts per batch while latency and memory keep growing (benchmarks/serve_load.py);
#: accelerators gain from much larger batches.
BATCH_TOKENS_BY_DEVICE = {"cpu": 2048}
DEFAULT_ACCELERATOR_BATCH_TOKENS = 16384


def default_batch_tokens(device_type: str) -> int:
    """The merged-batch token budget for a model on ``device_type`` ("cpu", "cuda", ...)."""
    return BATCH_TOKENS_BY_DEVICE.get(device_type, DEFAULT_ACCELERATOR_BATCH_TOKENS)
#: how long the worker waits for more requests after the first one (seconds)
DEFAULT_MAX_WAIT = 0.005


@dataclass(frozen=True)
class ServerConfig:
    """Settings of one server; the limits answer 413 naming themselves."""

    default_instruction: str = DEFAULT_INSTRUCTION
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_texts: int = 2048
    max_chars: int = 20_000
    max_body_bytes: int = 8 * 1024 * 1024
    max_k: int = 1000
