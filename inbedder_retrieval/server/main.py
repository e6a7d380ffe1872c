"""Start the server from the command line (``inbedder serve``)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os

from ..prompts import DEFAULT_INSTRUCTION

from .config import DEFAULT_ACCELERATOR_BATCH_TOKENS, BATCH_TOKENS_BY_DEVICE, DEFAULT_MAX_WAIT, ServerConfig

#: where ``--api-key`` is read from when the option is absent (keeps the key out of ``ps``)
API_KEY_ENV = "INBEDDER_API_KEY"

logger = logging.getLogger("inbedder_retrieval.server")


def serve(args: argparse.Namespace) -> int:
    """Load the model and indexes, then serve until interrupted."""
    import uvicorn

    from .app import create_app
    from .service import Service

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    if not _is_loopback(args.host) and api_key is None:
        logger.warning("serving on %s without an API key: anyone who can reach this port can read and "
                       "change the indexes (set --api-key or %s)", args.host, API_KEY_ENV)
    service = Service.load(args.model, args.index or (), device=args.device, dtype=args.dtype,
                           batching=not args.no_batching, max_batch_tokens=args.max_batch_tokens,
                           max_wait=args.max_wait_ms / 1000)
    config = ServerConfig(
        default_instruction=args.instruction, api_key=api_key, cors_origins=tuple(args.cors_origin or ()),
        max_texts=args.max_texts, max_chars=args.max_chars, max_body_bytes=args.max_body_bytes,
    )
    logger.info("models: %s; indexes: %s; batching %s; API key %s", ", ".join(service.batchers),
                ", ".join(service.indexes) or "none", "off" if args.no_batching else "on",
                "required" if api_key else "not required")
    uvicorn.run(create_app(service, config), host=args.host, port=args.port, log_level=args.log_level,
                timeout_graceful_shutdown=10)
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``inbedder serve``."""
    defaults = ServerConfig()
    parser.add_argument("--model", default=None,
                        help="model for /v1/embeddings (default: the first index's model, else the shipped one)")
    parser.add_argument("--index", action="append", metavar="[NAME=]PATH",
                        help="serve this index (repeatable; named after its folder unless NAME= is given)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--api-key", default=None,
                        help=f"require 'Authorization: Bearer KEY' on every route but /health "
                             f"(default: ${API_KEY_ENV}; prefer the variable, options show in ps)")
    parser.add_argument("--instruction", default=DEFAULT_INSTRUCTION,
                        help=f"instruction for embedding requests that give none (default {DEFAULT_INSTRUCTION!r})")
    parser.add_argument("--cors-origin", action="append", help="allow browser calls from this origin (repeatable; "
                                                               "default: no CORS)")
    parser.add_argument("--no-batching", action="store_true", help="one request per model call (for comparison)")
    parser.add_argument("--max-batch-tokens", type=int, default=None,
                        help=f"prompt tokens per merged batch (default {BATCH_TOKENS_BY_DEVICE['cpu']} on CPU, "
                             f"{DEFAULT_ACCELERATOR_BATCH_TOKENS} on an accelerator)")
    parser.add_argument("--max-wait-ms", type=float, default=DEFAULT_MAX_WAIT * 1000,
                        help=f"how long a batch waits for more requests (default {DEFAULT_MAX_WAIT * 1000:g} ms)")
    parser.add_argument("--max-texts", type=int, default=defaults.max_texts,
                        help=f"texts per request (default {defaults.max_texts})")
    parser.add_argument("--max-chars", type=int, default=defaults.max_chars,
                        help=f"characters per text (default {defaults.max_chars})")
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes,
                        help=f"request body size (default {defaults.max_body_bytes})")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if present)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
