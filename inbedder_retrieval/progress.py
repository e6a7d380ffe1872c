"""When to show a progress bar."""

from __future__ import annotations

import os

#: Jobs of at least this many texts show a progress bar unless told otherwise.
PROGRESS_BAR_MIN_TEXTS = 256


def show_progress(requested: bool | None, total: int) -> bool:
    """An explicit ``True``/``False`` wins; by default, show one for long jobs unless the
    ``TQDM_DISABLE`` environment variable is set (as tqdm itself documents)."""
    if requested is not None:
        return requested
    return total >= PROGRESS_BAR_MIN_TEXTS and os.environ.get("TQDM_DISABLE", "").lower() not in ("1", "true", "yes")
