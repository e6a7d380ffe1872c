"""What a server serves: its models (each behind one ``Batcher``) and its indexes.

An index opens with the model it was built with; indexes whose recorded model agrees with
an already loaded one (name and fingerprint) share it, so each model is loaded once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..embedder import InBedder
from ..index import InstructionIndex, read_manifest
from .batching import Batcher
from .config import DEFAULT_MAX_WAIT
from .metrics import ServerMetrics

logger = logging.getLogger(__name__)


@dataclass
class ServedIndex:
    """An open index and the batcher of its model."""

    name: str
    index: InstructionIndex
    batcher: Batcher


@dataclass
class Service:
    """Models by name (the first one answers requests that name none) and indexes by name."""

    metrics: ServerMetrics
    batchers: dict[str, Batcher]
    indexes: dict[str, ServedIndex] = field(default_factory=dict)

    @property
    def default_model(self) -> str:
        return next(iter(self.batchers))

    @classmethod
    def from_objects(cls, models: Sequence[InBedder], indexes: Mapping[str, InstructionIndex] | None = None, *,
                     batching: bool = True, max_batch_tokens: int | None = None,
                     max_wait: float = DEFAULT_MAX_WAIT) -> Service:
        """A service over loaded models and open indexes (an index's model is added if new)."""
        metrics = ServerMetrics()
        batchers: dict[int, Batcher] = {}

        def batcher_for(model: InBedder) -> Batcher:
            if id(model) not in batchers:
                if any(b.model.name == model.name for b in batchers.values()):
                    raise ValueError(f"two different models are both named {model.name!r}")
                batchers[id(model)] = Batcher(model, metrics, batching=batching, max_batch_tokens=max_batch_tokens,
                                              max_wait=max_wait)
            return batchers[id(model)]

        for model in models:
            batcher_for(model)
        served = {name: ServedIndex(name, index, batcher_for(index.model)) for name, index in (indexes or {}).items()}
        if not batchers:
            raise ValueError("a server needs at least one model")
        return cls(metrics, {b.model.name: b for b in batchers.values()}, served)

    @classmethod
    def load(cls, model: str | None, index_paths: Sequence[str], *, device: str | None = None,
             dtype: str | None = None, **batching: object) -> Service:
        """Load ``model`` (default: the first index's model, else the shipped default) and
        open every index, each with a model that agrees with its manifest."""
        named = dict(_index_name(spec) for spec in index_paths)
        if len(named) != len(index_paths):
            raise ValueError("two --index options give the same name; name them with NAME=PATH")
        loaded: list[InBedder] = []
        if model is not None or not named:
            loaded.append(InBedder.from_pretrained(model, device=device, dtype=dtype))
        indexes: dict[str, InstructionIndex] = {}
        try:
            for name, path in named.items():
                recorded = read_manifest(path)["model"]
                shared = next((m for m in loaded if m.name == recorded["name"]
                               and m.fingerprint == recorded["fingerprint"]), None)
                indexes[name] = InstructionIndex.open(path, shared)
                if shared is None:
                    loaded.append(indexes[name].model)
                logger.info("index %r: %s (%s model)", name, indexes[name], "shared" if shared else "its own")
        except BaseException:
            for index in indexes.values():
                index.close()
            raise
        return cls.from_objects(loaded, indexes, **batching)

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()
        for served in self.indexes.values():
            served.index.close()


def _index_name(spec: str) -> tuple[str, Path]:
    """``NAME=PATH`` or ``PATH`` (named after its folder)."""
    name, sep, path = spec.partition("=")
    if not sep:
        name, path = Path(spec).resolve().name, spec
    if not name:
        raise ValueError(f"--index {spec!r}: the name before '=' is empty")
    return name, Path(path)
