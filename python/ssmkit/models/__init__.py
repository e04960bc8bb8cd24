"""Models built from ssmkit's S4 layers."""

from .classifier import SequenceClassifier
from .sashimi import SaShiMi
from .sashimi_step import SaShiMiState

__all__ = ["SaShiMi", "SaShiMiState", "SequenceClassifier"]
