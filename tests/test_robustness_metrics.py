"""Metrics of ssmkit.eval.robustness against values worked out by hand."""

import math

import pytest
import torch

from ssmkit.eval import robustness as rb

# Four examples, three classes. Predictions: 0, 1, 1, 2; labels: 0, 1, 2, 2.
LOGITS = torch.tensor(
    [
        [2.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 3.0, 1.0],
        [0.0, 0.0, 0.5],
    ],
    dtype=torch.float64,
)
LABELS = torch.tensor([0, 1, 2, 2])


def softmax_row(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def test_accuracy_and_macro_f1():
    assert rb.accuracy(LOGITS, LABELS) == 0.75
    # Class 0: P=R=1 -> 1. Class 1: tp 1, fp 1, fn 0 -> 2/3. Class 2: tp 1, fp 0, fn 1 -> 2/3.
    assert rb.macro_f1(LOGITS, LABELS) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3, rel=1e-15)
    # A class that is only predicted counts with F1 0 (scikit-learn's convention).
    # Predictions 0, 1, 1; labels 0, 0, 0: class 0 has tp 1, fn 2 -> 1/2; class 1 only predicted -> 0.
    assert rb.macro_f1(LOGITS[:3], torch.tensor([0, 0, 0])) == pytest.approx((1 / 2 + 0) / 2, rel=1e-15)


def test_cross_entropy():
    expected = -sum(math.log(softmax_row(row.tolist())[y]) for row, y in zip(LOGITS, LABELS.tolist())) / 4
    assert rb.cross_entropy(LOGITS, LABELS) == pytest.approx(expected, rel=1e-14)


def test_expected_calibration_error():
    # Confidences (top softmax probability) and correctness, binned into 15 equal bins.
    conf = [max(softmax_row(row.tolist())) for row in LOGITS]
    correct = [1, 1, 0, 1]
    bins = {}
    for c, ok in zip(conf, correct):
        bins.setdefault(math.ceil(c * 15) - 1, []).append((c, ok))
    expected = sum(abs(sum(ok for _, ok in b) - sum(c for c, _ in b)) for b in bins.values()) / 4
    assert rb.expected_calibration_error(LOGITS, LABELS) == pytest.approx(expected, rel=1e-14)
    # Two bins: perfectly confident and right is calibrated.
    sure = torch.tensor([[100.0, 0.0], [0.0, 100.0]])
    assert rb.expected_calibration_error(sure, torch.tensor([0, 1])) == pytest.approx(0, abs=1e-12)
    assert rb.expected_calibration_error(sure, torch.tensor([1, 0])) == pytest.approx(1, abs=1e-12)


@pytest.mark.parametrize("name", sorted(rb.METRICS))
def test_empty_slices_give_nan(name):
    assert math.isnan(rb.METRICS[name](torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)))
