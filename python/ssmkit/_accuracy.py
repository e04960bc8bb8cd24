"""The accuracy rule of docs/architecture.md (the 2x rule), one implementation for the tests
(tests/accuracy.py asserts it) and for ``ssmkit bench`` (which checks each case with it
before timing).

A kernel's result is compared with the ground truth: the float64/complex128 reference
evaluated on the *same* inputs upcast (so input rounding is not counted as error).
A single-precision kernel passes when its max error, relative to max |truth|, is at
most twice the error of the naive single-precision reference on the same inputs,
plus a small absolute floor. Double-precision kernels are held to a fixed floor.

Floors: 1e-6 in single precision (about 8 ulp of float32: room for a kernel whose
rounding differs from the reference's when the reference happens to be nearly exact);
1e-12 in double precision (the float32 floor scaled by eps64/eps32 ~ 2e-9 would be
2e-15, which sequential sums of 10^4 terms can exceed by their own rounding alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FLOOR = {torch.float32: 1e-6, torch.complex64: 1e-6, torch.float64: 1e-12, torch.complex128: 1e-12}


def rel_error(x: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """(max, mean) of |x - truth| / max|truth| over finite entries of the truth."""
    x = x.to(truth.dtype)
    finite = torch.isfinite(truth)
    if not finite.any():
        return 0.0, 0.0
    scale = truth[finite].abs().max().item() or 1.0
    diff = (x[finite] - truth[finite]).abs() / scale
    return diff.max().item(), diff.mean().item()


def nonfinite_mismatch(name: str, out: torch.Tensor, truth: torch.Tensor) -> str | None:
    """Why out's NaN and Inf entries are not the truth's (NaN where the truth is NaN, Inf
    of the same sign where it is Inf), or None when they are."""
    o, t = torch.view_as_real(out) if out.is_complex() else out, torch.view_as_real(truth) if truth.is_complex() else truth
    if not torch.equal(torch.isnan(o), torch.isnan(t)):
        return f"{name}: NaN pattern differs from the ground truth"
    inf = torch.isinf(t)
    if not torch.equal(torch.isinf(o), inf):
        return f"{name}: Inf pattern differs from the ground truth"
    if not torch.equal(o[inf], t[inf]):
        return f"{name}: Inf signs differ from the ground truth"
    return None


@dataclass(frozen=True)
class Verdict:
    """The 2x rule applied to one result: its error, the reference's, the floor, and
    ``problem`` (why it fails; None when it passes)."""

    name: str
    err: float = 0.0
    mean: float = 0.0
    ref_err: float = 0.0
    floor: float = 0.0
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def bound(self) -> float:
        return 2 * self.ref_err + self.floor

    def __str__(self) -> str:
        if not self.ok:
            return f"FAILED: {self.problem}"
        return f"ok (err {self.err:.1e} <= 2x ref {self.ref_err:.1e} + {self.floor:g})"


def judge_2x(name: str, out: torch.Tensor, truth: torch.Tensor, ref_low: torch.Tensor | None = None) -> Verdict:
    """The 2x rule. out: the kernel's result; truth: the reference in double precision on
    the same inputs; ref_low: the naive reference in out's precision (required for single
    precision)."""
    if out.shape != truth.shape:
        return Verdict(name, problem=f"{name}: shape {tuple(out.shape)} != {tuple(truth.shape)}")
    problem = nonfinite_mismatch(name, out.to(truth.dtype), truth)
    if problem is not None:
        return Verdict(name, problem=problem)
    err, mean = rel_error(out, truth)
    floor = FLOOR[out.dtype]
    ref_err = 0.0
    if out.dtype in (torch.float32, torch.complex64):
        if ref_low is None:
            return Verdict(name, err, mean, floor=floor, problem=f"{name}: a single-precision result needs the single-precision reference")
        ref_err, _ = rel_error(ref_low, truth)
    verdict = Verdict(name, err, mean, ref_err, floor)
    if not err <= verdict.bound:
        problem = f"{name}: max error {err:.3g} (mean {mean:.3g}) > 2 x reference error {ref_err:.3g} + floor {floor:g}"
        return Verdict(name, err, mean, ref_err, floor, problem)
    return verdict


def judge_all(checks) -> Verdict:
    """One verdict for several results (name, out, truth, ref_low): the first failure, or
    the passing result nearest its bound."""
    verdicts = [judge_2x(*check) for check in checks]
    failed = [v for v in verdicts if not v.ok]
    if failed:
        return failed[0]
    return max(verdicts, key=lambda v: v.err / v.bound)
