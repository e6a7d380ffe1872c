"""Which hidden layer to pool: held-out-wording triplet accuracy of one model per layer.

    .venv/bin/python benchmarks/layer_sweep.py MODEL [--layers -1 -2 -3] [--fixture NAME ...]
        [--per-cell N] [--wordings N]

MODEL is a registry name or a trained folder (``inbedder train -o``); each layer loads it
with ``InBedder.from_pretrained(MODEL, layer=L)``. Scores are those of ``inbedder eval
--unseen`` (``evaluation.unseen``) on the first N held-out and N seen wordings per aspect
and, with ``--per-cell``, the first texts of each label pair: a quick comparison, not the
README's full table. Only the held-out wordings are reported.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from inbedder_retrieval import InBedder  # noqa: E402
from inbedder_retrieval.evaluation import FIXTURES  # noqa: E402
from inbedder_retrieval.evaluation.unseen import (balanced_subset, fixture_hm, load_wordings, score_wordings,  # noqa: E402
                                                  summarise)
from inbedder_retrieval.samples import load_sample  # noqa: E402

UNSEEN_FIXTURES = ("customer_emails", "news_snippets", "helpdesk_tickets")


def sweep(model_name: str, layers: list[int], fixtures: list[str], per_cell: int | None, wordings: int | None) -> None:
    aspects = load_wordings()
    samples = {}
    for fixture in fixtures:
        records = load_sample(fixture)
        samples[fixture] = balanced_subset(records, list(FIXTURES[fixture]), per_cell) if per_cell else records
    print("| layer | " + " | ".join(f"{f} (aspects; HM)" for f in fixtures) + " | seconds |")
    print("|---|" + "---|" * (len(fixtures) + 1))
    for layer in layers:
        start = time.perf_counter()
        model = InBedder.from_pretrained(model_name, layer=layer)
        scores = []
        for fixture in fixtures:
            entries = [entry for entry in aspects.values() if entry.fixture == fixture]
            scores += score_wordings(lambda texts, qs: model.encode_many(texts, qs, batch_size=32),
                                     samples[fixture], entries, wordings)
        summaries = summarise(scores)
        hm = fixture_hm(summaries)
        cells = [", ".join(f"{s.aspect} {s.held_out_mean:.3f}" for s in summaries if s.fixture == f) + f"; **{hm[f]:.3f}**"
                 for f in fixtures]
        print(f"| {layer} | " + " | ".join(cells) + f" | {time.perf_counter() - start:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--layers", type=int, nargs="+", default=[-1, -2, -3, -5])
    parser.add_argument("--fixture", action="append", choices=list(FIXTURES), help="default: the three unseen fixtures")
    parser.add_argument("--per-cell", type=int, default=None, help="first N texts of each label pair")
    parser.add_argument("--wordings", type=int, default=None, help="first N held-out (and N seen) wordings per aspect")
    args = parser.parse_args()
    sweep(args.model, args.layers, args.fixture or list(UNSEEN_FIXTURES), args.per_cell, args.wordings)


if __name__ == "__main__":
    main()
