"""Models built from ssmkit's S4 layers."""

from .classifier import SequenceClassifier
from .sashimi import SaShiMi

__all__ = ["SaShiMi", "SequenceClassifier"]
