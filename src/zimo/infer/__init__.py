"""Inference and scoring with a base model or base + adapter."""

from zimo.infer.label import LabelScorer

__all__ = ["LabelScorer"]
