"""Prompt templates: the InBedder question-answering prompt, filled verbatim.

The reference fills its template with two chained ``str.replace`` calls, which mangles a
text that itself contains ``{instruction}``; ``str.format`` breaks on any brace. Here the
template is split once at its placeholders, so texts and instructions go in untouched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

INBEDDER_TEMPLATE = "### Input:\n{input}\n\n### Instruction:\n{instruction}\n\n### Response:"

_PLACEHOLDER = re.compile(r"\{(input|instruction)\}")


@dataclass(frozen=True)
class PromptTemplate:
    """How a (text, instruction) pair becomes the prompt a model reads.

    Attributes:
        template: a string with exactly one ``{input}`` and one ``{instruction}``.
        system_prompt: for chat models, a system message; when set, the filled template
            becomes the user turn of the tokenizer's chat template (with the assistant
            turn opened), so the model answers in its chat format.
    """

    template: str = INBEDDER_TEMPLATE
    system_prompt: str | None = None
    _parts: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = _PLACEHOLDER.findall(self.template)
        if sorted(names) != ["input", "instruction"]:
            raise ValueError(
                "A prompt template needs exactly one '{input}' and one '{instruction}', "
                f"found {names!r} in {self.template!r}"
            )
        object.__setattr__(self, "_parts", tuple(_PLACEHOLDER.split(self.template)))

    @property
    def uses_chat(self) -> bool:
        return self.system_prompt is not None

    def fill(self, text: str, instruction: str) -> str:
        """The template with ``text`` and ``instruction`` put in verbatim."""
        values = {"input": text, "instruction": instruction}
        # split() with one capture group alternates literal, name, literal, name, literal.
        return "".join(
            values[piece] if index % 2 else piece for index, piece in enumerate(self._parts)
        )


def validate_texts(texts: Iterable[object], what: str = "texts") -> list[str]:
    """Return ``texts`` as a list of non-blank strings, or raise naming the bad position."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{what} must be a list of strings, got a single {type(texts).__name__}")
    checked: list[str] = []
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"{what}[{position}] is {type(text).__name__}, expected str"
                + (" (decode bytes first)" if isinstance(text, bytes) else "")
            )
        if not text.strip():
            raise ValueError(f"{what}[{position}] is empty or blank")
        checked.append(text)
    return checked


def validate_instruction(instruction: object) -> str:
    """Return ``instruction`` if it is a non-blank string, else raise a clear error."""
    if not isinstance(instruction, str):
        raise TypeError(f"instruction must be a str, got {type(instruction).__name__}")
    if not instruction.strip():
        raise ValueError("instruction is empty: an InBedder needs a question about the text")
    return instruction


def fill_all(template: PromptTemplate, texts: Sequence[str], instruction: str) -> list[str]:
    """Fill ``template`` for every text under one instruction."""
    return [template.fill(text, instruction) for text in texts]
