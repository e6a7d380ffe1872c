"""An undo journal: multi-operation transactions over an engine that has none (Qdrant).

Before a change, the store appends what undoes it (the previous state of the points it
touches) as one JSON line and syncs it to disk. Commit deletes the journal; an error rolls
the entries back newest first; a journal found when a store opens was left by a killed
writer and is rolled back the same way. Replaying restores recorded states, so it is safe
to repeat if the replay itself is interrupted.

A lock file, held for the whole transaction, tells a second process that a journal belongs
to a live writer (a Qdrant server can be shared), so only an abandoned one is replayed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from filelock import FileLock, Timeout

Entry = dict[str, Any]


class UndoJournal:
    """The undo journal ``file`` (and its lock ``file + ".lock"``)."""

    def __init__(self, file: Path) -> None:
        self.file = Path(file)
        self._lock = FileLock(str(self.file) + ".lock")
        self._handle: IO[str] | None = None

    @property
    def active(self) -> bool:
        """Whether a transaction is open (entries are being recorded)."""
        return self._handle is not None

    def begin(self) -> None:
        self.file.parent.mkdir(exist_ok=True)
        self._lock.acquire()
        self._handle = open(self.file, "a", encoding="utf-8")

    def record(self, *entries: Entry) -> None:
        """Append ``entries`` durably, with one sync (a no-op outside a transaction)."""
        if self._handle is None:
            return
        self._handle.write("".join(json.dumps(entry) + "\n" for entry in entries))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def commit(self) -> None:
        """End the transaction: its changes stay."""
        self._close()
        self.file.unlink()
        self._lock.release()

    def roll_back(self, undo: Callable[[list[Entry]], None]) -> None:
        """End the transaction: ``undo`` gets its entries, newest first."""
        self._close()
        try:
            self._replay(undo)
        finally:
            self._lock.release()

    def recover(self, undo: Callable[[list[Entry]], None]) -> bool:
        """Roll back a journal left by a killed writer (not one a live writer holds);
        whether there was one."""
        if not self.file.exists():
            return False
        try:
            self._lock.acquire(timeout=0)
        except Timeout:  # a live writer in another process owns it
            return False
        try:
            return self._replay(undo)
        finally:
            self._lock.release()

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _replay(self, undo: Callable[[list[Entry]], None]) -> bool:
        if not self.file.exists():
            return False
        entries = []
        for line in self.file.read_text("utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:  # the torn last line of a killed writer: its change never ran
                break
        undo(entries[::-1])
        self.file.unlink()
        return True
