"""Log-Vandermonde products: ``out[..., l] = sum_n v_n exp(x_n l)`` and the transpose.

S4D computes its convolution kernel with ``vandermonde`` (``conj_pairs=True`` gives the
real kernel ``2 Re(...)`` from half of each conjugate pair) and forwards state with
``vandermonde_transpose``. Both take torch tensors (custom ops with autograd, usable
under torch.compile) or NumPy arrays (forward only). The meaning is defined by
:func:`ssmkit.ops.reference.vandermonde` and :func:`ssmkit.ops.reference.vandermonde_transpose`.
"""

from __future__ import annotations

import operator

import numpy as np

from .. import _C
from ._common import (
    array_module, array_stream, as_array, batch_shape, check_tensors, device_of, plain, run_core, sum_to, torch,
    use_torch,
)

_LAYOUT = {"v": "(..., N)", "x": "(..., N)", "u": "(..., L)"}
_REAL = {np.dtype(np.complex64): np.float32, np.dtype(np.complex128): np.float64}


def _length(L) -> int:
    if isinstance(L, bool) or isinstance(L, float):
        raise TypeError(f"L: expected a non-negative integer length, got {type(L).__name__} {L!r}")
    try:
        n = operator.index(L)
    except TypeError:
        raise TypeError(f"L: expected a non-negative integer length, got {type(L).__name__}") from None
    if n < 0:
        raise ValueError(f"L: expected a non-negative integer length, got {n}")
    return n


def _check_n(v_shape, x_shape):
    if len(v_shape) >= 1 and len(x_shape) >= 1 and v_shape[-1] != x_shape[-1]:
        raise ValueError(
            f"x: expected the last dimension to be N = {v_shape[-1]} as in v of shape {tuple(v_shape)}, "
            f"got shape {tuple(x_shape)}"
        )


def _batch(op, **shapes) -> tuple:
    return batch_shape(op, shapes, {k: _LAYOUT[k] for k in shapes})


def vandermonde(v, x, L, *, conj_pairs: bool = True):
    """Log-Vandermonde product of v, x (..., N) over l = 0..L-1; returns (..., L).

    ``out[..., l] = sum_n v[..., n] * exp(x[..., n] * l)``; with ``conj_pairs`` (S4D keeps
    one half of each conjugate pair) the real tensor ``2 * Re(...)``, else complex.
    complex64 or complex128; leading dimensions broadcast. Torch tensors give a
    differentiable result (in v and x); NumPy arrays give a NumPy array.
    """
    L = _length(L)
    if use_torch("vandermonde", {"v": v, "x": x}):
        return torch.ops.ssmkit.vandermonde(v, x, L, bool(conj_pairs))
    v, x = as_array("v", v), as_array("x", x)
    _check_n(np.shape(v), np.shape(x))
    shape = _batch("vandermonde", v=np.shape(v), x=np.shape(x)) + (L,)
    dtype = np.dtype(getattr(v, "dtype", np.complex64))
    with device_of(v):
        out = array_module(v).empty(shape, dtype=_REAL.get(dtype, dtype) if conj_pairs else dtype)
    if out.size:
        _C.vandermonde(v, x, L, out, bool(conj_pairs), stream=array_stream(v))
    return out


def vandermonde_transpose(u, v, x):
    """Transposed log-Vandermonde product; returns complex (..., N).

    ``out[..., n] = v[..., n] * sum_l u[..., l] * exp(x[..., n] * l)`` with u real or
    complex (..., L) of v's precision, v, x complex (..., N); leading dimensions broadcast.
    Torch tensors give a result differentiable in u, v and x.
    """
    if use_torch("vandermonde_transpose", {"u": u, "v": v, "x": x}):
        return torch.ops.ssmkit.vandermonde_transpose(u, v, x)
    u, v, x = as_array("u", u), as_array("v", v), as_array("x", x)
    _check_n(np.shape(v), np.shape(x))
    shape = _batch("vandermonde_transpose", u=np.shape(u), v=np.shape(v), x=np.shape(x)) + (np.shape(v)[-1],)
    with device_of(v):
        out = array_module(v).empty(shape, dtype=getattr(v, "dtype", None))
    if out.size:
        _C.vandermonde_transpose(u, v, x, out, stream=array_stream(v))
    return out


if torch is not None:

    def _check_fake(v, x, u=None):
        # Fake kernels never reach the compiled core's checks: repeat the cheap ones.
        check_tensors({"v": v, "x": x})
        _check_n(v.shape, x.shape)
        for name, t in (("x", x), ("u", u)):
            if t is not None and t.device != v.device:
                raise ValueError(f"{name}: expected a tensor on {v.device} like v, got one on {t.device}")
        if u is not None and u.dtype not in (v.dtype, v.dtype.to_real()):
            raise TypeError(f"u: expected {v.dtype.to_real()} or {v.dtype} to match v, got {u.dtype}")

    # --- forward product -------------------------------------------------------------

    @torch.library.custom_op("ssmkit::vandermonde", mutates_args=())
    def _vandermonde_op(v: torch.Tensor, x: torch.Tensor, L: int, conj_pairs: bool) -> torch.Tensor:
        out = _forward_buffer(v, x, L, conj_pairs)
        if out.numel():  # an empty output has nothing to compute (and any strides)
            run_core(_C.vandermonde, v, plain(v), plain(x), L, out, conj_pairs)
        return out

    def _forward_buffer(v, x, L, conj_pairs):
        shape = _batch("vandermonde", v=v.shape, x=x.shape) + (L,)
        return v.new_empty(shape, dtype=v.dtype.to_real() if conj_pairs else v.dtype)

    @_vandermonde_op.register_fake
    def _(v, x, L, conj_pairs):
        _check_fake(v, x)
        return _forward_buffer(v, x, L, conj_pairs)

    @torch.library.custom_op("ssmkit::vandermonde_backward", mutates_args=())
    def _vandermonde_backward_op(
        grad: torch.Tensor, v: torch.Tensor, x: torch.Tensor, conj_pairs: bool, needs: list[bool]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dv, dx = _vandermonde_grads(grad, v, x, needs)
        needs = [n and g.numel() > 0 for n, g in zip(needs, (dv, dx))]
        run_core(
            _C.vandermonde_backward, v, plain(grad), plain(v), plain(x),
            dv if needs[0] else None, dx if needs[1] else None, conj_pairs,
        )  # fmt: skip
        return dv, dx

    def _vandermonde_grads(grad, v, x, needs):
        # Gradients at the full broadcast shape; those not needed are empty.
        shape = _batch("vandermonde", v=v.shape, x=x.shape, u=grad.shape) + (v.shape[-1],)
        return (v.new_empty(shape if needs[0] else (0,)), v.new_empty(shape if needs[1] else (0,)))

    @_vandermonde_backward_op.register_fake
    def _(grad, v, x, conj_pairs, needs):
        return _vandermonde_grads(grad, v, x, needs)

    def _vandermonde_setup(ctx, inputs, output):
        v, x, L, conj_pairs = inputs
        ctx.save_for_backward(v, x)
        ctx.conj_pairs = conj_pairs

    def _vandermonde_backward(ctx, grad):
        v, x = ctx.saved_tensors
        needs = list(ctx.needs_input_grad[:2])
        if not any(needs):
            return None, None, None, None
        dv, dx = torch.ops.ssmkit.vandermonde_backward(grad, v, x, ctx.conj_pairs, needs)
        return (sum_to(dv, v.shape) if needs[0] else None, sum_to(dx, x.shape) if needs[1] else None, None, None)

    _vandermonde_op.register_autograd(_vandermonde_backward, setup_context=_vandermonde_setup)

    # --- transpose -------------------------------------------------------------------

    @torch.library.custom_op("ssmkit::vandermonde_transpose", mutates_args=())
    def _transpose_op(u: torch.Tensor, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = _transpose_buffer(u, v, x)
        if out.numel():
            run_core(_C.vandermonde_transpose, v, plain(u), plain(v), plain(x), out)
        return out

    def _transpose_buffer(u, v, x):
        shape = _batch("vandermonde_transpose", u=u.shape, v=v.shape, x=x.shape) + (v.shape[-1],)
        return v.new_empty(shape)

    @_transpose_op.register_fake
    def _(u, v, x):
        _check_fake(v, x, u)
        return _transpose_buffer(u, v, x)

    @torch.library.custom_op("ssmkit::vandermonde_transpose_backward", mutates_args=())
    def _transpose_backward_op(
        grad: torch.Tensor, u: torch.Tensor, v: torch.Tensor, x: torch.Tensor, needs: list[bool]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        du, dv, dx = _transpose_grads(grad, u, v, x, needs)
        needs = [n and g.numel() > 0 for n, g in zip(needs, (du, dv, dx))]
        run_core(
            _C.vandermonde_transpose_backward, v, plain(grad), plain(u), plain(v), plain(x),
            du if needs[0] else None, dv if needs[1] else None, dx if needs[2] else None,
        )  # fmt: skip
        return du, dv, dx

    def _transpose_grads(grad, u, v, x, needs):
        batch = _batch("vandermonde_transpose", u=u.shape, v=v.shape, x=x.shape)
        du = u.new_empty(batch + (u.shape[-1],) if needs[0] else (0,))
        dv = v.new_empty(batch + (v.shape[-1],) if needs[1] else (0,))
        dx = v.new_empty(batch + (v.shape[-1],) if needs[2] else (0,))
        return du, dv, dx

    @_transpose_backward_op.register_fake
    def _(grad, u, v, x, needs):
        return _transpose_grads(grad, u, v, x, needs)

    def _transpose_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _transpose_backward(ctx, grad):
        u, v, x = ctx.saved_tensors
        needs = list(ctx.needs_input_grad[:3])
        if not any(needs):
            return None, None, None
        du, dv, dx = torch.ops.ssmkit.vandermonde_transpose_backward(grad, u, v, x, needs)
        return tuple(sum_to(g, t.shape) if need else None for g, t, need in zip((du, dv, dx), (u, v, x), needs))

    _transpose_op.register_autograd(_transpose_backward, setup_context=_transpose_setup)
