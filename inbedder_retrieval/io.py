"""Reading the command line's input: JSON arguments and texts from files.

Every error names its source (``file:line``, or the option); an input file with no text in
it is an error, not an empty result.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .validation import check_metadata, check_unicode


def parse_json(text: str, what: str) -> Any:
    """``text`` parsed as JSON; malformed or too deeply nested JSON is a ``ValueError``
    naming ``what``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{what}: not valid JSON ({error.msg} at column {error.colno})") from None
    except RecursionError:
        raise ValueError(f"{what}: JSON nested too deeply to read") from None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of each non-blank line, split at "\\n" only (a JSON string may
    hold U+2028 and other line separators); a UTF-8 byte-order mark is skipped."""
    if not path.is_file():
        raise FileNotFoundError(f"No such input file: {path}")
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8").removesuffix("\r")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}:{number}: not valid UTF-8 (byte {error.start + 1} of the line)") from None
        if line.strip():
            yield number, line


def read_records(path: str | Path) -> list[tuple[int, Any]]:
    """(line number, JSON value) for each non-blank line of a ``.jsonl`` file; errors name
    the file and line."""
    path = Path(path)
    return [(number, parse_json(line, f"{path}:{number}")) for number, line in _lines(path)]


def _text(record: Any, field: str, where: str) -> str:
    if not isinstance(record, dict) or not isinstance(record.get(field), str):
        raise ValueError(f"{where}: expected an object with a string {field!r} field")
    if not record[field].strip():
        raise ValueError(f"{where}: {field!r} is empty or blank")
    return check_unicode(record[field], f"{where}: {field!r}")


def read_documents(
    path: str | Path, text_field: str = "text", id_field: str = "id"
) -> tuple[list[str], list[str] | None, list[dict[str, Any]]]:
    """Texts, ids (``None`` if no record has one) and metadata from a ``.jsonl`` file.

    Metadata is the record's ``metadata`` object if present, else its other fields; it is
    checked here (``validation.check_metadata``) so that errors name the line.
    """
    texts, ids, metadatas = [], [], []
    for number, record in read_records(path):
        texts.append(_text(record, text_field, f"{path}:{number}"))
        ids.append(record.get(id_field))
        extra = {key: value for key, value in record.items() if key not in (text_field, id_field)}
        metadata = record["metadata"] if isinstance(record.get("metadata"), dict) else extra
        metadatas.append(check_metadata(metadata, f"{path}:{number}: metadata"))
    if not texts:
        raise ValueError(f"no documents in {path}")
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
        texts = [_text(record, field, f"{path}:{number}") for number, record in read_records(path)]
    else:
        texts = [line for _, line in _lines(path)]
    if not texts:
        raise ValueError(f"no texts in {path}")
    return texts
