"""Evaluation of instruction awareness against baselines."""

from .awareness import AwarenessRow, evaluate, harmonic_mean, markdown_table, v_measure
from .hub import HUB_SETS, HubSet, explicit_triplet_accuracy, load_hub_set, score_hub_set
from .retrieval import EmbedderSearch, aspect_retrieval, ndcg_at_k, recall_at_k
from .robustness import instructed_sts, load_instruction_sets, robustness
from .triplets import TWO_ASPECT_INSTRUCTIONS, aspect_triplet_accuracy, triplet_accuracy
from .unseen import AspectWordings, held_out_wordings, is_near_copy, load_wordings, near_held_out

#: Shipped fixtures and the instruction for each of their two aspects.
FIXTURES = {
    "two_aspects": TWO_ASPECT_INSTRUCTIONS,
    "support_messages": {
        "product": "Which product or service is discussed?",
        "mood": "How does the customer feel?",
    },
    # written for issue 16: each aspect's labels are crossed with the other's and balanced
    "customer_emails": {
        "topic": "What does this customer's message concern?",
        "feeling": "How does the sender feel about the situation?",
    },
    "news_snippets": {
        "subject": "What is the subject of this news story?",
        "region": "Which continent is this about?",
    },
    "helpdesk_tickets": {
        "subject": "What is this help-desk request about?",
        "urgency": "Is the request urgent?",
    },
}

__all__ = [
    "FIXTURES",
    "HUB_SETS",
    "HubSet",
    "TWO_ASPECT_INSTRUCTIONS",
    "AspectWordings",
    "AwarenessRow",
    "EmbedderSearch",
    "aspect_retrieval",
    "aspect_triplet_accuracy",
    "evaluate",
    "explicit_triplet_accuracy",
    "harmonic_mean",
    "held_out_wordings",
    "instructed_sts",
    "is_near_copy",
    "load_hub_set",
    "load_instruction_sets",
    "load_wordings",
    "robustness",
    "markdown_table",
    "ndcg_at_k",
    "near_held_out",
    "recall_at_k",
    "score_hub_set",
    "triplet_accuracy",
    "v_measure",
]
