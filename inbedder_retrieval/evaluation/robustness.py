"""Instruction robustness and instruction-conditioned similarity (the reference's tests).

Robustness: V-measure of one aspect's clustering under paraphrased ("correct"), implicit
and wrong-aspect ("incorrect") instructions; a robust embedder keeps every correct and
implicit instruction above every incorrect one: min(correct) - max(incorrect) > 0.
Instructed STS: Spearman correlation between the cosine of two texts under an
instruction and a human score for that instruction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from importlib import resources

import numpy as np

from .awareness import v_measure

EmbedMany = Callable[[Sequence[str], Sequence[str]], Mapping[str, np.ndarray]]


def load_instruction_sets() -> dict[str, dict[str, list[str]]]:
    """The shipped sets: ``{"fixture/aspect": {"correct": [...], "implicit": [...], "incorrect": [...]}}``."""
    text = resources.files("inbedder_retrieval.data").joinpath("instruction_sets.json").read_text("utf-8")
    return json.loads(text)


def robustness(embed_many: EmbedMany, texts: Sequence[str], labels: Sequence[str],
               sets: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """V-measure range per kind of instruction and the two gaps the reference reports."""
    instructions = [q for kind in ("correct", "implicit", "incorrect") for q in sets[kind]]
    vectors = embed_many(list(texts), instructions)
    scores = {kind: [v_measure(vectors[q], labels) for q in sets[kind]] for kind in ("correct", "implicit", "incorrect")}
    return {
        **{f"{kind} min": min(values) for kind, values in scores.items()},
        **{f"{kind} max": max(values) for kind, values in scores.items()},
        "min(correct) - max(incorrect)": min(scores["correct"]) - max(scores["incorrect"]),
        "min(implicit) - max(incorrect)": min(scores["implicit"]) - max(scores["incorrect"]),
    }


def instructed_sts(embed: Callable[[Sequence[str], str], np.ndarray], pairs: Sequence[Mapping[str, object]]) -> float:
    """Spearman correlation of per-instruction cosine similarity with the gold scores."""
    from scipy.stats import spearmanr

    predicted = np.zeros(len(pairs))
    for instruction in sorted({str(pair["instruction"]) for pair in pairs}):
        rows = [i for i, pair in enumerate(pairs) if pair["instruction"] == instruction]
        first = np.asarray(embed([str(pairs[i]["text1"]) for i in rows], instruction), dtype="float64")
        second = np.asarray(embed([str(pairs[i]["text2"]) for i in rows], instruction), dtype="float64")
        first /= np.linalg.norm(first, axis=1, keepdims=True)
        second /= np.linalg.norm(second, axis=1, keepdims=True)
        predicted[rows] = (first * second).sum(1)
    return float(spearmanr(predicted, [float(pair["score"]) for pair in pairs]).statistic)
