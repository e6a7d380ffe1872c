"""A persistent embedding cache, so embedding the same text again costs nothing.

Vectors are keyed by the model's fingerprint (which covers its pooling and prompt), the
instruction and the text, in a SQLite file (safe for several processes). Nothing is
pickled: vectors are stored as raw float32 bytes.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import CorruptIndexError
from .weights import cache_dir


def default_cache_path() -> Path:
    return cache_dir() / "embeddings.sqlite"


class EmbeddingCache:
    """``get`` / ``put`` vectors by (model fingerprint, instruction, text)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
        except sqlite3.DatabaseError as error:
            raise CorruptIndexError(f"{self.path} is not a readable embedding cache: {error}") from error
        self._lock = threading.Lock()

    @staticmethod
    def key(fingerprint: str, instruction: str, text: str) -> bytes:
        return hashlib.sha256("\0".join((fingerprint, instruction, text)).encode()).digest()

    def get(self, fingerprint: str, instruction: str, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Cached vectors of ``texts`` (``None`` where missing), in order."""
        keys = [self.key(fingerprint, instruction, text) for text in texts]
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                rows = self._db.execute(
                    f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk
                )
                found.update((key, np.frombuffer(blob, dtype="<f4").copy()) for key, blob in rows)
        return [found.get(key) for key in keys]

    def put(self, fingerprint: str, instruction: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        rows = [
            (self.key(fingerprint, instruction, text), np.ascontiguousarray(vector, dtype="<f4").tobytes())
            for text, vector in zip(texts, vectors)
        ]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)
            self._db.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]

    def close(self) -> None:
        self._db.close()


def encode_cached(model, texts: Sequence[str], instruction: str, cache: EmbeddingCache | None, **kwargs) -> np.ndarray:
    """``model.encode(texts, instruction)``, taking what ``cache`` has and storing the rest."""
    if cache is None:
        return model.encode(list(texts), instruction, **kwargs)
    if not texts:
        return np.zeros((0, model.dim), dtype="float32")
    fingerprint = model.fingerprint
    cached = cache.get(fingerprint, instruction, texts)
    missing = [index for index, vector in enumerate(cached) if vector is None]
    if missing:
        fresh = model.encode([texts[index] for index in missing], instruction, **kwargs)
        cache.put(fingerprint, instruction, [texts[index] for index in missing], fresh)
        for index, vector in zip(missing, fresh):
            cached[index] = vector
    return np.stack(cached).astype("float32", copy=False)


def encode_many_cached(
    model, texts: Sequence[str], instructions: Sequence[str], cache: EmbeddingCache | None, **kwargs
) -> dict[str, np.ndarray]:
    """``model.encode_many``, taking what ``cache`` has and storing the rest."""
    if cache is None or not texts:
        return model.encode_many(list(texts), list(instructions), **kwargs)
    fingerprint = model.fingerprint
    cached = {instruction: cache.get(fingerprint, instruction, texts) for instruction in instructions}
    missing = sorted({index for vectors in cached.values() for index, vector in enumerate(vectors) if vector is None})
    if missing:
        fresh = model.encode_many([texts[index] for index in missing], list(instructions), **kwargs)
        for instruction, matrix in fresh.items():
            cache.put(fingerprint, instruction, [texts[index] for index in missing], matrix)
            for index, vector in zip(missing, matrix):
                cached[instruction][index] = vector
    return {instruction: np.stack(vectors).astype("float32", copy=False) for instruction, vectors in cached.items()}
