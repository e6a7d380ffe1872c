"""Checks shared by the embedder, the index, the stores, the integrations and the CLI: bad
input raises a clear error naming it before anything is read or written.

The rules (README, "Input rules and limits"): a bare string where a list is expected is a
``TypeError``; counts are positive ints; texts, instructions and ids are valid Unicode (no
lone surrogates); one metadata object is JSON, nested at most ``MAX_NESTING`` levels and at
most ``MAX_METADATA_BYTES`` as UTF-8 JSON.
"""

from __future__ import annotations

import json
import numbers
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

#: Deepest nesting of dicts and lists in one metadata object.
MAX_NESTING = 32
#: Largest metadata object, as UTF-8 JSON.
MAX_METADATA_BYTES = 64 * 1024


def check_sequence(value: object, what: str, items: str = "str") -> list[Any]:
    """``value`` as a list; a bare string, bytes, a mapping or a non-iterable is a ``TypeError``
    (``list("abc")`` would silently give three one-letter items)."""
    if isinstance(value, (str, bytes, Mapping)):
        raise TypeError(f"{what} must be a list of {items}, got a single {type(value).__name__} (wrap it in a list)")
    if value is None or not isinstance(value, Iterable):
        raise TypeError(f"{what} must be a list of {items}, got {type(value).__name__}")
    return list(value)


def check_unicode(text: str, what: str) -> str:
    """``text`` if it encodes as UTF-8; a lone surrogate (e.g. ``"\\ud800"``) is a ``ValueError``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{what} holds a lone surrogate {text[error.start]!r} at character {error.start}, which is not "
            "valid Unicode (read the source with errors='replace', or fix it)"
        ) from None
    return text


def validate_texts(texts: Iterable[object], what: str = "texts") -> list[str]:
    """Return ``texts`` as a list of non-blank strings, or raise naming the bad position."""
    checked: list[str] = []
    for position, text in enumerate(check_sequence(texts, what, "strings")):
        if not isinstance(text, str):
            raise TypeError(
                f"{what}[{position}] is {type(text).__name__}, expected str"
                + (" (decode bytes first)" if isinstance(text, bytes) else "")
            )
        if not text.strip():
            raise ValueError(f"{what}[{position}] is empty or blank")
        checked.append(check_unicode(text, f"{what}[{position}]"))
    return checked


def validate_instruction(instruction: object) -> str:
    """Return ``instruction`` if it is a non-blank string, else raise a clear error.

    (Whether it leaves room for the text is the model's check: ``InBedder.check_instruction``.)"""
    if not isinstance(instruction, str):
        raise TypeError(f"instruction must be a str, got {type(instruction).__name__}")
    if not instruction.strip():
        raise ValueError("instruction is empty: an InBedder needs a question about the text")
    return check_unicode(instruction, "instruction")


def check_instructions(instructions: Iterable[object]) -> list[str]:
    """A list of instructions, each checked; a bare string is a ``TypeError`` (it would
    become one instruction per letter)."""
    return [validate_instruction(instruction) for instruction in check_sequence(instructions, "instructions")]


def check_ids(ids: Iterable[object], what: str = "ids") -> list[str]:
    """``ids`` as a list of non-empty strings; a bare string or a non-str item is a ``TypeError``."""
    checked = check_sequence(ids, what)
    for position, doc_id in enumerate(checked):
        if not isinstance(doc_id, str) or not doc_id:
            raise TypeError(f"{what}[{position}] must be a non-empty str, got {doc_id!r}")
        check_unicode(doc_id, f"{what}[{position}]")
    return checked


def check_positive_int(value: object, what: str) -> int:
    """``value`` as an int if it is an integer >= 1 (numpy integers too; bools refused),
    else ``ValueError``/``TypeError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be a positive int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value}")
    return int(value)


def check_k(k: object) -> int:
    """The number of results of a search: an int >= 1."""
    return check_positive_int(k, "k")


def check_nesting(value: object, what: str, limit: int = MAX_NESTING, max_values: int = MAX_METADATA_BYTES) -> None:
    """Refuse ``value`` if its dicts and lists nest deeper than ``limit`` levels or it holds
    more than ``max_values`` values (``ValueError``). Iterative: no ``RecursionError``, and a
    self-referencing structure ends at the limit."""
    stack: list[tuple[object, int]] = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > max_values:
            raise ValueError(f"{what} holds more than {max_values} values")
        if isinstance(item, Mapping):
            children: Iterable[object] = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            raise ValueError(f"{what} is nested deeper than {limit} levels")
        stack.extend((child, depth + 1) for child in children)


def check_metadata(metadata: object, what: str = "metadata") -> dict[str, Any]:
    """One metadata object as plain JSON data (a copy); ``None`` is ``{}``.

    Refused with a ``ValueError`` naming ``what``: nesting deeper than ``MAX_NESTING``, more
    than ``MAX_METADATA_BYTES`` of UTF-8 JSON, NaN or infinity, values JSON cannot hold,
    lone surrogates; a non-mapping is a ``TypeError``."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"{what} must be a mapping, got {type(metadata).__name__}")
    check_nesting(metadata, what)
    try:
        encoded = json.dumps(dict(metadata), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} is not JSON-serialisable: {error}") from None
    size = len(check_unicode(encoded, f"{what} (as JSON)").encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"{what} is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES} bytes "
                         "(keep large content elsewhere and store a reference)")
    return json.loads(encoded)


def check_documents(
    texts: Iterable[str], ids: Iterable[str] | None, metadatas: Iterable[Mapping[str, Any] | None] | None
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """A batch of documents, checked before anything is written: texts, ids (generated when
    ``None``; unique) and metadata objects, one each."""
    texts = validate_texts(texts)
    ids = [uuid.uuid4().hex for _ in texts] if ids is None else check_ids(ids)
    if len(ids) != len(texts):
        raise ValueError(f"got {len(ids)} ids for {len(texts)} texts")
    seen: set[str] = set()
    for position, doc_id in enumerate(ids):
        if doc_id in seen:
            raise ValueError(f"ids[{position}] = {doc_id!r} appears twice in one call")
        seen.add(doc_id)
    metadatas = [None] * len(texts) if metadatas is None else check_sequence(metadatas, "metadatas", "dicts (one per text)")
    if len(metadatas) != len(texts):
        raise ValueError(f"got {len(metadatas)} metadatas for {len(texts)} texts")
    return texts, ids, [check_metadata(metadata, f"metadatas[{position}]") for position, metadata in enumerate(metadatas)]
