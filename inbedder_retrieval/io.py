"""Reading the command line's input: JSON arguments and texts from files.

Input files are read by extension (``READERS``): ``.jsonl`` (one object per line), ``.csv``
(a header line naming the fields, then one record per row), ``.parquet`` (needs
``pyarrow``) and ``.txt`` (one text per line). Every error names its source
(``file:line``, or the option); an input file with no text in it is an error, not an empty
result.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from .validation import check_metadata, check_sequence, check_unicode


def expand_sources(sources: Iterable[str | PathLike[str]], in_folder: Callable[[Path], Iterable[Path]], *,
                   kind: str, content: str) -> list[Path]:
    """The files named by ``sources``: a file itself, a folder its ``in_folder(folder)``
    files (sorted); each file once. Errors call the sources "{kind} files or folders" and
    say a folder "holds no {content}"."""
    files: list[Path] = []
    for source in map(Path, check_sequence(sources, "sources", f"{kind} files or folders")):
        if source.is_dir():
            inside = sorted(in_folder(source))
            if not inside:
                raise FileNotFoundError(f"{source} holds no {content}")
            files += inside
        elif source.is_file():
            files.append(source)
        else:
            raise FileNotFoundError(f"No such {kind} file or folder: {source}")
    return list(dict.fromkeys(files))


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


def _jsonl_rows(path: Path, text_field: str) -> list[tuple[str, Any]]:
    return [(f"{path}:{number}", value) for number, value in read_records(path)]


def _txt_rows(path: Path, text_field: str) -> list[tuple[str, Any]]:
    return [(f"{path}:{number}", {text_field: line}) for number, line in _lines(path)]


def _csv_rows(path: Path, text_field: str) -> list[tuple[str, Any]]:
    """The header line names the fields; it is never read as a record."""
    text = "\n".join(line for _, line in _lines(path))  # checked UTF-8, blank lines dropped
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or text_field not in reader.fieldnames:
        raise ValueError(f"{path}:1: the header line has no {text_field!r} column (columns: "
                         f"{', '.join(reader.fieldnames or ())}); name it with --text-field")
    return [(f"{path}: row {number}", row) for number, row in enumerate(reader, start=1)]


def _parquet_rows(path: Path, text_field: str) -> list[tuple[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise ModuleNotFoundError(f"reading {path} needs pyarrow: pip install pyarrow") from None
    if not path.is_file():
        raise FileNotFoundError(f"No such input file: {path}")
    table = pq.read_table(path)
    if text_field not in table.column_names:
        raise ValueError(f"{path}: no {text_field!r} column (columns: {', '.join(table.column_names)}); "
                         "name it with --text-field")
    return [(f"{path}: row {number}", row) for number, row in enumerate(table.to_pylist(), start=1)]


#: file extension -> reader of (where, record) pairs
READERS: dict[str, Callable[[Path, str], list[tuple[str, Any]]]] = {
    ".jsonl": _jsonl_rows,
    ".csv": _csv_rows,
    ".parquet": _parquet_rows,
    ".txt": _txt_rows,
}


def read_rows(path: str | Path, text_field: str = "text") -> list[tuple[str, Any]]:
    """(where, record) for each record of an input file, read by its extension (a file
    without a known extension is read as ``.txt``)."""
    path = Path(path)
    return READERS.get(path.suffix.lower(), _txt_rows)(path, text_field)


def _text(record: Any, field: str, where: str) -> str:
    if not isinstance(record, dict) or not isinstance(record.get(field), str):
        raise ValueError(f"{where}: expected an object with a string {field!r} field")
    if not record[field].strip():
        raise ValueError(f"{where}: {field!r} is empty or blank")
    return check_unicode(record[field], f"{where}: {field!r}")


def record_metadata(record: Mapping[str, Any], text_field: str = "text", id_field: str = "id") -> Any:
    """A record's metadata: its ``metadata`` object if it has one, else its other fields."""
    if isinstance(record.get("metadata"), Mapping):
        return record["metadata"]
    return {key: value for key, value in record.items() if key not in (text_field, id_field)}


def read_documents(
    path: str | Path, text_field: str = "text", id_field: str = "id", noun: str = "documents"
) -> tuple[list[str], list[str] | None, list[dict[str, Any]]]:
    """Texts, ids (``None`` if no record has one) and metadata from an input file (an
    empty one is an error: "no {noun} in ...").

    Metadata is the record's ``metadata`` object if present, else its other fields; it is
    checked here (``validation.check_metadata``) so that errors name the line.
    """
    texts, ids, metadatas = [], [], []
    for where, record in read_rows(path, text_field):
        texts.append(_text(record, text_field, where))
        ids.append(record.get(id_field))
        metadatas.append(check_metadata(record_metadata(record, text_field, id_field), f"{where}: metadata"))
    if not texts:
        raise ValueError(f"no {noun} in {path}")
    if all(doc_id is None for doc_id in ids):
        return texts, None, metadatas
    if any(not isinstance(doc_id, str) for doc_id in ids):
        raise ValueError(f"{path}: either every record or none has a string {id_field!r} field")
    return texts, ids, metadatas


def read_texts(path: str | Path, field: str = "text") -> list[str]:
    """Texts from an input file (``.jsonl``, ``.csv``, ``.parquet``: ``field`` holds the
    text; ``.txt``: one text per non-empty line). Errors name the file and line."""
    texts = [_text(record, field, where) for where, record in read_rows(path, field)]
    if not texts:
        raise ValueError(f"no texts in {path}")
    return texts
