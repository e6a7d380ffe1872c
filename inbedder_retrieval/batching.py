"""Length-sorted batches bounded by padded tokens (as text-embeddings-inference's queue)."""

from __future__ import annotations

from collections.abc import Sequence


def token_budget_batches(lengths: Sequence[int], max_batch_size: int, max_batch_tokens: int | None) -> list[list[int]]:
    """Indices grouped into batches, longest first.

    A batch holds at most ``max_batch_size`` items and, when ``max_batch_tokens`` is set,
    at most that many padded tokens (items x its longest item); an item longer than the
    budget gets a batch of its own. Sorting by length keeps padding small, so long and
    short texts both run efficiently.
    """
    if max_batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {max_batch_size}")
    if max_batch_tokens is not None and max_batch_tokens < 1:
        raise ValueError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    batches: list[list[int]] = []
    for index in order:
        if batches:
            batch = batches[-1]
            longest = lengths[batch[0]]
            fits_tokens = max_batch_tokens is None or (len(batch) + 1) * longest <= max_batch_tokens
            if len(batch) < max_batch_size and fits_tokens:
                batch.append(index)
                continue
        batches.append([index])
    return batches
