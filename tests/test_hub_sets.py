"""Loaders for the reference's hub evaluation sets: conversion and scoring, with a fake
``load_dataset`` (tests never download)."""

import builtins

import numpy as np
import pytest

from inbedder_retrieval.evaluation import HUB_SETS, explicit_triplet_accuracy, load_hub_set, score_hub_set

ROWS = {
    ("BrandonZYW/IntentEmotion", "emotion"): [
        {"anchor": "I am so happy", "positive": "what a joy", "negative": "I am so sad"},
        {"anchor": "this is awful", "positive": "so sad", "negative": "what a joy"},
    ],
    ("BrandonZYW/NYTClustering", "topic"): [
        {"text": "The team won the cup", "cluster": "sports"},
        {"text": "Stocks fell sharply", "cluster": "business"},
        {"text": "A late goal decided the match", "cluster": "sports"},
        {"text": "The bank raised rates", "cluster": "business"},
    ],
    ("BrandonZYW/InstructSTSB", None): [
        {"sentence1": "a joy", "sentence2": "so happy", "score": 0.9, "instruction": "How do they feel?"},
        {"sentence1": "a joy", "sentence2": "so sad", "score": 0.1, "instruction": "How do they feel?"},
        {"sentence1": "so sad", "sentence2": "awful", "score": 0.9, "instruction": "How do they feel?"},
    ],
}
POSITIVE = ("happy", "joy", "team", "goal", "match", "cup")


class FakeHub:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, repo: str, *, name: str | None, revision: str, split: str) -> list[dict]:
        self.calls.append((repo, name, revision, split))
        return ROWS[(repo, name)]


def embed(texts, instruction):
    """A toy embedder: 'positive' words point one way, everything else the other."""
    return np.array([[1.0, 0.1] if any(w in t for w in POSITIVE) else [0.1, 1.0] for t in texts])


def test_triplets_load_at_the_pinned_revision_and_score() -> None:
    hub = FakeHub()
    records = load_hub_set("intent-emotion-emotion", loader=hub)
    assert hub.calls == [("BrandonZYW/IntentEmotion", "emotion", HUB_SETS["intent-emotion-emotion"].revision, "test")]
    assert records[0] == ROWS[("BrandonZYW/IntentEmotion", "emotion")][0]
    assert score_hub_set(embed, "intent-emotion-emotion", records) == 1.0
    flipped = [{"anchor": r["anchor"], "positive": r["negative"], "negative": r["positive"]} for r in records]
    assert explicit_triplet_accuracy(embed, flipped, "How does the customer feel?") == 0.0


def test_clustering_rows_become_text_and_label() -> None:
    records = load_hub_set("nyt-topic", loader=FakeHub(), limit=4)
    assert records[0] == {"text": "The team won the cup", "label": "sports"}
    assert score_hub_set(embed, "nyt-topic", records) == pytest.approx(1.0)
    assert len(load_hub_set("nyt-topic", loader=FakeHub(), limit=2)) == 2


def test_sts_keeps_the_per_row_instruction() -> None:
    records = load_hub_set("instruct-stsb", loader=FakeHub())
    assert records[1] == {"text1": "a joy", "text2": "so sad", "score": 0.1, "instruction": "How do they feel?"}
    assert score_hub_set(embed, "instruct-stsb", records) == pytest.approx(1.0)


def test_unknown_set_and_unexpected_columns_are_clear_errors() -> None:
    with pytest.raises(KeyError, match="nyt-topic"):
        load_hub_set("nyt-topics", loader=FakeHub())
    with pytest.raises(ValueError, match="expected 'cluster'"):
        load_hub_set("nyt-location", loader=lambda *a, **k: [{"sentences": ["x"], "labels": ["y"]}])


def test_missing_datasets_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("No module named 'datasets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(ImportError, match=r"inbedder-retrieval\[hub-data\]"):
        load_hub_set("nyt-topic")
