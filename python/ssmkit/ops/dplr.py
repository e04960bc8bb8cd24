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

from typing import NamedTuple, Optional

import numpy as np

from .. import _C
from ._common import array_module, array_stream, as_array, device_of, direct_call_ok, run_core, torch, use_torch
from .step import _c, _fake_check, _inference_only


class DPLRFactors(NamedTuple):
    """Per-channel factors of the bilinear DPLR step (see the module docstring)."""

    dA: object  # a: complex (H, N)
    dB: object  # b: complex (H, N)
    P: object  # complex (H, r, N)
    Pd: object  # complex (H, r, N)
    R: object  # real (H, r, r)


def dplr_setup(dt, Lambda, P, B) -> DPLRFactors:
    """Factors of the bilinear discretization of A = diag(Lambda) - P P^* (Woodbury).

    dt: real (H,), positive; Lambda, B: complex (H, N); P: complex (H, r, N) (rank r,
    at most 64). Returns :class:`DPLRFactors` of torch tensors (NumPy arrays for NumPy
    input). Differentiable in every input through PyTorch's autograd.
    """
    numpy_in = not use_torch("dplr_setup", {"dt": dt, "Lambda": Lambda, "P": P, "B": B})
    if numpy_in:
        if torch is None:
            raise RuntimeError("dplr_setup needs PyTorch (pip install torch)")
        dt, Lambda, P, B = (torch.from_numpy(np.ascontiguousarray(as_array(n, x)))
                            for n, x in (("dt", dt), ("Lambda", Lambda), ("P", P), ("B", B)))  # fmt: skip
    if Lambda.dtype not in (torch.complex64, torch.complex128):
        raise TypeError(f"Lambda: expected a complex64 or complex128 tensor, got {str(Lambda.dtype)[6:]}")
    if Lambda.dim() != 2:
        raise ValueError(f"Lambda: expected shape (H, N), got {tuple(Lambda.shape)}")
    H, N = Lambda.shape
    for name, t, shape in (("B", B, (H, N)), ("dt", dt, (H,))):
        if tuple(t.shape) != shape:
            raise ValueError(f"{name}: expected shape {shape} (from Lambda), got {tuple(t.shape)}")
    if P.dim() != 3 or P.shape[0] != H or P.shape[2] != N:
        raise ValueError(f"P: expected shape (H, r, N) = ({H}, r, {N}) from Lambda, got {tuple(P.shape)}")
    _fake_check("Lambda", Lambda, [("P", P), ("B", B)], [("dt", dt)])
    if not torch.compiler.is_compiling() and not bool((dt > 0).all()):
        raise ValueError(f"dt: expected positive step sizes, got min(dt) = {dt.min().item()}")
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


def dplr_step(state, u, factors: DPLRFactors, C, D=None, *, out=None):
    """One bilinear step of the DPLR system from :func:`dplr_setup`'s factors.

    state: complex (batch, H, N); u: real (batch, H); C: complex (H, N); D: real (H,) or
    None. Returns (y (batch, H), state'), y = 2 Re(sum_n C_n state'_n) + D u, exactly as
    :func:`ssmkit.ops.ssm_step` with dC = C. ``out=state`` updates in place. O(N r) per
    channel and step. Inference only.
    """
    a, b, P, Pd, R = factors
    if direct_call_ok((state, u, a, b, P, Pd, R, C, D, out)):  # eager inference: skip the dispatch
        y = torch.empty(u.shape, dtype=u.dtype)
        new = torch.empty_like(state) if out is None else out
        _C.dplr_step(state, u, a, b, P, Pd, R, C, D, y, new)
        if out is not None:  # as the mutating custom op would, for autograd's checks
            torch.autograd.graph.increment_version(out)
        return y, new
    args = {"state": state, "u": u, "dA": a, "dB": b, "P": P, "Pd": Pd, "R": R, "C": C}
    if D is not None:
        args["D"] = D
    if out is not None:
        args["out"] = out
    if use_torch("dplr_step", args):
        if out is None:
            return torch.ops.ssmkit.dplr_step(state, u, a, b, P, Pd, R, C, D)
        if torch.is_grad_enabled() and any(t.requires_grad for t in args.values()):
            raise RuntimeError(
                "dplr_step(out=...) is inference only and cannot record autograd; call it under torch.no_grad()"
            )
        if out is state:
            return torch.ops.ssmkit.dplr_step_(state, u, a, b, P, Pd, R, C, D), state
        y, new = torch.ops.ssmkit.dplr_step(state, u, a, b, P, Pd, R, C, D)
        out.copy_(new)
        return y, out
    arrs = {k: as_array(k, v) for k, v in args.items() if k != "out"}
    # each on its own device (the core refuses a mix; never copied across devices here)
    arrs = {k: array_module(v).ascontiguousarray(v) for k, v in arrs.items()}
    xp = array_module(a)
    with device_of(a):
        y = xp.empty(np.shape(arrs["u"]), dtype=getattr(arrs["u"], "dtype", None))
        new = xp.empty_like(arrs["state"]) if out is None else out
    _C.dplr_step(arrs["state"], arrs["u"], arrs["dA"], arrs["dB"], arrs["P"], arrs["Pd"], arrs["R"],
                 arrs["C"], arrs.get("D"), y, new, stream=array_stream(a))  # fmt: skip
    return y, new


if torch is not None:
    T = torch.Tensor
    OT = Optional[torch.Tensor]

    def _dplr_fake_check(state, u, a, b, P, Pd, R, C, D):
        _fake_check("dA", a, [("dB", b), ("P", P), ("Pd", Pd), ("C", C), ("state", state)],
                    [("u", u), ("R", R), ("D", D)])  # fmt: skip

    @torch.library.custom_op("ssmkit::dplr_step", mutates_args=())
    def _dplr_step_op(state: T, u: T, a: T, b: T, P: T, Pd: T, R: T, C: T, D: OT) -> tuple[T, T]:
        u_, state_ = _c(u), _c(state)
        y, new = torch.empty_like(u_), torch.empty_like(state_)
        run_core(_C.dplr_step, a, state_, u_, _c(a), _c(b), _c(P), _c(Pd), _c(R), _c(C), _c(D), y, new)
        return y, new

    @_dplr_step_op.register_fake
    def _(state, u, a, b, P, Pd, R, C, D):
        _dplr_fake_check(state, u, a, b, P, Pd, R, C, D)
        c = torch.contiguous_format
        return torch.empty_like(u, memory_format=c), torch.empty_like(state, memory_format=c)

    @torch.library.custom_op("ssmkit::dplr_step_", mutates_args=("state",))
    def _dplr_step_inplace_op(state: T, u: T, a: T, b: T, P: T, Pd: T, R: T, C: T, D: OT) -> T:
        if not state.is_contiguous():
            raise ValueError("state: dplr_step(out=state) needs a contiguous state to update in place")
        u_ = _c(u)
        y = torch.empty_like(u_)
        run_core(_C.dplr_step, a, state, u_, _c(a), _c(b), _c(P), _c(Pd), _c(R), _c(C), _c(D), y, state)
        return y

    @_dplr_step_inplace_op.register_fake
    def _(state, u, a, b, P, Pd, R, C, D):
        _dplr_fake_check(state, u, a, b, P, Pd, R, C, D)
        return torch.empty_like(u, memory_format=torch.contiguous_format)

    _dplr_step_op.register_autograd(
        _inference_only("dplr_step", "the convolution mode"), setup_context=lambda ctx, inputs, output: None
    )
