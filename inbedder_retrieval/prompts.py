"""Prompt templates: the InBedder question-answering prompt, filled verbatim.

The reference fills its template with two chained ``str.replace`` calls, which mangles a
text that itself contains ``{instruction}``; ``str.format`` breaks on any brace. Here the
template is split once at its placeholders, so texts and instructions go in untouched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

INBEDDER_TEMPLATE = "### Input:\n{input}\n\n### Instruction:\n{instruction}\n\n### Response:"
#: The question integrations ask when the user names none.
DEFAULT_INSTRUCTION = "What is this text about?"

_PLACEHOLDER = re.compile(r"\{(input|instruction)\}")


@dataclass(frozen=True)
class PromptTemplate:
    """How a (text, instruction) pair becomes the prompt a model reads.

    Attributes:
        template: a string with exactly one ``{input}`` and one ``{instruction}``.
        system_prompt: for chat models, a system message; when set, the filled template
            becomes the user turn of the tokenizer's chat template (with the assistant
            turn opened), so the model answers in its chat format.
        examples: few-shot (input, instruction, answer) triples shown before the text, so
            that a model that was not fine-tuned answers tersely. In chat format they are
            user/assistant turns; otherwise filled templates followed by their answers.
    """

    template: str = INBEDDER_TEMPLATE
    system_prompt: str | None = None
    examples: tuple[tuple[str, str, str], ...] = ()
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
        """The template with ``text`` and ``instruction`` put in verbatim (no examples)."""
        values = {"input": text, "instruction": instruction}
        # split() with one capture group alternates literal, name, literal, name, literal.
        return "".join(
            values[piece] if index % 2 else piece for index, piece in enumerate(self._parts)
        )

    def prompt(self, text: str, instruction: str) -> str:
        """The plain (non-chat) prompt: the few-shot examples, then the filled template."""
        shots = "".join(f"{self.fill(i, q)} {a}\n\n" for i, q, a in self.examples)
        return shots + self.fill(text, instruction)

    def messages(self, text: str, instruction: str) -> list[dict[str, str]]:
        """The chat turns: system prompt, few-shot exchanges, then the user's question."""
        turns = [{"role": "system", "content": self.system_prompt or ""}]
        for example_input, example_instruction, answer in self.examples:
            turns.append({"role": "user", "content": self.fill(example_input, example_instruction)})
            turns.append({"role": "assistant", "content": answer})
        turns.append({"role": "user", "content": self.fill(text, instruction)})
        return turns


def validate_texts(texts: Iterable[object], what: str = "texts") -> list[str]:
    """Return ``texts`` as a list of non-blank strings, or raise naming the bad position."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{what} must be a list of strings, got a single {type(texts).__name__}")
    if not isinstance(texts, Iterable):
        raise TypeError(f"{what} must be a list of strings, got {type(texts).__name__}")
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


