"""Benchmark cases of the log-Vandermonde family: forward, backward and transpose.

One term is one (row, n, l) triple; with conjugate pairs a pair counts as two terms.
The naive reference materialises rows x N x L exponentials (1 GiB at the standard
shape), so it runs on a subset of rows and its work is counted for those rows only;
ssmkit is checked against it (complex128, exact exponents) on the same rows.
"""

from __future__ import annotations

import math

from .._accuracy import judge_all
from . import Case, Cost, Impl

FAMILY = "vandermonde"
# FP32 operations per term of ssmkit's kernels (csrc/cpu/vandermonde.cpp, csrc/cuda/vandermonde.cu),
# an FMA counting 2: the forward's real part is two FMAs per pair (two terms); the
# backward with a real gradient four per pair (the sums P and Q, re and im); the transpose
# with real u two per term (the table products are O(N) per 1024 values of l and not counted).
FLOPS_PER_TERM = {"forward": 2, "backward": 4, "transpose": 4}


def cost(case: str, rows: int, N: int, L: int) -> Cost:
    """Per term (2 N L per row for forward and backward, N L for the transpose): the flops
    above, and the inputs read and outputs written once (complex64 v, x in; the real
    (rows, L) output, gradient or u; dv, dx out of the backward, the (rows, N) complex
    output of the transpose)."""
    per_row = {"forward": 4 * L + 16 * N, "backward": 4 * L + 32 * N, "transpose": 4 * L + 24 * N}[case]
    terms = (N * L if case == "transpose" else 2 * N * L)
    return Cost(FLOPS_PER_TERM[case], per_row / terms)
UNIT = "G terms/s"


def _inputs(rows, N, L, torch):
    g = torch.Generator().manual_seed(0)
    v = torch.randn(rows, N, dtype=torch.complex64, generator=g)
    re = -torch.exp(torch.empty(rows, N, dtype=torch.float64).uniform_(math.log(1e-4), math.log(0.5), generator=g))
    x = torch.complex(re, 0.01 * math.pi * torch.arange(N, dtype=torch.float64).expand(rows, N)).to(torch.complex64)
    u = torch.randn(rows, L, generator=g)
    gr = torch.randn(rows, L, generator=g)
    return v, x, u, gr


def _shape_cases(rows, N, L, ref_rows, device="cpu"):
    import torch

    from ..ops import reference, vandermonde, vandermonde_transpose

    v, x, u, g = (t.to(device) for t in _inputs(rows, N, L, torch))
    vs, xs, us, gs = v[:ref_rows], x[:ref_rows], u[:ref_rows], g[:ref_rows]
    shape = f"rows={rows} N={N} L={L}"
    note = f"torch reference on {ref_rows} of {rows} rows (it materialises rows x N x L)"
    fwd = 2 * rows * N * L  # conjugate pairs: two terms each
    fwd_ref = 2 * ref_rows * N * L

    def backward(fn, v, x, g):
        v, x = v.detach().requires_grad_(), x.detach().requires_grad_()
        return lambda: torch.autograd.grad(fn(v, x), (v, x), g)

    def up(*ts):
        return [t.to(torch.complex128 if t.is_complex() else torch.float64) for t in ts]

    def check(names, ssmkit_fn, reference_fn, *tensors):
        """ssmkit against the reference with exact exponents in double precision (the ground
        truth) on the reference's rows, by the 2x rule with the float32 reference's error."""
        return lambda: judge_all(
            zip(names, ssmkit_fn(*tensors), reference_fn(*up(*tensors), exact_exponent=True), reference_fn(*tensors))
        )

    def forward_check(v, x, **kw):
        return [reference.vandermonde(v, x, L, **kw)]

    def backward_check(v, x, g, **kw):
        return backward(lambda v, x: reference.vandermonde(v, x, L, **kw), v, x, g)()

    def transpose_check(u, v, x, **kw):
        return [reference.vandermonde_transpose(u, v, x, **kw)]

    return [
        Case(FAMILY, "forward", shape, UNIT, {
            "ssmkit": Impl(lambda: vandermonde(v, x, L), fwd),
            "torch reference": Impl(lambda: reference.vandermonde(vs, xs, L), fwd_ref),
        }, check(["out"], lambda v, x: [vandermonde(v, x, L)], forward_check, vs, xs),
           note, cost("forward", rows, N, L)),
        Case(FAMILY, "backward", shape, UNIT, {
            "ssmkit": Impl(backward(lambda v, x: vandermonde(v, x, L), v, x, g), fwd),
            "torch reference": Impl(backward(lambda v, x: reference.vandermonde(v, x, L), vs, xs, gs), fwd_ref),
        }, check(["dv", "dx"], lambda v, x, g: backward(lambda v, x: vandermonde(v, x, L), v, x, g)(), backward_check, vs, xs, gs),
           note + "; backward = gradients of v and x only", cost("backward", rows, N, L)),
        Case(FAMILY, "transpose", shape + " (u real)", UNIT, {
            "ssmkit": Impl(lambda: vandermonde_transpose(u, v, x), rows * N * L),
            "torch reference": Impl(lambda: reference.vandermonde_transpose(us, vs, xs), ref_rows * N * L),
        }, check(["out"], lambda u, v, x: [vandermonde_transpose(u, v, x)], transpose_check, us, vs, xs),
           note, cost("transpose", rows, N, L)),
    ]  # fmt: skip


def cases(quick: bool, device: str = "cpu") -> list[Case]:
    if quick:
        return _shape_cases(rows=16, N=32, L=512, ref_rows=4, device=device)
    return _shape_cases(rows=1024, N=32, L=4096, ref_rows=32, device=device)


if __name__ == "__main__":  # python -m ssmkit.benchmarks.vandermonde [--quick]
    import sys
    import time

    def best(fn, reps=5):
        fn()
        t = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
        return min(t)

    for case in cases("--quick" in sys.argv):
        rates = {k: impl.work / best(impl.fn) / 1e9 for k, impl in case.impls.items()}
        first = next(iter(rates.values()))
        row = "  ".join(f"{k}: {r:.3g} {case.unit} (x{first / r:.1f})" for k, r in rates.items())
        print(f"{case.family} {case.name:9s} {case.shape}: {row}   [{case.note}]")
