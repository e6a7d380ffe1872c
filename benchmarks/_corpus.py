"""Shared benchmark corpus: texts of ~100+ tokens built from the shipped messages."""

from __future__ import annotations

from inbedder_retrieval.samples import load_sample

INSTRUCTIONS = (
    "How does the customer feel?",
    "Which product or service is discussed?",
    "What does the customer want?",
    "Is the customer asking a question?",
    "What is the main problem?",
    "How urgent is the message?",
    "What time is mentioned?",
    "Who is the message addressed to?",
)


def long_texts(count: int, per_text: int = 4) -> list[str]:
    """``count`` texts, each ``per_text`` shipped support messages joined (~100-130 tokens)."""
    messages = [record["text"] for record in load_sample("support_messages")]
    return [" ".join(messages[(i * per_text + j) % len(messages)] for j in range(per_text)) for i in range(count)]
