"""The CUDA paths of the default model on a lent GPU: dtypes against CPU fp32, and throughput.

    python benchmarks/gpu_checks.py [--texts 2048] [--model smollm2-135m-inbedder]

Prints, for fp32 / bf16 / fp16 on CUDA: the cosine of each vector to the CPU fp32 vector of
the same text (min and mean over 64 texts), whether the fingerprint equals CPU fp32's, and
throughput of ``encode`` (one instruction) and ``encode_many`` (three instructions, shared
document prefix) in texts/s and prompt tokens/s, at batch sizes 64 and 256. The tokens/s
figures feed the README's scaling arithmetic (GPU-hours per instruction).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from inbedder_retrieval import InBedder
from inbedder_retrieval.samples import load_sample

QUESTIONS = ("How does the customer feel?", "Which product or service is discussed?", "What does the customer want?")


def corpus(size: int) -> list[str]:
    texts = [record["text"] for name in ("support_messages", "customer_emails", "news_snippets", "helpdesk_tickets")
             for record in load_sample(name)]
    return [texts[i % len(texts)] + ("" if i < len(texts) else f" (#{i})") for i in range(size)]


def prompt_tokens(model: InBedder, texts: list[str], question: str) -> int:
    prompts = model.backend.build_prompts(texts, question)
    return sum(len(ids) for ids in model.backend.tokenizer(prompts)["input_ids"])


def timed(function) -> float:
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    start = time.perf_counter()
    function()
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16", "float16"])
    args = parser.parse_args()
    texts = corpus(args.texts)
    sample = texts[:64]
    reference_model = InBedder.from_pretrained(args.model, device="cpu", dtype="float32")
    reference = reference_model.encode(sample, QUESTIONS[0], show_progress_bar=False)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    print(f"GPU: {gpu}, torch {torch.__version__}; CPU fp32 fingerprint "
          f"{reference_model.fingerprint}")
    tokens = prompt_tokens(reference_model, texts, QUESTIONS[0])
    cpu_fingerprint = reference_model.fingerprint
    del reference_model
    print("| dtype | cos to CPU fp32 min / mean | same fingerprint | batch | encode texts/s | encode tokens/s "
          "| encode_many (3 q) texts/s |")
    print("|---|---|---|---|---|---|---|")
    for dtype in args.dtypes:
        model = InBedder.from_pretrained(args.model, device=args.device, dtype=dtype)
        vectors = model.encode(sample, QUESTIONS[0], show_progress_bar=False)
        cosine = (vectors * reference).sum(1)
        same = "yes" if model.fingerprint == cpu_fingerprint else "no"
        for batch in (64, 256):
            model.encode(texts[:batch], QUESTIONS[0], batch_size=batch, show_progress_bar=False)  # warm-up
            one = timed(lambda: model.encode(texts, QUESTIONS[0], batch_size=batch, show_progress_bar=False))
            many = timed(lambda: model.encode_many(texts, list(QUESTIONS), batch_size=batch))
            print(f"| {dtype} | {cosine.min():.5f} / {cosine.mean():.5f} | {same} | {batch} | {len(texts) / one:,.0f} "
                  f"| {tokens / one:,.0f} | {len(texts) / many:,.0f} |", flush=True)
        assert np.isfinite(vectors).all(), f"{dtype} gave non-finite vectors"


if __name__ == "__main__":
    main()
