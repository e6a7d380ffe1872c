"""Embedding a corpus under K instructions with and without sharing each document.

For K = 1, 2, 4, 8: time ``encode_many`` with document sharing on and off (off = one full
pass per instruction), and the theoretical ratio from token counts
(K full prompts) / (one document part + K instruction parts).

    .venv/bin/python benchmarks/multi_instruction.py [N_TEXTS=48] [MODEL]
"""

from __future__ import annotations

import sys
import time

from _corpus import INSTRUCTIONS, long_texts
from inbedder_retrieval import InBedder


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 48
    model = InBedder.from_pretrained(sys.argv[2] if len(sys.argv) > 2 else None, device="cpu")
    backend = model.backend
    texts = long_texts(count)
    model.encode_many(texts[:2], list(INSTRUCTIONS[:2]))  # warm-up
    print(f"{model.name}: {count} texts")
    print("| K | shared (s) | separate (s) | achieved ratio | theoretical ratio | achieved / theoretical |")
    print("|---|---|---|---|---|---|")
    for k in (1, 2, 4, 8):
        questions = list(INSTRUCTIONS[:k])
        full = sum(sum(backend.token_lengths(backend.build_prompts(texts, q))) for q in questions)
        documents, suffixes = backend._split_rows(texts, questions)
        shared_tokens = sum(len(d) for d in documents) + count * sum(len(s) for s in suffixes)
        start = time.perf_counter()
        model.encode_many(texts, questions, batch_size=16)
        shared = time.perf_counter() - start
        backend.reuse_prefix = False
        start = time.perf_counter()
        model.encode_many(texts, questions, batch_size=16)
        separate = time.perf_counter() - start
        backend.reuse_prefix = True
        achieved, theory = separate / shared, full / shared_tokens
        print(f"| {k} | {shared:.1f} | {separate:.1f} | {achieved:.2f} | {theory:.2f} | {achieved / theory:.2f} |", flush=True)


if __name__ == "__main__":
    main()
