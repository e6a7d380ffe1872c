"""Instruction awareness before and after fine-tuning the default model.

Triplet accuracy per aspect on the shipped fixtures, for the plain sentence embedder,
the zero-shot default (chat + few-shot prompt) and a fine-tuned InBedder folder:

    .venv/bin/python benchmarks/finetuned_default.py [FINE_TUNED_FOLDER_OR_NAME]

Fixtures: ``two_aspects`` (topic x sentiment) and ``support_messages`` (product x mood),
none of whose texts is in the training set.
"""

from __future__ import annotations

import sys
import time

import torch

from inbedder_retrieval import InBedder
from inbedder_retrieval.embedder import load_reencoder
from inbedder_retrieval.evaluation import FIXTURES, aspect_triplet_accuracy
from inbedder_retrieval.samples import load_sample


def main() -> None:
    tuned = sys.argv[1] if len(sys.argv) > 1 else "smollm2-135m-inbedder"
    minilm = load_reencoder(None, torch.device("cpu"))
    embedders = {
        "all-MiniLM-L6-v2 (plain)": lambda texts, _: minilm.encode(texts),
        "zero-shot default (chat + few-shot)": InBedder.from_pretrained("smollm2-135m-instruct").encode,
        f"fine-tuned ({tuned})": InBedder.from_pretrained(tuned).encode,
    }
    print("| embedder | fixture | aspect A | acc A | aspect B | acc B | seconds |\n|---|---|---|---|---|---|---|")
    for name, embed in embedders.items():
        for fixture, instructions in FIXTURES.items():
            start = time.perf_counter()
            scores = aspect_triplet_accuracy(embed, load_sample(fixture), instructions)
            (a, acc_a), (b, acc_b) = scores.items()
            print(f"| {name} | {fixture} | {a} | {acc_a:.3f} | {b} | {acc_b:.3f} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
