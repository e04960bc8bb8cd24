"""The accuracy rule of DESIGN.md, shared by every kernel test.

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

import torch

FLOOR = {torch.float32: 1e-6, torch.complex64: 1e-6, torch.float64: 1e-12, torch.complex128: 1e-12}


def _finite_mask_matches(name, out, truth):
    """NaN where the truth is NaN, Inf (same sign) where the truth is Inf."""
    o, t = torch.view_as_real(out) if out.is_complex() else out, torch.view_as_real(truth) if truth.is_complex() else truth
    assert torch.equal(torch.isnan(o), torch.isnan(t)), f"{name}: NaN pattern differs from the ground truth"
    inf = torch.isinf(t)
    assert torch.equal(torch.isinf(o), inf), f"{name}: Inf pattern differs from the ground truth"
    assert torch.equal(o[inf], t[inf]), f"{name}: Inf signs differ from the ground truth"


def rel_error(x: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """(max, mean) of |x - truth| / max|truth| over finite entries of the truth."""
    x = x.to(truth.dtype)
    finite = torch.isfinite(truth)
    if not finite.any():
        return 0.0, 0.0
    scale = truth[finite].abs().max().item() or 1.0
    diff = (x[finite] - truth[finite]).abs() / scale
    return diff.max().item(), diff.mean().item()


def assert_close_2x(name: str, out: torch.Tensor, truth: torch.Tensor, ref_low: torch.Tensor | None = None):
    """Assert the 2x rule. out: the kernel's result; truth: the reference in double
    precision on the same inputs; ref_low: the naive reference in out's precision
    (required for single precision)."""
    assert out.shape == truth.shape, f"{name}: shape {tuple(out.shape)} != {tuple(truth.shape)}"
    _finite_mask_matches(name, out.to(truth.dtype), truth)
    err, mean = rel_error(out, truth)
    floor = FLOOR[out.dtype]
    ref_err = 0.0
    if out.dtype in (torch.float32, torch.complex64):
        assert ref_low is not None, f"{name}: a single-precision result needs the single-precision reference"
        ref_err, _ = rel_error(ref_low, truth)
    bound = 2 * ref_err + floor
    assert err <= bound, (
        f"{name}: max error {err:.3g} (mean {mean:.3g}) > 2 x reference error {ref_err:.3g} + floor {floor:g}"
    )
    return err, ref_err
