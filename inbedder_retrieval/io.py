"""Reading texts from files for the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_records(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, JSON value) for each non-blank line of a ``.jsonl`` file; errors name
    the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such input file: {path}")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        records.append((number, record))
    return records


def read_documents(
    path: str | Path, text_field: str = "text", id_field: str = "id"
) -> tuple[list[str], list[str] | None, list[dict[str, Any]]]:
    """Texts, ids (``None`` if no record has one) and metadata from a ``.jsonl`` file.

    Metadata is the record's ``metadata`` object if present, else its other fields.
    """
    texts, ids, metadatas = [], [], []
    for number, record in read_records(path):
        if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
            raise ValueError(f"{path}:{number}: no string {text_field!r} field")
        texts.append(record[text_field])
        ids.append(record.get(id_field))
        extra = {key: value for key, value in record.items() if key not in (text_field, id_field)}
        metadatas.append(record["metadata"] if isinstance(record.get("metadata"), dict) else extra)
    if all(doc_id is None for doc_id in ids):
        return texts, None, metadatas
    if any(not isinstance(doc_id, str) for doc_id in ids):
        raise ValueError(f"{path}: either every record or none has a string {id_field!r} field")
    return texts, ids, metadatas


def read_texts(path: str | Path, field: str = "text") -> list[str]:
    """Texts from a ``.jsonl`` file (one object per line, ``field`` holds the text) or a
    plain text file (one text per non-empty line). Errors name the file and line."""
    path = Path(path)
    if path.suffix == ".jsonl":
        texts = []
        for number, record in read_records(path):
            if not isinstance(record, dict) or not isinstance(record.get(field), str):
                raise ValueError(f"{path}:{number}: expected an object with a string {field!r} field")
            texts.append(record[field])
        return texts
    if not path.is_file():
        raise FileNotFoundError(f"No such input file: {path}")
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
