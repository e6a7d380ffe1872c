"""Prompt templates: the InBedder question-answering prompt, filled verbatim.

The reference fills its template with two chained ``str.replace`` calls, which mangles a
text that itself contains ``{instruction}``; ``str.format`` breaks on any brace. Here the
template is split once at its placeholders, so texts and instructions go in untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# the checks of texts and instructions live with the other input checks; imported from here too
from .validation import validate_instruction, validate_texts  # noqa: F401

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
