"""Settings of a server (no third-party imports: the CLI reads them for its help text)."""

from __future__ import annotations

from dataclasses import dataclass

from ..prompts import DEFAULT_INSTRUCTION

#: prompt tokens per merged batch (the padded cost is bounded again inside ``encode``)
DEFAULT_BATCH_TOKENS = 8192
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
