"""The main demo: one corpus, two instructions, two different neighbourhoods."""

from __future__ import annotations

import numpy as np

from .embedder import InBedder
from .samples import load_sample

DEMO_INSTRUCTIONS = (
    "How does the customer feel?",
    "Which product or service is discussed?",
)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def run_demo(model: InBedder | None = None, anchors: int = 3, neighbours: int = 3) -> dict[str, list[list[str]]]:
    """Embed the shipped demo reviews under each instruction and print nearest neighbours.

    Returns, per instruction, the neighbour ids of each anchor (for tests).
    """
    model = model or InBedder.from_pretrained()
    records = load_sample("demo_reviews")
    ids = [record["id"] for record in records]
    texts = [record["text"] for record in records]
    print(f"Model: {model}\nCorpus: {len(texts)} shipped customer messages")
    print("Each line: cosine, id, text -> the model's own answer to the instruction\n")
    result: dict[str, list[list[str]]] = {}
    for instruction in DEMO_INSTRUCTIONS:
        vectors = model.encode(texts, instruction)
        answers = model.answer(texts, instruction)
        similarity = vectors @ vectors.T
        np.fill_diagonal(similarity, -np.inf)
        print(f"=== Instruction: {instruction!r}")
        result[instruction] = []
        for anchor in range(anchors):
            order = np.argsort(-similarity[anchor])[:neighbours]
            result[instruction].append([ids[index] for index in order])
            print(f"  {ids[anchor]}: {_short(texts[anchor], 60)}  -> {answers[anchor]!r}")
            for index in order:
                print(f"      {similarity[anchor, index]:.3f}  {ids[index]}: {_short(texts[index], 52)}  -> {answers[index]!r}")
        print()
    differ = sum(
        set(a) != set(b) for a, b in zip(*(result[instruction] for instruction in DEMO_INSTRUCTIONS))
    )
    print(f"Neighbours differ between the two instructions for {differ} of {anchors} anchors.")
    return result
