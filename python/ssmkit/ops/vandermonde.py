"""Log-Vandermonde products: ``out[..., l] = sum_n v_n exp(x_n l)`` and the transpose.

S4D computes its convolution kernel with ``vandermonde`` (``conj_pairs=True`` gives the
real kernel ``2 Re(...)`` from half of each conjugate pair) and forwards state with
``vandermonde_transpose``. Both take torch tensors (custom ops with autograd, usable
under torch.compile) or NumPy arrays (forward only). The meaning is defined by
:func:`ssmkit.ops.reference.vandermonde` and :func:`ssmkit.ops.reference.vandermonde_transpose`.
"""

from __future__ import annotations

from .. import _C
from ._common import Array, sum_to, torch
from ._spec import COMPLEX, NEEDS, REAL_OR_COMPLEX, Flag, Op, Size, Tensor

__all__ = ["vandermonde", "vandermonde_transpose"]  # what ssmkit.ops exports

_V, _X = Tensor("v", COMPLEX, "... N"), Tensor("x", COMPLEX, "... N")
_U = Tensor("u", REAL_OR_COMPLEX, "... L")

VANDERMONDE = Op(
    "vandermonde", _C.vandermonde,
    [_V, _X, Size("L"), Flag("conj_pairs")],
    [Tensor("out", COMPLEX, "... L", real_if="conj_pairs")],
)  # fmt: skip

# Gradients at the full broadcast shape (summed back by the caller); those not needed are empty.
VANDERMONDE_BACKWARD = Op(
    "vandermonde_backward", _C.vandermonde_backward,
    [Tensor("grad", COMPLEX, "... L", real_if="conj_pairs"), _V, _X, Flag("conj_pairs"), NEEDS],
    [Tensor("dv", COMPLEX, "... N"), Tensor("dx", COMPLEX, "... N")],
    ref="v",
)  # fmt: skip

VANDERMONDE_TRANSPOSE = Op(
    "vandermonde_transpose", _C.vandermonde_transpose, [_U, _V, _X], [Tensor("out", COMPLEX, "... N")], ref="v"
)

VANDERMONDE_TRANSPOSE_BACKWARD = Op(
    "vandermonde_transpose_backward", _C.vandermonde_transpose_backward,
    [Tensor("grad", COMPLEX, "... N"), _U, _V, _X, NEEDS],
    [Tensor("du", REAL_OR_COMPLEX, "... L", like="u"), Tensor("dv", COMPLEX, "... N"), Tensor("dx", COMPLEX, "... N")],
    ref="v",
)  # fmt: skip


def vandermonde(v: Array, x: Array, L: int, *, conj_pairs: bool = True) -> Array:
    """Log-Vandermonde product of v, x (..., N) over l = 0..L-1; returns (..., L).

    ``out[..., l] = sum_n v[..., n] * exp(x[..., n] * l)``; with ``conj_pairs`` (S4D keeps
    one half of each conjugate pair) the real tensor ``2 * Re(...)``, else complex.
    complex64 or complex128; leading dimensions broadcast. Torch tensors give a
    differentiable result (in v and x); NumPy arrays give a NumPy array.
    """
    return VANDERMONDE(v, x, L, conj_pairs)


def vandermonde_transpose(u: Array, v: Array, x: Array) -> Array:
    """Transposed log-Vandermonde product; returns complex (..., N).

    ``out[..., n] = v[..., n] * sum_l u[..., l] * exp(x[..., n] * l)`` with u real or
    complex (..., L) of v's precision, v, x complex (..., N); leading dimensions broadcast.
    Torch tensors give a result differentiable in u, v and x.
    """
    return VANDERMONDE_TRANSPOSE(u, v, x)


if torch is not None:

    def _vandermonde_backward(ctx, grad):
        v, x = ctx.saved_tensors
        needs = list(ctx.needs_input_grad[:2])
        if not any(needs):
            return None, None, None, None
        dv, dx = torch.ops.ssmkit.vandermonde_backward(grad, v, x, ctx.conj_pairs, needs)
        return (sum_to(dv, v.shape) if needs[0] else None, sum_to(dx, x.shape) if needs[1] else None, None, None)

    def _transpose_backward(ctx, grad):
        u, v, x = ctx.saved_tensors
        needs = list(ctx.needs_input_grad[:3])
        if not any(needs):
            return None, None, None
        du, dv, dx = torch.ops.ssmkit.vandermonde_transpose_backward(grad, u, v, x, needs)
        return tuple(sum_to(g, t.shape) if need else None for g, t, need in zip((du, dv, dx), (u, v, x), needs))

    VANDERMONDE.register(_vandermonde_backward)
    VANDERMONDE_BACKWARD.register()
    VANDERMONDE_TRANSPOSE.register(_transpose_backward)
    VANDERMONDE_TRANSPOSE_BACKWARD.register()
