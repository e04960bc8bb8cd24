"""Models built from ssmkit's S4 layers."""

from .classifier import SequenceClassifier

__all__ = ["SequenceClassifier"]
