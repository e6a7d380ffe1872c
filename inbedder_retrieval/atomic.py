"""Crash-safe writes: a folder or file appears whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; on success it is renamed to
    ``target`` in one step, on any error it is removed and ``target`` is left untouched.

    ``target`` must not exist yet (a rename cannot replace a non-empty folder).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield staging
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def atomic_file(target: Path) -> Iterator[BinaryIO]:
    """Yield a binary file to write ``target``'s content into; on success it is synced and
    renamed to ``target`` in one step, on any error it is removed and ``target`` is left
    untouched. A killed writer leaves at most a ``.{name}.*.partial`` file beside it.

    The file gets the mode every other file of the index gets: 0666 less the umask."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.partial"
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a synced temporary file and one rename."""
    with atomic_file(target) as file:
        file.write(data)
