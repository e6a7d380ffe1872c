"""Would torch's dynamic int8 quantization of the Linear layers be a usable CPU speed-up?

Speed on 64 support messages (fp32 vs int8, same run), how far the int8 vectors drift
(cosine to the fp32 vector of the same text), and instruction awareness of the int8 model
on both shipped fixtures (the `inbedder eval` metrics).

    .venv/bin/python benchmarks/int8_dynamic.py
"""

from __future__ import annotations

import time
import warnings

import torch
from torch.ao.quantization import quantize_dynamic

from inbedder_retrieval import InBedder
from inbedder_retrieval.evaluation import FIXTURES, baselines, evaluate, markdown_table
from inbedder_retrieval.samples import load_sample

QUESTION = "How does the customer feel?"


def timed_encode(model: InBedder, texts: list[str]) -> tuple[float, object]:
    model.encode(texts[:4], QUESTION)  # warm-up
    start = time.perf_counter()
    vectors = model.encode(texts, QUESTION, show_progress_bar=False)
    return time.perf_counter() - start, vectors


def main() -> None:
    texts = [record["text"] for record in load_sample("support_messages")[:64]]
    model = InBedder.from_pretrained(device="cpu")
    fp32_seconds, fp32 = timed_encode(model, texts)
    with warnings.catch_warnings():  # torch deprecates its quantized-tensor API
        warnings.simplefilter("ignore")
        model.backend.model = quantize_dynamic(model.backend.model, {torch.nn.Linear}, dtype=torch.qint8)
        int8_seconds, int8 = timed_encode(model, texts)
    drift = (fp32 * int8).sum(1)
    print(f"64 texts: fp32 {fp32_seconds:.1f} s, int8 {int8_seconds:.1f} s, speed-up {fp32_seconds / int8_seconds:.2f}x")
    print(f"cosine(fp32, int8) per text: min {drift.min():.3f}, mean {drift.mean():.3f}")
    rows = [evaluate("int8 (dynamic, Linear)", baselines.inbedder(model), fixture, load_sample(fixture), FIXTURES[fixture])
            for fixture in FIXTURES]
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
