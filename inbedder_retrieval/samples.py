"""Small data sets shipped with the package (written by the project, no download)."""

from __future__ import annotations

import json
from importlib import resources

SAMPLES = ("two_aspects", "demo_reviews", "support_messages", "instructed_sts",
           "customer_emails", "news_snippets", "helpdesk_tickets")


def load_sample(name: str) -> list[dict[str, str]]:
    """The records of a shipped JSONL sample, e.g. ``load_sample("two_aspects")``."""
    if name not in SAMPLES:
        raise KeyError(f"Unknown sample {name!r}. Shipped samples: {', '.join(SAMPLES)}")
    text = resources.files("inbedder_retrieval.data").joinpath(f"{name}.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]
