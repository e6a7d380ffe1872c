"""bf16 on the CPU: speed, drift and instruction awareness against fp32, in one run.

On CPUs with bf16 instructions (avx512_bf16 / AMX) torch runs bf16 matmuls natively.

    cd benchmarks && ../.venv/bin/python cpu_bf16.py
"""

from __future__ import annotations

import time

from inbedder_retrieval import InBedder
from inbedder_retrieval.evaluation import FIXTURES, baselines, evaluate, markdown_table
from inbedder_retrieval.samples import load_sample

QUESTION = "How does the customer feel?"


def main() -> None:
    texts = [record["text"] for record in load_sample("support_messages")[:64]]
    seconds, vectors, rows = {}, {}, []
    for dtype in ("float32", "bfloat16"):
        model = InBedder.from_pretrained(device="cpu", dtype=dtype)
        model.encode(texts[:4], QUESTION)  # warm-up
        start = time.perf_counter()
        vectors[dtype] = model.encode(texts, QUESTION, show_progress_bar=False)
        seconds[dtype] = time.perf_counter() - start
        rows += [evaluate(dtype, baselines.inbedder(model), fixture, load_sample(fixture), FIXTURES[fixture])
                 for fixture in FIXTURES]
    drift = (vectors["float32"] * vectors["bfloat16"]).sum(1)
    print(f"64 texts: fp32 {seconds['float32']:.2f} s, bf16 {seconds['bfloat16']:.2f} s, "
          f"speed-up {seconds['float32'] / seconds['bfloat16']:.2f}x")
    print(f"cosine(fp32, bf16) per text: min {drift.min():.5f}, mean {drift.mean():.5f}")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
