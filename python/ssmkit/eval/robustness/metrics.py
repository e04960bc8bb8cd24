"""Classification metrics on a slice: each takes logits (n, classes) and labels (n,).

All are computed in float64; an empty slice gives NaN.
"""

from __future__ import annotations

import math

import torch

__all__ = ["accuracy", "macro_f1", "cross_entropy", "expected_calibration_error", "METRICS"]


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of examples whose arg-max class is the label."""
    if len(labels) == 0:
        return math.nan
    return (logits.argmax(1) == labels).double().mean().item()


def macro_f1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Unweighted mean of the per-class F1 over the classes that occur as a label or a
    prediction in the slice (scikit-learn's convention; a class with no true positive has F1 0)."""
    if len(labels) == 0:
        return math.nan
    predicted = logits.argmax(1)
    classes = torch.unique(torch.cat([labels, predicted]))
    hits = predicted[:, None] == classes
    truth = labels[:, None] == classes
    tp = (hits & truth).sum(0).double()
    # F1 = 2 tp / (2 tp + fp + fn) = 2 tp / (#predicted + #true)
    return (2 * tp / (hits.sum(0) + truth.sum(0))).mean().item()


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood of the labels (natural log)."""
    if len(labels) == 0:
        return math.nan
    return torch.nn.functional.cross_entropy(logits.double(), labels).item()


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE: sum over equal-width confidence bins of ``(bin size / n) * |accuracy - mean confidence|``,
    the confidence being the top softmax probability (15 bins, as in Guo et al., 2017)."""
    if len(labels) == 0:
        return math.nan
    confidence, predicted = logits.double().softmax(1).max(1)
    correct = (predicted == labels).double()
    # Bin b holds confidences in (b/bins, (b+1)/bins]; confidence is > 0 so bin 0 is (0, 1/bins].
    which = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    gap = torch.bincount(which, weights=correct, minlength=bins) - torch.bincount(which, weights=confidence, minlength=bins)
    return (gap.abs().sum() / len(labels)).item()


METRICS = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "cross_entropy": cross_entropy,
    "ece": expected_calibration_error,
}
