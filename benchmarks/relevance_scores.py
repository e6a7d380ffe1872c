"""What a LangChain relevance score means: raw cosine vs the index-calibrated score.

For each aspect of the shipped support messages (mood, product), 48 messages are queries
and the other 240 the store; a stored message is *relevant* to a query when it shares the
aspect's label. Prints, per aspect and score function, the mean score of relevant and
irrelevant hits and what ``similarity_score_threshold`` returns at several thresholds
(share of the 240 documents returned; precision of what is returned).

    .venv/bin/python benchmarks/relevance_scores.py
"""

from __future__ import annotations

import numpy as np
from inbedder_retrieval.samples import load_sample
from langchain_inbedder import InBedderEmbeddings, InBedderVectorStore

ASPECTS = {"mood": "How does the customer feel?", "product": "Which product or service is discussed?"}
THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.97)


def main() -> None:
    records = load_sample("support_messages")
    queries, stored = records[::6], [r for n, r in enumerate(records) if n % 6]
    embeddings = InBedderEmbeddings(batch_size=16)
    with InBedderVectorStore.from_texts([r["text"] for r in stored], embeddings, ids=[r["id"] for r in stored],
                                        instructions=list(ASPECTS.values())) as store:
        labels = {r["id"]: r for r in stored}
        print("| aspect | score | relevant mean | irrelevant mean | " +
              " | ".join(f"returned / precision @ {t}" for t in THRESHOLDS) + " |")
        print("|---|---|---|---|" + "---|" * len(THRESHOLDS))
        for aspect, instruction in ASPECTS.items():
            for kind in ("raw (cosine+1)/2", "calibrated"):
                rows = []
                for query in queries:
                    if kind == "calibrated":
                        hits = store.similarity_search_with_relevance_scores(query["text"], k=len(stored),
                                                                             instruction=instruction)
                    else:
                        hits = [(doc, (score + 1) / 2) for doc, score in store.similarity_search_with_score(
                            query["text"], k=len(stored), instruction=instruction)]
                    rows.extend((score, labels[doc.id][aspect] == query[aspect]) for doc, score in hits)
                scores, relevant = np.array([s for s, _ in rows]), np.array([r for _, r in rows])
                cells = []
                for t in THRESHOLDS:
                    chosen = scores >= t
                    precision = relevant[chosen].mean() if chosen.any() else float("nan")
                    cells.append(f"{chosen.mean():.2f} / {precision:.2f}")
                print(f"| {aspect} | {kind} | {scores[relevant].mean():.3f} | {scores[~relevant].mean():.3f} | "
                      + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
