"""Cauchy product benchmarks at docs/architecture.md's standard shapes (S4 with H=256, N=64 state).

One term is one (row, n, l) triple and a conjugate pair counts as two, so a call does
rows * 2N * L terms. Forward times one product; backward times the three input
gradients (v, z, w) given an output gradient, on a graph built beforehand.

Baselines: the naive PyTorch reference, which materialises rows x L x 2N complex
numbers and so is timed on as many rows as fit in REFERENCE_MEMORY, and pykeops (its
LazyTensor formulation) when it is importable, on the same rows. Throughput is per
term, so a subset of rows is a fair comparison.
"""

from __future__ import annotations

import contextlib
import math
import sys

import torch

from .._accuracy import judge_all
from ..ops import cauchy, reference
from . import Case, Cost, Impl

STANDARD_SHAPES = [(1024, 32, 2049), (1024, 32, 8193)]  # (rows, N pairs, L)
QUICK_SHAPES = [(16, 8, 129)]
GPU_SHAPES = [(4096, 32, 8193)]  # a large layer's Cauchy product, sized for a GPU
REFERENCE_MEMORY = 1.5e9  # bytes the reference may use at its peak
# Peak memory of the reference in units of its (rows, L, 2N) matrix, as measured with
# ru_maxrss: forward holds the differences and the quotients; backward's graph holds two
# matrices and computing the gradients needs about five more.
REFERENCE_PEAK_MATRICES = {"forward": 2, "backward": 7}


def s4_inputs(rows: int, N: int, L: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """v, w (rows, N) and z (L,) in complex64, as S4's DPLR kernel calls the product.

    w: poles in S4D-Lin's pattern (small negative real parts, imaginary parts pi * n up to
    about pi * N). z: the bilinear nodes 2(1 - omega)/(1 + omega) of the 2(L-1) roots of
    unity omega whose half spectrum has L points; the last node, at omega = -1, is huge
    but finite because omega is rounded.
    """
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(rows, N, dtype=torch.complex64, generator=generator)
    real = -0.5 * torch.rand(rows, N, generator=generator) - 1e-3
    imag = math.pi * (torch.arange(N) + torch.rand(rows, N, generator=generator))
    w = torch.complex(real, imag)
    omega = torch.exp(-2j * math.pi * torch.arange(L, dtype=torch.float64) / (2 * (L - 1)))
    z = (2 * (1 - omega) / (1 + omega)).to(torch.complex64)
    return v, z, w


def _forward(fn, v, z, w):
    return lambda: fn(v, z, w)


def _backward(fn, v, z, w):
    """Computes the three input gradients of fn's output, given a fixed output gradient."""
    inputs = tuple(t.detach().clone().requires_grad_() for t in (v, z, w))
    out = fn(*inputs)
    grad = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1)).to(out.device)
    return lambda: torch.autograd.grad(out, inputs, grad, retain_graph=True)


def _pykeops_cauchy():
    """pykeops' lazy (no materialised matrix) Cauchy product, or None when not installed."""
    try:
        # KeOps prints its start-up warnings (no CUDA found) on stdout, the table's stream.
        with contextlib.redirect_stdout(sys.stderr):
            import pykeops
            from pykeops.torch import LazyTensor
    except ImportError:
        return None
    pykeops.set_verbose(False)

    def keops_cauchy(v, z, w):
        # Conjugate pairs made explicit, as in the reference: 2N terms per (row, l).
        v = torch.cat([v, v.conj()], dim=-1).resolve_conj()
        w = torch.cat([w, w.conj()], dim=-1).resolve_conj()
        rows, n_terms = v.shape
        v_j = LazyTensor(v.view(rows, 1, n_terms, 1))  # reduced over j = n
        w_j = LazyTensor(w.view(rows, 1, n_terms, 1))
        z_i = LazyTensor(z.view(1, -1, 1, 1).expand(rows, -1, 1, 1).contiguous())  # i = l
        return (v_j / (z_i - w_j)).sum(dim=2).squeeze(-1)

    return keops_cauchy


def _check(direction, v, z, w):
    """ssmkit's product (forward) or its three input gradients (backward) against the
    complex128 reference, by the 2x rule with the complex64 reference's error."""

    def up(*ts):
        return [t.to(torch.complex128) for t in ts]

    if direction == "forward":
        return lambda: judge_all([("product", cauchy(v, z, w), reference.cauchy(*up(v, z, w)), reference.cauchy(v, z, w))])
    grad = torch.randn(v.shape[0], z.shape[0], dtype=torch.complex64, generator=torch.Generator().manual_seed(2)).to(v.device)

    def grads(fn, inputs, grad):
        inputs = [t.detach().clone().requires_grad_() for t in inputs]
        return torch.autograd.grad(fn(*inputs), inputs, grad)

    def check():
        got = grads(cauchy, (v, z, w), grad)
        truth = grads(reference.cauchy, up(v, z, w), *up(grad))
        low = grads(reference.cauchy, (v, z, w), grad)
        return judge_all(zip(("dv", "dz", "dw"), got, truth, low))

    return check


def _reference_rows(rows: int, N: int, L: int, direction: str, dtype=torch.complex64) -> int:
    """The most rows, a power of two, whose reference run in ``dtype`` stays within REFERENCE_MEMORY."""
    matrix_row_bytes = L * 2 * N * dtype.itemsize
    fit = int(REFERENCE_MEMORY // (REFERENCE_PEAK_MATRICES[direction] * matrix_row_bytes))
    return min(rows, 2 ** int(math.log2(max(fit, 1))))


# FP32 operations per term of ssmkit's kernels (csrc/cpu/cauchy.cpp, csrc/cuda/cauchy.cu),
# an FMA counting 2 and a division 1: the forward's fused conjugate-pair form does 25 per
# pair; the backward 56 per pair (the differences 3, two reciprocals 7, the four real
# and imaginary parts 4, the squares 10, the pair's combined coefficients 8, the S1 and S2
# sums 16, the T sum 8; the coefficients are shared between the sums).
FLOPS_PER_TERM = {"forward": 12.5, "backward": 28}


def cost(direction: str, rows: int, N: int, L: int) -> Cost:
    """Per term: the flops above, and complex64 inputs read and outputs written once
    (forward: v, w, z in, the product out; backward: also the output gradient in, and
    dv, dw and the per-row dz (summed over rows by torch) out)."""
    values = rows * L + 2 * rows * N + L if direction == "forward" else 2 * rows * L + 4 * rows * N + L
    return Cost(FLOPS_PER_TERM[direction], 8 * values / (rows * 2 * N * L))


def cases(quick: bool, device: str = "cpu") -> list[Case]:
    keops_cauchy = _pykeops_cauchy()
    result = []
    shapes = QUICK_SHAPES if quick else STANDARD_SHAPES + (GPU_SHAPES if device != "cpu" else [])
    for rows, N, L in shapes:
        v, z, w = (t.to(device) for t in s4_inputs(rows, N, L))
        terms_per_row = 2 * N * L
        for direction, timed in (("forward", _forward), ("backward", _backward)):
            # pykeops needs no memory but runs at a few percent of ssmkit's speed: it
            # gets the reference's rows too, which keeps a full run to about a minute.
            sub = _reference_rows(rows, N, L, direction)
            impls = {
                "ssmkit": Impl(timed(cauchy, v, z, w), rows * terms_per_row),
                "torch reference": Impl(timed(reference.cauchy, v[:sub], z, w[:sub]), sub * terms_per_row),
            }
            if keops_cauchy is not None:
                impls["pykeops"] = Impl(timed(keops_cauchy, v[:sub], z, w[:sub]), sub * terms_per_row)
            note = f"baselines timed on {sub} of {rows} rows (the reference's memory)" if sub < rows else ""
            # checked on as many rows as the complex128 reference has memory for (rows are independent)
            checked = _reference_rows(rows, N, L, direction, torch.complex128)
            if checked < rows:
                note += ("; " if note else "") + f"checked on {checked} rows"
            check = _check(direction, v[:checked], z, w[:checked])
            result.append(Case("cauchy", direction, f"rows={rows} N={N} L={L}", "G terms/s", impls, check, note,
                               cost(direction, rows, N, L)))  # fmt: skip
    return result
