"""Dynamic batching: one worker thread owns a model and merges concurrent requests.

Requests are queued from the event loop without blocking it. The worker takes the first
waiting request, then keeps collecting for at most ``max_wait`` seconds while the batch
stays within ``max_batch_tokens`` prompt tokens, encodes each instruction's texts in one
``InBedder.encode`` call (requests whose texts are the same under several instructions
share one ``encode_many`` call, so causal models encode those texts once), and hands each
request its rows back through ``loop.call_soon_threadsafe``. Other model work (answers,
index writes) runs as a job in the same thread, between batches, so the model is only
ever used by one thread.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from ..embedder import InBedder
from ..prompts import validate_instruction, validate_texts
from .config import DEFAULT_MAX_WAIT, default_batch_tokens
from .metrics import ServerMetrics

T = TypeVar("T")



@dataclass
class _Work:
    """One queued unit: an embedding request, or a job (``fn``) to run in the worker."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    texts: list[str] = field(default_factory=list)
    instruction: str = ""
    fn: Callable[[], Any] | None = None
    tokens: list[int] = field(default_factory=list)
    rows: slice = field(default_factory=lambda: slice(0, 0))  # this request's rows in its model call


@dataclass(frozen=True)
class Embedded:
    """The vectors of one request and the prompt tokens the model read for them."""

    vectors: np.ndarray
    tokens: int


class Batcher:
    """The only user of ``model``: a worker thread fed by a queue.

    ``max_batch_tokens`` defaults by the model's device (``default_batch_tokens``).
    ``batching=False`` processes one request per model call (the baseline of
    ``benchmarks/serve_load.py``); everything else stays the same.
    """

    def __init__(self, model: InBedder, metrics: ServerMetrics, *, batching: bool = True,
                 max_batch_tokens: int | None = None, max_wait: float = DEFAULT_MAX_WAIT) -> None:
        if max_batch_tokens is None:
            max_batch_tokens = default_batch_tokens(model.backend.device.type)
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0 seconds, got {max_wait}")
        self.model = model
        self.metrics = metrics
        self.batching = batching
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait
        self._queue: queue.Queue[_Work | None] = queue.Queue()
        self._held: list[_Work] = []  # taken from the queue but left for the next batch
        self._thread = threading.Thread(target=self._serve, name=f"inbedder-model-{model.name}", daemon=True)
        self._thread.start()

    # -- the event loop's side ------------------------------------------------------------
    async def embed(self, texts: list[str], instruction: str) -> Embedded:
        """Unit vectors of ``texts`` under ``instruction`` (rows in input order)."""
        texts = validate_texts(texts)
        instruction = validate_instruction(instruction)
        loop = asyncio.get_running_loop()
        return await self._submit(_Work(loop, loop.create_future(), texts=texts, instruction=instruction))

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (model work other than embedding) in the worker thread."""
        loop = asyncio.get_running_loop()
        return await self._submit(_Work(loop, loop.create_future(), fn=fn))

    async def _submit(self, work: _Work) -> Any:
        self.metrics.queue_depth.labels(self.model.name).inc()  # before the worker can take it
        self._queue.put(work)
        return await work.future

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker after the work already queued."""
        self._queue.put(None)
        self._thread.join(timeout)

    # -- the worker's side ----------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            first = self._held.pop(0) if self._held else self._take(block=True)
            if first is None:
                return
            if first.fn is not None:
                self._settle(first, first.fn)
                continue
            try:
                batch = self._collect(first)
            except Exception as error:  # noqa: BLE001 - e.g. a tokenizer failure: fail the request, keep serving
                self._fail(first, error)
                continue
            self._encode(batch)

    def _take(self, block: bool, timeout: float | None = None) -> _Work | None:
        work = self._queue.get(block=block, timeout=timeout)
        if work is not None:
            self.metrics.queue_depth.labels(self.model.name).dec()
        return work

    def _collect(self, first: _Work) -> list[_Work]:
        """``first`` plus what arrives within ``max_wait`` and fits the token budget."""
        self._count_tokens(first)
        batch, used = [first], sum(first.tokens)
        if not self.batching:
            return batch
        deadline = time.monotonic() + self.max_wait
        while used < self.max_batch_tokens:
            try:
                work = self._take(block=True, timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if work is None or work.fn is not None:  # a job or the stop signal: after this batch
                self._held.append(work)
                break
            self._count_tokens(work)
            if used + sum(work.tokens) > self.max_batch_tokens:
                self._held.append(work)
                break
            batch.append(work)
            used += sum(work.tokens)
        return batch

    def _count_tokens(self, work: _Work) -> None:
        backend = self.model.backend
        work.tokens = backend.token_lengths(backend.build_prompts(work.texts, work.instruction))

    def _encode(self, batch: list[_Work]) -> None:
        """Encode the batch: one ``encode_many`` per set of requests that share their texts,
        one ``encode`` per remaining instruction; then settle every request."""
        started = time.perf_counter()
        try:
            for texts, members in _groups(batch):
                instructions = list(dict.fromkeys(work.instruction for work in members))
                if len(instructions) > 1:
                    matrices = self.model.encode_many(texts, instructions, batch_size=len(texts),
                                                      max_batch_tokens=self.max_batch_tokens)
                else:
                    matrices = {instructions[0]: self.model.encode(texts, instructions[0],
                                                                   batch_size=len(texts),
                                                                   max_batch_tokens=self.max_batch_tokens)}
                for work in members:
                    self._resolve(work, Embedded(matrices[work.instruction][work.rows], sum(work.tokens)))
        except Exception as error:  # noqa: BLE001 - a failed batch fails its requests, not the worker
            for work in batch:
                self._fail(work, error)
            return
        self.metrics.observe_batch(self.model.name, batch, time.perf_counter() - started)

    def _settle(self, work: _Work, fn: Callable[[], Any]) -> None:
        try:
            result = fn()
        except Exception as error:  # noqa: BLE001 - handed to the awaiting request
            self._fail(work, error)
            return
        self._resolve(work, result)

    @staticmethod
    def _resolve(work: _Work, result: Any) -> None:
        work.loop.call_soon_threadsafe(_set_result, work.future, result)

    @staticmethod
    def _fail(work: _Work, error: Exception) -> None:
        work.loop.call_soon_threadsafe(_set_exception, work.future, error)


def _groups(batch: list[_Work]) -> list[tuple[list[str], list[_Work]]]:
    """The batch as model calls: (texts, requests), each request's rows in ``work.rows``.

    A text list that several instructions ask for is one call (``encode_many``); the
    other requests are concatenated per instruction (one ``encode``).
    """
    by_texts: dict[tuple[str, ...], list[_Work]] = {}
    for work in batch:
        by_texts.setdefault(tuple(work.texts), []).append(work)
    groups: list[tuple[list[str], list[_Work]]] = []
    by_instruction: dict[str, list[_Work]] = {}
    for texts, members in by_texts.items():
        if len({work.instruction for work in members}) > 1:
            for work in members:
                work.rows = slice(0, len(texts))
            groups.append((list(texts), members))
        else:
            for work in members:
                by_instruction.setdefault(work.instruction, []).append(work)
    for members in by_instruction.values():
        texts: list[str] = []
        for work in members:
            work.rows = slice(len(texts), len(texts) + len(work.texts))
            texts.extend(work.texts)
        groups.append((texts, members))
    return groups


def _set_result(future: asyncio.Future, result: Any) -> None:
    if not future.done():  # the client may have gone away
        future.set_result(result)


def _set_exception(future: asyncio.Future, error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
