"""Reading texts from files for the command line."""

from __future__ import annotations

import json
from pathlib import Path


def read_texts(path: str | Path, field: str = "text") -> list[str]:
    """Texts from a ``.jsonl`` file (one object per line, ``field`` holds the text) or a
    plain text file (one text per non-empty line). Errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such input file: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix != ".jsonl":
        return [line for line in lines if line.strip()]
    texts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get(field), str):
            raise ValueError(f"{path}:{number}: expected an object with a string {field!r} field")
        texts.append(record[field])
    return texts
