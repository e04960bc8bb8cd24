"""Bilinear stepping of DPLR (S4) systems without N x N matrices.

S4's state matrix is diagonal plus low rank, A = diag(Lambda) - P P^*, rank r, with
conjugate-pair storage (N stored values stand for 2N). Its bilinear discretization
dA = (I - dt/2 A)^-1 (I + dt/2 A), dB = (I - dt/2 A)^-1 dt B is dense, but by the
Woodbury identity dA = diag(a) - Pd Q^*, a rank-r correction of a diagonal, and one
step costs O(N r) per channel:

    sigma = 2 Re(Q^* x),  x' = a x + dB u - Pd^T sigma,  y = 2 Re(sum_n C_n x'_n) + D u,

with the factors of :func:`dplr_setup`: a = (2/dt + Lambda)/(2/dt - Lambda) (the diagonal
part's bilinear dA), Pd = P/(2/dt - Lambda), R = (I_r + Gamma)^-1 with Gamma = 2 Re(P^* Pd)
(a real r x r matrix: for conjugate-pair vectors P^* v is real), Q_k = sum_j R_kj P_j
conj(1 + a), and dB = b - Pd^T R 2 Re(P^* b) with b = 2 B/(2/dt - Lambda) (the system's
bilinear dB). Derivation in csrc/cpu/dplr.h; the dense meaning in
:func:`ssmkit.ops.reference.dplr_dense` / :func:`~ssmkit.ops.reference.dplr_step`.

``dplr_setup`` is a few batched PyTorch ops (once per dt; differentiable through torch
autograd). ``dplr_step`` is the fused kernel and mirrors :func:`ssmkit.ops.ssm_step`:
it returns (y, state'), accepts ``out=state`` for in-place generation, and is
inference only (backpropagating through it raises).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import _C
from ._common import Array, as_array, torch, use_torch
from ._spec import COMPLEX, REAL, Op, Size, Tensor

__all__ = ["DPLRFactors", "dplr_setup", "dplr_step", "dplr_untruncated_C"]  # what ssmkit.ops exports


class DPLRFactors(NamedTuple):
    """Per-channel factors of the bilinear DPLR step (see the module docstring)."""

    dA: Any  # a, dA's diagonal part: complex (H, N); torch tensors or NumPy arrays
    dB: Any  # complex (H, N)
    Pd: Any  # complex (H, r, N)
    Q: Any  # complex (H, r, N)


# Written in PyTorch (no core): only its checks follow from the description.
DPLR_SETUP = Op(
    "dplr_setup", None,
    [Tensor("dt", REAL, "H"), Tensor("Lambda", COMPLEX, "H N"), Tensor("P", COMPLEX, "H r N"), Tensor("B", COMPLEX, "H N")],
    [],
)  # fmt: skip

DPLR_STEP = Op(
    "dplr_step", _C.dplr_step,
    [Tensor("state", COMPLEX, "batch H N"), Tensor("u", REAL, "batch H"), Tensor("dA", COMPLEX, "H N", schema_name="a"),
     Tensor("dB", COMPLEX, "H N", schema_name="b"), Tensor("Pd", COMPLEX, "H r N"), Tensor("Q", COMPLEX, "H r N"),
     Tensor("C", COMPLEX, "H N"),
     Tensor("D", REAL, "H", optional=True)],
    [Tensor("y", REAL, "batch H"), Tensor("new_state", COMPLEX, "batch H N")],
    ref="dA", contiguous=True, out="new_state", in_place="state", train="the convolution mode", direct=True,
)  # fmt: skip


DPLR_UNTRUNCATED_C = Op(
    "dplr_untruncated_C", _C.dplr_untruncated_C,
    [Tensor("dt", REAL, "H"), Tensor("Lambda", COMPLEX, "H N"), Tensor("P", COMPLEX, "H r N"), Tensor("C", COMPLEX, "H N"),
     Size("L")],
    [Tensor("out", COMPLEX, "H N")],
    ref="Lambda", contiguous=True, train="ssmkit.nn.ssm_kernel.dplr_untruncated_C (the same sums in differentiable torch ops)",
)  # fmt: skip


def dplr_factors(xp, dt, Lambda, P, B) -> DPLRFactors:
    """The factors (see the module docstring) in the array namespace xp (torch or
    jax.numpy), in the inputs' precision; for :func:`dplr_setup` and ssmkit.jax.s4's."""
    g = 2 / dt[:, None]
    inv = 1 / (g - Lambda)  # E^-1 = diag(1/(2/dt - Lambda))
    one_plus_a = 2 * g * inv  # 1 + a = 4/(2 - dt Lambda), without a's cancellation
    b = 2 * B * inv
    Pd = P * inv[:, None, :]
    gamma = 2 * xp.einsum("hkn,hjn->hkj", P.conj(), Pd).real  # P_full^* E^-1 P_full
    eye = xp.eye(P.shape[1], dtype=gamma.dtype, **({"device": gamma.device} if xp is torch else {}))
    R = xp.linalg.inv(eye + gamma)
    beta = 2 * xp.einsum("hkn,hn->hk", P.conj(), b).real
    dB = b - xp.einsum("hk,hkn->hn", xp.einsum("hkj,hj->hk", R, beta) + 0j, Pd)
    Q = xp.einsum("hkj,hjn->hkn", R + 0j, P) * one_plus_a.conj()[:, None, :]
    return DPLRFactors((g + Lambda) * inv, dB, Pd, Q)


def dplr_setup(dt, Lambda, P, B) -> DPLRFactors:  # tensors or arrays (converted in the body)
    """Factors of the bilinear discretization of A = diag(Lambda) - P P^* (Woodbury).

    dt: real (H,), positive and finite; Lambda, B: complex (H, N); P: complex (H, r, N) (rank r,
    at most 64). Returns :class:`DPLRFactors` of torch tensors (NumPy arrays for NumPy
    input), formed in double precision and rounded once to the inputs' precision.
    Differentiable in every input through PyTorch's autograd.
    """
    numpy_in = not use_torch("dplr_setup", {"dt": dt, "Lambda": Lambda, "P": P, "B": B})
    if numpy_in:
        if torch is None:
            raise RuntimeError("dplr_setup needs PyTorch (pip install torch)")
        dt, Lambda, P, B = (torch.from_numpy(np.ascontiguousarray(as_array(n, x)))
                            for n, x in (("dt", dt), ("Lambda", Lambda), ("P", P), ("B", B)))  # fmt: skip
    DPLR_SETUP.check((dt, Lambda, P, B))
    if not torch.compiler.is_compiling():
        bad = torch.nonzero(~((dt > 0) & torch.isfinite(dt)))
        if len(bad):
            raise ValueError(f"dt: expected positive, finite step sizes, got dt[{int(bad[0, 0])}] = "
                             f"{dt[bad[0, 0]].item()}")
    # formed in double precision and rounded once: over 4096 float32 steps of S4's init this
    # halves the error of y and divides the state's by 3 (against factors formed in float32)
    wide = (dt.double(), *(t.to(torch.complex128) for t in (Lambda, P, B)))
    f = DPLRFactors(*(t.to(Lambda.dtype) for t in dplr_factors(torch, *wide)))
    if numpy_in:
        f = DPLRFactors(*(t.numpy() for t in f))
    return f


def dplr_step(
    state: Array, u: Array, factors: DPLRFactors, C: Array, D: Array | None = None, *, out: Array | None = None
) -> tuple[Array, Array]:
    """One bilinear step of the DPLR system from :func:`dplr_setup`'s factors.

    state: complex (batch, H, N); u: real (batch, H); C: complex (H, N); D: real (H,) or
    None. Returns (y (batch, H), state'), y = 2 Re(sum_n C_n state'_n) + D u, exactly as
    :func:`ssmkit.ops.ssm_step` with dC = C. ``out=state`` updates in place. O(N r) per
    channel and step. Inference only.
    """
    return DPLR_STEP(state, u, *factors, C, D, out=out)


def dplr_untruncated_C(dt: Array, Lambda: Array, P: Array, C: Array, L: int) -> Array:
    r"""The C that :func:`dplr_step` needs from the C~ that S4 learns for kernel length L:
    C~ (I - dA^L)^{-1} over the full state, stored half, with dA the bilinear dA of
    A = diag(Lambda) - P P^* (:func:`ssmkit.ops.reference.dplr_untruncated_C` defines it).

    dt: real (H,), positive and finite; Lambda, C: complex (H, N); P: complex (H, r, N), r at
    most 64; L >= 1. Returns complex (H, N). Without matrices or powers of dA: per channel,
    two Cauchy products over the (L + 1)/2 frequencies (the sums of
    :func:`ssmkit.nn.ssm_kernel.dplr_untruncated_C`), O(N L r^2). C~ T0 and P^* T1 can
    nearly cancel, so give complex128 for the step's accuracy. Inference only.
    """
    return DPLR_UNTRUNCATED_C(dt, Lambda, P, C, L)


if torch is not None:
    DPLR_STEP.register()
    DPLR_UNTRUNCATED_C.register()
