"""Evaluation of instruction awareness against baselines."""

from .awareness import AwarenessRow, evaluate, harmonic_mean, markdown_table, v_measure
from .hub import HUB_SETS, HubSet, explicit_triplet_accuracy, load_hub_set, score_hub_set
from .retrieval import EmbedderSearch, aspect_retrieval, ndcg_at_k, recall_at_k
from .robustness import instructed_sts, load_instruction_sets, robustness
from .triplets import TWO_ASPECT_INSTRUCTIONS, aspect_triplet_accuracy, triplet_accuracy

#: Shipped fixtures and the instruction for each of their two aspects.
FIXTURES = {
    "two_aspects": TWO_ASPECT_INSTRUCTIONS,
    "support_messages": {
        "product": "Which product or service is discussed?",
        "mood": "How does the customer feel?",
    },
}

__all__ = [
    "FIXTURES",
    "HUB_SETS",
    "HubSet",
    "TWO_ASPECT_INSTRUCTIONS",
    "AwarenessRow",
    "EmbedderSearch",
    "aspect_retrieval",
    "aspect_triplet_accuracy",
    "evaluate",
    "explicit_triplet_accuracy",
    "harmonic_mean",
    "instructed_sts",
    "load_hub_set",
    "load_instruction_sets",
    "robustness",
    "markdown_table",
    "ndcg_at_k",
    "recall_at_k",
    "score_hub_set",
    "triplet_accuracy",
    "v_measure",
]
