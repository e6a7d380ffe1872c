"""The cost of instruction-awareness: our encode against SentenceTransformer.encode.

Same texts; all-MiniLM-L6-v2 (the shipped sentence embedder) against the default
InBedder. Tokens are counted with each model's own tokenizer.

    .venv/bin/python benchmarks/versus_sentence_transformers.py [N_TEXTS=64]
"""

from __future__ import annotations

import sys
import time

import torch

from _corpus import INSTRUCTIONS, long_texts
from inbedder_retrieval import InBedder
from inbedder_retrieval.embedder import load_reencoder


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    texts = long_texts(count)
    minilm = load_reencoder(None, torch.device("cpu"))
    model = InBedder.from_pretrained(device="cpu")
    minilm.encode(texts[:2])
    model.encode(texts[:2], INSTRUCTIONS[0])
    st_tokens = sum(len(ids) for ids in minilm.tokenizer(texts)["input_ids"])
    our_tokens = sum(model.backend.token_lengths(model.backend.build_prompts(texts, INSTRUCTIONS[0])))
    start = time.perf_counter()
    minilm.encode(texts, batch_size=16)
    st_seconds = time.perf_counter() - start
    start = time.perf_counter()
    model.encode(texts, INSTRUCTIONS[0], batch_size=16)
    our_seconds = time.perf_counter() - start
    print(f"{count} texts, {torch.get_num_threads()} threads")
    print("| model | texts/s | tokens/s | slower than MiniLM by |\n|---|---|---|---|")
    print(f"| all-MiniLM-L6-v2 (SentenceTransformer.encode) | {count / st_seconds:.1f} | {st_tokens / st_seconds:.0f} | 1.0 |")
    print(f"| {model.name} (InBedder.encode) | {count / our_seconds:.2f} | {our_tokens / our_seconds:.0f} | "
          f"{our_seconds / st_seconds:.1f} |")


if __name__ == "__main__":
    main()
