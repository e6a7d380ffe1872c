"""Evaluation of instruction awareness."""

from .triplets import TWO_ASPECT_INSTRUCTIONS, aspect_triplet_accuracy, triplet_accuracy

__all__ = ["TWO_ASPECT_INSTRUCTIONS", "aspect_triplet_accuracy", "triplet_accuracy"]
