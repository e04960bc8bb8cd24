"""Bilinear stepping of DPLR (S4) systems without N x N matrices.

S4's state matrix is diagonal plus low rank, A = diag(Lambda) - P P^*, rank r, with
conjugate-pair storage (N stored values stand for 2N). Its bilinear discretization
dA = (I - dt/2 A)^-1 (I + dt/2 A), dB = (I - dt/2 A)^-1 dt B is dense, but by the
Woodbury identity one step costs O(N r) per channel:

    s = 2 Re(P^* x),  w = a x + b u - Pd^T s,  t = 2 Re(P^* w),  x' = w - Pd^T (R t),
    y = 2 Re(sum_n C_n x'_n) + D u,

with the factors of :func:`dplr_setup`: a = (2/dt + Lambda)/(2/dt - Lambda) and
b = 2 B/(2/dt - Lambda) (the diagonal part's bilinear dA, dB), Pd = P/(2/dt - Lambda),
R = (I_r + 2 Re(P^* Pd))^-1, a real r x r matrix (for conjugate-pair vectors P^* v is
real). Derivation in csrc/cpu/dplr.h; the dense meaning in
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
from ._spec import COMPLEX, REAL, Op, Tensor

__all__ = ["DPLRFactors", "dplr_setup", "dplr_step"]  # what ssmkit.ops exports


class DPLRFactors(NamedTuple):
    """Per-channel factors of the bilinear DPLR step (see the module docstring)."""

    dA: Any  # a: complex (H, N); torch tensors or NumPy arrays
    dB: Any  # b: complex (H, N)
    P: Any  # complex (H, r, N)
    Pd: Any  # complex (H, r, N)
    R: Any  # real (H, r, r)


_P = Tensor("P", COMPLEX, "H r N")

# Written in PyTorch (no core): only its checks follow from the description.
DPLR_SETUP = Op(
    "dplr_setup", None, [Tensor("dt", REAL, "H"), Tensor("Lambda", COMPLEX, "H N"), _P, Tensor("B", COMPLEX, "H N")], []
)

DPLR_STEP = Op(
    "dplr_step", _C.dplr_step,
    [Tensor("state", COMPLEX, "batch H N"), Tensor("u", REAL, "batch H"), Tensor("dA", COMPLEX, "H N", schema_name="a"),
     Tensor("dB", COMPLEX, "H N", schema_name="b"), _P, Tensor("Pd", COMPLEX, "H r N"), Tensor("R", REAL, "H r r"),
     Tensor("C", COMPLEX, "H N"),
     Tensor("D", REAL, "H", optional=True)],
    [Tensor("y", REAL, "batch H"), Tensor("new_state", COMPLEX, "batch H N")],
    ref="dA", contiguous=True, out="new_state", in_place="state", train="the convolution mode", direct=True,
)  # fmt: skip


def dplr_setup(dt, Lambda, P, B) -> DPLRFactors:  # tensors or arrays (converted in the body)
    """Factors of the bilinear discretization of A = diag(Lambda) - P P^* (Woodbury).

    dt: real (H,), positive and finite; Lambda, B: complex (H, N); P: complex (H, r, N) (rank r,
    at most 64). Returns :class:`DPLRFactors` of torch tensors (NumPy arrays for NumPy
    input). Differentiable in every input through PyTorch's autograd.
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
    g = 2 / dt.unsqueeze(-1)
    inv = 1 / (g - Lambda)  # E^-1 = diag(1/(2/dt - Lambda))
    a = (g + Lambda) * inv
    b = 2 * B * inv
    Pd = P * inv.unsqueeze(-2)
    M = 2 * torch.einsum("hkn,hjn->hkj", P.conj(), Pd).real  # P_full^* E^-1 P_full
    eye = torch.eye(P.shape[1], dtype=M.dtype, device=M.device)
    R = torch.linalg.inv(eye + M)
    f = DPLRFactors(a, b, P, Pd, R)
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
    a, b, P, Pd, R = factors
    return DPLR_STEP(state, u, a, b, P, Pd, R, C, D, out=out)


if torch is not None:
    DPLR_STEP.register()
