"""An index folder's manifest (``index.json``): read and checked without importing the
model stack, so the command line can check arguments before anything heavy loads."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import CorruptIndexError

FORMAT_VERSION = 1
MANIFEST = "index.json"


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of the index folder ``path``, checked."""
    file = path / MANIFEST
    if not file.exists():
        stores = sorted(p.name for p in path.glob("*-store") if p.is_dir())  # the backends' folders
        if stores:
            raise CorruptIndexError(f"{file} is missing, but {path} holds an index's store ({', '.join(stores)}): "
                                    "restore index.json from a backup; nothing was changed")
        raise FileNotFoundError(f"{path} holds no index ({MANIFEST} is missing)")
    try:
        manifest = json.loads(file.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptIndexError(f"{file} is truncated or corrupted: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise CorruptIndexError(f"{file} is not an index manifest of format version {FORMAT_VERSION}")
    return manifest


def dtype_hint(recorded: Mapping[str, Any], other: Mapping[str, Any]) -> str:
    """For a fingerprint mismatch between two model records (an index's and a model's or a
    shard's) that their dtypes explain: a hint naming both, else ``""``. Records made
    before the dtype was recorded give no hint."""
    built, given = recorded.get("dtype"), other.get("dtype")
    if built and given and built != given:
        return f"; the index's vectors were made in {built}, these in {given}: use dtype={built!r}"
    return ""
