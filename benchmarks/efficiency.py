"""How close the encoder gets to the machine's matmul speed.

Achieved FLOP/s = 2 x parameters x tokens / time, for batch encoding; against the FLOP/s
of a torch matmul of a similar shape (tokens of one batch x hidden, times hidden x MLP
width) measured in the same run. Also tokens/s and peak memory.

    .venv/bin/python benchmarks/efficiency.py [N_TEXTS=64] [MODEL]
"""

from __future__ import annotations

import resource
import sys
import time

import torch

from _corpus import INSTRUCTIONS, long_texts
from inbedder_retrieval import InBedder


def matmul_flops(rows: int, hidden: int, width: int, repeats: int = 20) -> float:
    a, b = torch.randn(rows, hidden), torch.randn(hidden, width)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * rows * hidden * width * repeats / (time.perf_counter() - start)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    model = InBedder.from_pretrained(sys.argv[2] if len(sys.argv) > 2 else None, device="cpu")
    inner = model.backend.model
    params = sum(p.numel() for name, p in inner.named_parameters() if "embed_tokens" not in name)
    texts = long_texts(count)
    tokens = sum(model.backend.token_lengths(model.backend.build_prompts(texts, INSTRUCTIONS[0])))
    model.encode(texts[:2], INSTRUCTIONS[0])
    start = time.perf_counter()
    model.encode(texts, INSTRUCTIONS[0], batch_size=16)
    seconds = time.perf_counter() - start
    achieved = 2 * params * tokens / seconds
    config = inner.config
    peak = matmul_flops(16 * tokens // count, config.hidden_size, config.intermediate_size)
    print(f"{model.name}: {params / 1e6:.1f}M non-embedding parameters, {count} texts, {tokens} tokens, "
          f"{torch.get_num_threads()} threads")
    print("| tokens/s | achieved GFLOP/s | matmul GFLOP/s | fraction | peak RSS |\n|---|---|---|---|---|")
    print(f"| {tokens / seconds:.0f} | {achieved / 1e9:.1f} | {peak / 1e9:.1f} | {achieved / peak:.2f} | "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB |")


if __name__ == "__main__":
    main()
