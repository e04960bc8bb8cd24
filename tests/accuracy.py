"""The accuracy rule of docs/architecture.md, shared by every kernel test: the package's one
implementation (ssmkit/_accuracy.py, which explains it), asserted."""

from __future__ import annotations

import torch

from ssmkit._accuracy import FLOOR, judge_2x, nonfinite_mismatch, rel_error

__all__ = ["FLOOR", "assert_close_2x", "assert_nonfinite_match", "rel_error"]


def assert_close_2x(name: str, out: torch.Tensor, truth: torch.Tensor, ref_low: torch.Tensor | None = None):
    """Assert the 2x rule. out: the kernel's result; truth: the reference in double
    precision on the same inputs; ref_low: the naive reference in out's precision
    (required for single precision). Returns (error, reference error)."""
    verdict = judge_2x(name, out, truth, ref_low)
    assert verdict.ok, verdict.problem
    return verdict.err, verdict.ref_err


def assert_nonfinite_match(name: str, out: torch.Tensor, truth: torch.Tensor):
    """Assert NaN where the truth is NaN and Inf of the same sign where it is Inf."""
    problem = nonfinite_mismatch(name, out, truth)
    assert problem is None, problem
