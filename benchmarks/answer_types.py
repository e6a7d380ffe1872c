"""Is a weak aspect a misread question or a misread text? The model's answers, sorted.

    .venv/bin/python benchmarks/answer_types.py [--model NAME] [--json PATH]

Asks every held-out wording of the aspects below (``unseen_wordings.json``) of every text of
its fixture (greedy answers, as ``inbedder answer``) and sorts each answer:

- **right**: the answer belongs to the text's label (mood "worried": a fear word such as
  "nervous" or "anxious"; the emotion families of training data v2's ``contrast_groups``);
- **misread text**: an answer of the asked kind (an emotion; a request of training data
  v2's closed ``request`` set) that belongs to another label;
- **other answer**: anything else (a product, a topic, a word of neither list), the sign
  of a misread *question*; the commonest are printed.

A few answers in neither list count as the family they mean (``EMOTION_SYNONYMS``,
``REQUEST_SYNONYMS``: "reimbursement" is a refund, "praise" asks for nothing). Labels map
to answers by hand (``LABEL_ANSWERS``): support_messages' intent
"repair or replace" takes repair/replacement/fix, "praise" takes "nothing" (training
data's answer for a message that asks for nothing). A request word outside a label's
list (e.g. "cancellation" for a refund) counts as a misread text.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from inbedder_retrieval import InBedder  # noqa: E402
from inbedder_retrieval.evaluation.unseen import load_wordings  # noqa: E402
from inbedder_retrieval.samples import load_sample  # noqa: E402
from inbedder_retrieval.training_data import load_question_types  # noqa: E402


#: Answers the model gives that are in neither training list, with the family they mean.
EMOTION_SYNONYMS = {"uncertain": "uncertainty", "unsure": "uncertainty", "cautious": "fear", "wary": "fear"}
REQUEST_SYNONYMS = {"reimbursement": "refund", "money back": "refund", "praise": "nothing", "compliment": "nothing",
                    "compliments": "nothing", "exchange": "replacement"}


def _emotions() -> dict[str, str]:
    return {**load_question_types()["emotion"].groups, **EMOTION_SYNONYMS}


def _requests() -> dict[str, str]:
    return {**{answer: answer for answer in load_question_types()["request"].answers}, **REQUEST_SYNONYMS}


#: fixture/aspect -> (answer -> family, label -> the families that are right for it)
LABEL_ANSWERS = {
    "support_messages/mood": (_emotions, {"happy": {"joy"}, "angry": {"anger"}, "worried": {"fear"}}),
    "customer_emails/feeling": (_emotions, {"grateful": {"joy"}, "angry": {"anger"}, "worried": {"fear"}}),
    "support_messages/intent": (_requests, {"refund": {"refund"}, "praise": {"nothing"}, "information": {"information"},
                                            "repair or replace": {"repair", "replacement", "fix"}}),
}


def sort_answers(answers: list[str], labels: list[str], families: dict[str, str],
                 right: dict[str, set[str]]) -> tuple[Counter, Counter]:
    """Counts of right / misread text / other answer, and the other answers themselves."""
    kinds, others = Counter(), Counter()
    for answer, label in zip(answers, labels, strict=True):
        family = families.get(answer.strip().lower())
        if family is None:
            kinds["other answer"] += 1
            others[answer.strip().lower()] += 1
        else:
            kinds["right" if family in right[label] else "misread text"] += 1
    return kinds, others


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="registry name or folder (default: the shipped default)")
    parser.add_argument("--json", help="write every wording's counts here")
    args = parser.parse_args()
    model = InBedder.from_pretrained(args.model, device="cpu")
    wordings, result = load_wordings(), {}
    print(f"model: {model.description.name}\n")
    print("| fixture/aspect | held-out wording | right | misread text | other answer | commonest other answers |")
    print("|---|---|---|---|---|---|")
    for key, (families_of, right) in LABEL_ANSWERS.items():
        entry, families = wordings[key], families_of()
        records = load_sample(entry.fixture)
        texts, labels = [r["text"] for r in records], [r[entry.aspect] for r in records]
        total, started = Counter(), time.time()
        for wording in entry.held_out:
            kinds, others = sort_answers(model.answer(texts, wording, batch_size=32, show_progress_bar=False),
                                         labels, families, right)
            total += kinds
            result.setdefault(key, []).append({"wording": wording, **kinds, "others": dict(others.most_common(5))})
            share = {kind: kinds[kind] / len(texts) for kind in ("right", "misread text", "other answer")}
            print(f"| {key} | {wording} | {share['right']:.2f} | {share['misread text']:.2f} | "
                  f"{share['other answer']:.2f} | {', '.join(a for a, _ in others.most_common(3))} |", flush=True)
        count = sum(total.values())
        print(f"| **{key}, all** | {len(entry.held_out)} wordings x {len(texts)} texts ({time.time() - started:.0f} s) | "
              f"**{total['right'] / count:.2f}** | **{total['misread text'] / count:.2f}** | "
              f"**{total['other answer'] / count:.2f}** | |", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(result, out, indent=1)


if __name__ == "__main__":
    main()
