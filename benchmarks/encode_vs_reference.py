"""Our one-pass encode against the reference method, on the same model and texts.

The reference (github zhang-yu-wei/InBedder, ``lm_encoders_hf``) calls ``generate()``
with ``output_hidden_states=True`` and reads the last prompt position of the first step.
We run one forward pass (and, for several instructions, encode each document once).

    .venv/bin/python benchmarks/encode_vs_reference.py [N_TEXTS=64] [MODEL]
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from _corpus import INSTRUCTIONS, long_texts
from inbedder_retrieval import InBedder


def reference_encode(model: InBedder, texts: list[str], instruction: str, new_tokens: int, batch_size: int) -> np.ndarray:
    backend = model.backend
    prompts = backend.build_prompts(texts, instruction)
    out = []
    for start in range(0, len(prompts), batch_size):
        features = backend.tokenize(prompts[start : start + batch_size])
        with torch.inference_mode():
            generated = backend.model.generate(
                **features, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                output_hidden_states=True, return_dict_in_generate=True, pad_token_id=backend.tokenizer.pad_token_id,
            )
        out.append(generated.hidden_states[0][-1][:, -1].float())
    return torch.cat(out).numpy()


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    model = InBedder.from_pretrained(sys.argv[2] if len(sys.argv) > 2 else None, device="cpu")
    texts = long_texts(count)
    tokens = model.backend.token_lengths(model.backend.build_prompts(texts, INSTRUCTIONS[0]))
    print(f"{model.name}: {count} texts, mean prompt {np.mean(tokens):.0f} tokens, batch 16, {torch.get_num_threads()} threads")
    model.encode(texts[:2], INSTRUCTIONS[0])  # warm-up
    ours, t_ours = timed(lambda: model.encode(texts, INSTRUCTIONS[0], batch_size=16, normalize=False))
    print("| method | seconds | texts/s | ratio (ours faster by) | max abs diff |\n|---|---|---|---|---|")
    print(f"| ours, one forward pass | {t_ours:.1f} | {count / t_ours:.2f} | 1.00 | |")
    for new_tokens in (3, 20):
        ref, t_ref = timed(lambda: reference_encode(model, texts, INSTRUCTIONS[0], new_tokens, 16))
        print(f"| reference generate(), {new_tokens} new tokens | {t_ref:.1f} | {count / t_ref:.2f} | "
              f"{t_ref / t_ours:.2f} | {np.abs(ref - ours).max():.2e} |", flush=True)
    k = 4
    many, t_many = timed(lambda: model.encode_many(texts, list(INSTRUCTIONS[:k]), batch_size=16, normalize=False))
    refs, t_refs = timed(lambda: [reference_encode(model, texts, q, 3, 16) for q in INSTRUCTIONS[:k]])
    diff = max(np.abs(r - many[q]).max() for r, q in zip(refs, INSTRUCTIONS[:k]))
    print(f"| K={k} instructions: ours (encode_many) | {t_many:.1f} | {k * count / t_many:.2f} | 1.00 | |")
    print(f"| K={k} instructions: reference, 3 new tokens | {t_refs:.1f} | {k * count / t_refs:.2f} | "
          f"{t_refs / t_many:.2f} | {diff:.2e} |")


if __name__ == "__main__":
    main()
