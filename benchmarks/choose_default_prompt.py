"""How the default model's prompt and pooling were chosen.

Triplet accuracy per aspect on the shipped ``two_aspects`` fixture (96 reviews, topic x
sentiment) for a plain sentence embedder, an INSTRUCTOR-style prefix, and SmolLM2-135M-
Instruct under each prompt format and pooling. Prints a Markdown table.

    .venv/bin/python benchmarks/choose_default_prompt.py
"""

from __future__ import annotations

import time

import torch

from inbedder_retrieval import InBedder, PromptTemplate
from inbedder_retrieval.embedder import load_reencoder
from inbedder_retrieval.evaluation import aspect_triplet_accuracy
from inbedder_retrieval.models import SHORT_ANSWER_EXAMPLES, SHORT_ANSWER_SYSTEM_PROMPT
from inbedder_retrieval.samples import load_sample

PROMPTS = {
    "InBedder template": PromptTemplate(),
    "chat + short-answer system prompt": PromptTemplate(system_prompt=SHORT_ANSWER_SYSTEM_PROMPT),
    "InBedder template + 4 few-shot answers": PromptTemplate(examples=SHORT_ANSWER_EXAMPLES),
    "chat + system prompt + 4 few-shot answers": PromptTemplate(
        system_prompt=SHORT_ANSWER_SYSTEM_PROMPT, examples=SHORT_ANSWER_EXAMPLES
    ),
}
POOLINGS = ("fst_gen", "avg_gen", "reencode")


def row(name: str, scores: dict[str, float], seconds: float) -> str:
    return f"| {name} | {scores['topic']:.3f} | {scores['sentiment']:.3f} | {seconds:.0f} |"


def main() -> None:
    records = load_sample("two_aspects")
    minilm = load_reencoder(None, torch.device("cpu"))
    print("| embedder | topic | sentiment | seconds |\n|---|---|---|---|")
    start = time.perf_counter()
    scores = aspect_triplet_accuracy(lambda texts, _: minilm.encode(texts), records)
    print(row("all-MiniLM-L6-v2 (no instruction)", scores, time.perf_counter() - start), flush=True)
    start = time.perf_counter()
    scores = aspect_triplet_accuracy(lambda texts, q: minilm.encode([f"{q}: {t}" for t in texts]), records)
    print(row("all-MiniLM-L6-v2, '{instruction}: {text}'", scores, time.perf_counter() - start), flush=True)
    base = InBedder.from_pretrained(reencoder=minilm, pooling="reencode")
    for prompt_name, template in PROMPTS.items():
        for pooling in POOLINGS:
            base.backend.description = base.backend.description.with_overrides(template=template)
            model = InBedder(base.backend, pooling=pooling, reencoder=minilm)
            start = time.perf_counter()
            scores = aspect_triplet_accuracy(model.encode, records)
            print(row(f"SmolLM2-135M, {prompt_name}, {pooling}", scores, time.perf_counter() - start), flush=True)


if __name__ == "__main__":
    main()
