import pytest

from inbedder_retrieval.prompts import (
    INBEDDER_TEMPLATE,
    PromptTemplate,
    validate_instruction,
    validate_texts,
)


def test_fill_matches_reference_template():
    prompt = PromptTemplate().fill("The soup was cold.", "How does the customer feel?")
    assert prompt == "### Input:\nThe soup was cold.\n\n### Instruction:\nHow does the customer feel?\n\n### Response:"
    assert INBEDDER_TEMPLATE.endswith("### Response:")


@pytest.mark.parametrize(
    "text, instruction",
    [
        ("a text with {instruction} inside", "What is it?"),
        ("braces { } {} {0} and {input}", "Which {input} is {instruction}?"),
        ("%s %(name)s \\n", "{{double}}"),
    ],
)
def test_fill_puts_text_and_instruction_in_verbatim(text, instruction):
    prompt = PromptTemplate().fill(text, instruction)
    assert prompt == f"### Input:\n{text}\n\n### Instruction:\n{instruction}\n\n### Response:"


@pytest.mark.parametrize("template", ["{input} only", "{instruction}", "{input}{input}{instruction}", "none"])
def test_template_needs_each_placeholder_once(template):
    with pytest.raises(ValueError, match="exactly one"):
        PromptTemplate(template)


def test_validate_texts_names_the_bad_position():
    assert validate_texts(["a", "b"]) == ["a", "b"]
    assert validate_texts([]) == []
    with pytest.raises(TypeError, match=r"texts\[1\] is NoneType"):
        validate_texts(["ok", None])
    with pytest.raises(TypeError, match=r"texts\[0\] is bytes.*decode"):
        validate_texts([b"raw"])
    with pytest.raises(TypeError, match=r"texts\[2\] is int"):
        validate_texts(["a", "b", 3])
    with pytest.raises(ValueError, match=r"texts\[1\] is empty"):
        validate_texts(["a", "   "])
    with pytest.raises(TypeError, match="single str"):
        validate_texts("not a list")


def test_validate_instruction():
    assert validate_instruction("Why?") == "Why?"
    with pytest.raises(ValueError, match="empty"):
        validate_instruction(" ")
    with pytest.raises(TypeError):
        validate_instruction(None)
