"""Discretization and recurrent stepping of diagonal SSMs (S4D; S4's step mode).

- ``discretize(dt, A, B, method=...)`` -> (dA, dB): ZOH or bilinear; differentiable.
- ``ssm_step(state, u, dA, dB, dC, D)`` -> (y, state'): one step; inference only.
- ``ssm_scan(u, dA, dB, dC, D, state)`` -> (y, final state): the step over a sequence;
  differentiable in every tensor input (the backward is a reverse scan).

Shapes: dA, dB, dC complex (H, N) with conjugate-pair storage (N stored values stand
for 2N, so y = 2 Re(sum_n dC_n x_n) + D u); dt, D real (H,); state complex
(batch, H, N); u, y real, (batch, H) per step or (batch, L, H) per sequence. Real
arrays are float32 with complex64 and float64 with complex128. Torch tensors go
through torch custom ops (usable under torch.compile); NumPy arrays give NumPy
results (forward only). Meanings: :mod:`ssmkit.ops.reference`.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _C
from ._common import array_module, array_stream, as_array, device_of, direct_call_ok, plain, run_core, torch, use_torch

_METHODS = ("zoh", "bilinear")


def _check_method(method):
    if method not in _METHODS:
        raise ValueError(f'method: expected "zoh" or "bilinear", got {method!r}')


def _np(name, x):
    x = as_array(name, x)
    return array_module(x).ascontiguousarray(x)


def _c(t):
    """A tensor the core reads: detached, resolved, contiguous (a copy only when needed)."""
    return None if t is None else plain(t).contiguous()


def discretize(dt, A, B, *, method: str = "zoh"):
    """Discretize the diagonal system (A, B) with per-channel step dt; returns (dA, dB).

    zoh: dA = exp(dt A), dB = (exp(dt A) - 1)/A * B, with the exact limit dt B as A -> 0
    (the small-|dt A| range is summed as a series, so there is no cancellation).
    bilinear: dA = (1 + dt A/2)/(1 - dt A/2), dB = dt B/(1 - dt A/2).
    dt: real (H,), positive; A, B: complex (H, N). Differentiable in dt, A and B.
    """
    _check_method(method)
    if use_torch("discretize", {"dt": dt, "A": A, "B": B}):
        return torch.ops.ssmkit.discretize(dt, A, B, method)
    dt, A, B = _np("dt", dt), _np("A", A), _np("B", B)
    xp = array_module(A)
    with device_of(A):
        dA, dB = xp.empty_like(A), xp.empty_like(A)
    _C.discretize(dt, A, B, dA, dB, method, stream=array_stream(A))
    return dA, dB


def ssm_step(state, u, dA, dB, dC, D=None, *, out=None):
    """One step of the diagonal SSM: state' = dA * state + dB * u, y = 2 Re(sum_n dC state') + D u.

    state: complex (batch, H, N); u: real (batch, H). Returns (y (batch, H), state').
    ``out``: where state' is written; ``out=state`` updates the state in place (the
    usual generation loop: ``y, _ = ssm_step(x, u, ..., out=x)``), which is safe since
    each element is read before it is written. Inference only: backpropagating
    through it raises (train with :func:`ssm_scan`).
    """
    if direct_call_ok((state, u, dA, dB, dC, D, out)):  # eager inference: skip the dispatch
        y = torch.empty(u.shape, dtype=u.dtype)
        new = torch.empty_like(state) if out is None else out
        _C.ssm_step(state, u, dA, dB, dC, D, y, new)
        if out is not None:  # as the mutating custom op would, for autograd's checks
            torch.autograd.graph.increment_version(out)
        return y, new
    args = {"state": state, "u": u, "dA": dA, "dB": dB, "dC": dC}
    if D is not None:
        args["D"] = D
    if out is not None:
        args["out"] = out
    if use_torch("ssm_step", args):
        if out is None:
            return torch.ops.ssmkit.ssm_step(state, u, dA, dB, dC, D)
        if torch.is_grad_enabled() and any(t.requires_grad for t in args.values()):
            raise RuntimeError(
                "ssm_step(out=...) is inference only and cannot record autograd; call it under "
                "torch.no_grad(), or train with ssmkit.ops.ssm_scan"
            )
        if out is state:  # the common in-place generation step
            return torch.ops.ssmkit.ssm_step_(state, u, dA, dB, dC, D), state
        return torch.ops.ssmkit.ssm_step_out(state, u, dA, dB, dC, D, out), out
    state, u = _np("state", state), _np("u", u)
    dA, dB, dC = _np("dA", dA), _np("dB", dB), _np("dC", dC)
    D = None if D is None else _np("D", D)
    xp = array_module(dA)
    with device_of(dA):
        y = xp.empty(np.shape(u), dtype=getattr(u, "dtype", None))
        new = xp.empty_like(state) if out is None else out
    _C.ssm_step(state, u, dA, dB, dC, D, y, new, stream=array_stream(dA))
    return y, new


def ssm_scan(u, dA, dB, dC, D=None, state=None):
    """The diagonal SSM over a sequence: u (batch, L, H) -> (y (batch, L, H), final state).

    Equal to L calls of :func:`ssm_step` from ``state`` (zero when None). Differentiable
    in u, dA, dB, dC, D and state; the backward is a reverse scan that recomputes the
    states from checkpoints every 64 steps, storing (batch, H, N) per checkpoint and no
    (batch, L, H, N) array.
    """
    args = {"u": u, "dA": dA, "dB": dB, "dC": dC}
    if D is not None:
        args["D"] = D
    if state is not None:
        args["state"] = state
    if use_torch("ssm_scan", args):
        return torch.ops.ssmkit.ssm_scan(u, dA, dB, dC, D, state)
    u, dA, dB, dC = _np("u", u), _np("dA", dA), _np("dB", dB), _np("dC", dC)
    D = None if D is None else _np("D", D)
    state = None if state is None else _np("state", state)
    if np.ndim(u) != 3 or np.ndim(dA) != 2:
        _C.ssm_scan(u, dA, dB, dC, D, state, u, u)  # raises with the argument's name
    xp = array_module(dA)
    with device_of(dA):
        y = xp.empty_like(u)
        final = xp.empty((u.shape[0], dA.shape[0], dA.shape[1]), dtype=dA.dtype)
    _C.ssm_scan(u, dA, dB, dC, D, state, y, final, stream=array_stream(dA))
    return y, final


# ---- torch custom ops -------------------------------------------------------------

_COMPLEX = (None,) if torch is None else (torch.complex64, torch.complex128)


def _real_of(dtype):
    return torch.float32 if dtype == torch.complex64 else torch.float64


def _name(dtype):
    return str(dtype).replace("torch.", "")


def _fake_check(ref_name, ref, complex_args=(), real_args=()):
    """dtype checks for fake kernels (which never reach the compiled core's checks)."""
    if ref.dtype not in _COMPLEX:
        raise TypeError(f"{ref_name}: expected a complex64 or complex128 tensor, got {_name(ref.dtype)}")
    for n, t in complex_args:
        if t is not None and t.dtype != ref.dtype:
            raise TypeError(f"{n}: expected {_name(ref.dtype)} like {ref_name}, got {_name(t.dtype)}")
    for n, t in real_args:
        if t is not None and t.dtype != _real_of(ref.dtype):
            raise TypeError(f"{n}: expected {_name(_real_of(ref.dtype))} (the real dtype of {ref_name}), got {_name(t.dtype)}")


if torch is not None:
    T = torch.Tensor
    OT = Optional[torch.Tensor]

    # -- discretize --

    @torch.library.custom_op("ssmkit::discretize", mutates_args=())
    def _discretize_op(dt: T, A: T, B: T, method: str) -> tuple[T, T]:
        _check_method(method)
        A_, B_ = _c(A), _c(B)
        dA, dB = torch.empty_like(A_), torch.empty_like(A_)
        run_core(_C.discretize, A, _c(dt), A_, B_, dA, dB, method)
        return dA, dB

    @_discretize_op.register_fake
    def _(dt, A, B, method):
        _fake_check("A", A, [("B", B)], [("dt", dt)])
        return torch.empty_like(A, memory_format=torch.contiguous_format), torch.empty_like(
            A, memory_format=torch.contiguous_format
        )

    @torch.library.custom_op("ssmkit::discretize_backward", mutates_args=())
    def _discretize_backward_op(dt: T, A: T, B: T, gdA: OT, gdB: OT, method: str) -> tuple[T, T, T]:
        A_ = _c(A)
        gdt, gA, gB = torch.empty_like(_c(dt)), torch.empty_like(A_), torch.empty_like(A_)
        run_core(_C.discretize_backward, A, _c(dt), A_, _c(B), _c(gdA), _c(gdB), gdt, gA, gB, method)
        return gdt, gA, gB

    @_discretize_backward_op.register_fake
    def _(dt, A, B, gdA, gdB, method):
        c = torch.contiguous_format
        return (torch.empty_like(dt, memory_format=c), torch.empty_like(A, memory_format=c),
                torch.empty_like(A, memory_format=c))  # fmt: skip

    def _discretize_setup(ctx, inputs, output):
        dt, A, B, method = inputs
        ctx.save_for_backward(dt, A, B)
        ctx.method = method

    def _discretize_backward(ctx, gdA, gdB):
        dt, A, B = ctx.saved_tensors
        gdt, gA, gB = torch.ops.ssmkit.discretize_backward(dt, A, B, gdA, gdB, ctx.method)
        n = ctx.needs_input_grad
        return gdt if n[0] else None, gA if n[1] else None, gB if n[2] else None, None

    _discretize_op.register_autograd(_discretize_backward, setup_context=_discretize_setup)

    # -- ssm_step (inference only) --

    def _step_fake_check(state, u, dA, dB, dC, D):
        _fake_check("dA", dA, [("dB", dB), ("dC", dC), ("state", state)], [("u", u), ("D", D)])

    @torch.library.custom_op("ssmkit::ssm_step", mutates_args=())
    def _ssm_step_op(state: T, u: T, dA: T, dB: T, dC: T, D: OT) -> tuple[T, T]:
        u_, state_ = _c(u), _c(state)
        y, new = torch.empty_like(u_), torch.empty_like(state_)
        run_core(_C.ssm_step, dA, state_, u_, _c(dA), _c(dB), _c(dC), _c(D), y, new)
        return y, new

    @_ssm_step_op.register_fake
    def _(state, u, dA, dB, dC, D):
        _step_fake_check(state, u, dA, dB, dC, D)
        c = torch.contiguous_format
        return torch.empty_like(u, memory_format=c), torch.empty_like(state, memory_format=c)

    @torch.library.custom_op("ssmkit::ssm_step_", mutates_args=("state",))
    def _ssm_step_inplace_op(state: T, u: T, dA: T, dB: T, dC: T, D: OT) -> T:
        if not state.is_contiguous():
            raise ValueError("state: ssm_step(out=state) needs a contiguous state to update in place")
        u_ = _c(u)
        y = torch.empty_like(u_)
        run_core(_C.ssm_step, dA, state, u_, _c(dA), _c(dB), _c(dC), _c(D), y, state)
        return y

    @_ssm_step_inplace_op.register_fake
    def _(state, u, dA, dB, dC, D):
        _step_fake_check(state, u, dA, dB, dC, D)
        return torch.empty_like(u, memory_format=torch.contiguous_format)

    @torch.library.custom_op("ssmkit::ssm_step_out", mutates_args=("out",))
    def _ssm_step_out_op(state: T, u: T, dA: T, dB: T, dC: T, D: OT, out: T) -> T:
        if not out.is_contiguous():
            raise ValueError("out: expected a contiguous output tensor")
        u_ = _c(u)
        y = torch.empty_like(u_)
        run_core(_C.ssm_step, dA, _c(state), u_, _c(dA), _c(dB), _c(dC), _c(D), y, out)
        return y

    @_ssm_step_out_op.register_fake
    def _(state, u, dA, dB, dC, D, out):
        _step_fake_check(state, u, dA, dB, dC, D)
        return torch.empty_like(u, memory_format=torch.contiguous_format)

    def _inference_only(op, train):
        def backward(ctx, *grads):
            raise RuntimeError(
                f"ssmkit.ops.{op} is inference only (no backward); "
                f"train with {train} and use {op} to generate"
            )

        return backward

    _ssm_step_op.register_autograd(
        _inference_only("ssm_step", "ssmkit.ops.ssm_scan"), setup_context=lambda ctx, inputs, output: None
    )

    # -- ssm_scan --

    @torch.library.custom_op("ssmkit::ssm_scan", mutates_args=())
    def _ssm_scan_op(u: T, dA: T, dB: T, dC: T, D: OT, state: OT) -> tuple[T, T]:
        u_, dA_ = _c(u), _c(dA)
        y = torch.empty_like(u_)
        final = dA_.new_empty(_final_shape(u_, dA_))
        run_core(_C.ssm_scan, dA, u_, dA_, _c(dB), _c(dC), _c(D), _c(state), y, final)
        return y, final

    def _final_shape(u, dA):
        if u.dim() != 3 or dA.dim() != 2:
            raise ValueError(
                f"u, dA: expected u of shape (batch, L, H) and dA of shape (H, N), got "
                f"{tuple(u.shape)} and {tuple(dA.shape)}"
            )
        return (u.shape[0], dA.shape[0], dA.shape[1])

    @_ssm_scan_op.register_fake
    def _(u, dA, dB, dC, D, state):
        _fake_check("dA", dA, [("dB", dB), ("dC", dC), ("state", state)], [("u", u), ("D", D)])
        return torch.empty_like(u, memory_format=torch.contiguous_format), dA.new_empty(_final_shape(u, dA))

    @torch.library.custom_op("ssmkit::ssm_scan_backward", mutates_args=())
    def _ssm_scan_backward_op(
        u: T, dA: T, dB: T, dC: T, D: OT, state: OT, gy: T, gstate: OT, needs: list[bool]
    ) -> tuple[T, T, T, T, T, T]:
        bufs = _scan_backward_buffers(u, dA, needs)
        run_core(
            _C.ssm_scan_backward, dA, _c(u), _c(dA), _c(dB), _c(dC), _c(D), _c(state), _c(gy), _c(gstate),
            *(b if need else None for b, need in zip(bufs, needs)),
        )  # fmt: skip
        return bufs

    def _scan_backward_buffers(u, dA, needs):
        # Per batch element gradients of the channel parameters (summed by the caller);
        # those not needed are empty.
        batch, L, H = u.shape
        N = dA.shape[-1]
        shapes = [(batch, L, H), (batch, H, N), (batch, H, N), (batch, H, N), (batch, H), (batch, H, N)]
        dtypes = [u.dtype, dA.dtype, dA.dtype, dA.dtype, u.dtype, dA.dtype]
        return tuple(
            u.new_empty(s if need else (0,), dtype=dt) for s, dt, need in zip(shapes, dtypes, needs)
        )

    @_ssm_scan_backward_op.register_fake
    def _(u, dA, dB, dC, D, state, gy, gstate, needs):
        return _scan_backward_buffers(u, dA, needs)

    def _scan_setup(ctx, inputs, output):
        u, dA, dB, dC, D, state = inputs
        ctx.save_for_backward(u, dA, dB, dC, D, state)

    def _scan_backward(ctx, gy, gstate):
        u, dA, dB, dC, D, state = ctx.saved_tensors
        n = ctx.needs_input_grad
        # gu, gdA, gdB, gdC, gD, gstate0
        needs = [n[0], n[1], n[2], n[3], D is not None and n[4], state is not None and n[5]]
        if not any(needs):
            return (None,) * 6
        if gy is None:
            gy = torch.zeros_like(u)
        gu, gA, gB, gC, gD, gs = torch.ops.ssmkit.ssm_scan_backward(u, dA, dB, dC, D, state, gy, gstate, needs)
        return (
            gu if needs[0] else None,
            gA.sum(0) if needs[1] else None,
            gB.sum(0) if needs[2] else None,
            gC.sum(0) if needs[3] else None,
            gD.sum(0) if needs[4] else None,
            gs if needs[5] else None,
        )

    _ssm_scan_op.register_autograd(_scan_backward, setup_context=_scan_setup)
