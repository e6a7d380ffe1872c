"""The main demo: one corpus indexed under three instructions, one query searched under each."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from .cache import EmbeddingCache
from .embedder import InBedder
from .index import InstructionIndex
from .samples import load_sample

DEMO_INSTRUCTIONS = {
    "How does the customer feel?": "mood",
    "Which product or service is discussed?": "product",
    "What does the customer want?": "intent",
}
DEMO_QUERY = "My new earbuds stopped charging after two days and I am furious. I want my money back."
ASPECTS = ("product", "mood", "intent")


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def run_demo(
    model: InBedder | None = None,
    *,
    path: str | Path | None = None,
    k: int = 5,
    cache: EmbeddingCache | bool = True,
) -> dict[str, list[str]]:
    """Index the shipped support messages under three instructions (in ``path`` or a
    temporary folder), search ``DEMO_QUERY`` under each and print the results with their
    labels. Returns the result ids per instruction. With the embedding ``cache`` (on by
    default) a second run embeds nothing."""
    model = model or InBedder.from_pretrained()
    records = load_sample("support_messages")
    with tempfile.TemporaryDirectory(prefix="inbedder-demo-") as scratch:
        folder = Path(path) if path else Path(scratch) / "index"
        if (folder / "index.json").exists():
            index = InstructionIndex.open(folder, model, cache=cache)
        else:
            index = InstructionIndex.create(folder, model, instructions=list(DEMO_INSTRUCTIONS), cache=cache)
        with index:
            print(f"Model: {model}\nIndexing {len(records)} support messages under {len(DEMO_INSTRUCTIONS)} "
                  f"instructions into {folder} (FAISS + SQLite)...")
            start = time.perf_counter()
            index.add(
                [record["text"] for record in records],
                ids=[record["id"] for record in records],
                metadatas=[{aspect: record[aspect] for aspect in ASPECTS} for record in records],
                show_progress_bar=True,
            )
            print(f"Indexed in {time.perf_counter() - start:.0f} s: {index}\n")
            print(f"Query: {DEMO_QUERY!r}")
            print("(the query is about headphones, from an angry customer who wants a refund)\n")
            results = {}
            for instruction, aspect in DEMO_INSTRUCTIONS.items():
                hits = index.search(DEMO_QUERY, instruction, k=k)
                results[instruction] = [hit.id for hit in hits]
                print(f"=== {instruction}  (should match on {aspect})")
                print(f"  {'score':>5}  {'id':4}  {'product':14} {'mood':7} {'intent':17} text")
                for hit in hits:
                    labels = hit.metadata
                    print(f"  {hit.score:5.3f}  {hit.id:4}  {labels['product']:14} {labels['mood']:7} "
                          f"{labels['intent']:17} {_short(hit.text, 60)}")
                print()
    return results
