"""The Cauchy product: ``out[..., l] = sum_n v_n / (z_l - w_n)`` (+ conjugate pairs).

S4's DPLR kernel evaluates its generating function at L frequencies through this
product. ``cauchy`` takes torch tensors (a custom op with autograd, usable under
torch.compile) or NumPy arrays (forward only). The meaning is defined by
:func:`ssmkit.ops.reference.cauchy`.
"""

from __future__ import annotations

from .. import _C
from ._common import Array, sum_to, torch
from ._spec import COMPLEX, NEEDS, Flag, Op, Tensor

__all__ = ["cauchy"]  # what ssmkit.ops exports

_V, _Z, _W = Tensor("v", COMPLEX, "... N"), Tensor("z", COMPLEX, "... L"), Tensor("w", COMPLEX, "... N")

CAUCHY = Op("cauchy", _C.cauchy, [_V, _Z, _W, Flag("conj_pairs")], [Tensor("out", COMPLEX, "... L")])

# Gradients at the full broadcast shape (summed back by the caller); those not needed are empty.
CAUCHY_BACKWARD = Op(
    "cauchy_backward", _C.cauchy_backward,
    [Tensor("grad", COMPLEX, "... L"), _V, _Z, _W, Flag("conj_pairs"), NEEDS],
    [Tensor("dv", COMPLEX, "... N"), Tensor("dz", COMPLEX, "... L"), Tensor("dw", COMPLEX, "... N")],
    ref="v",
)  # fmt: skip


def cauchy(v: Array, z: Array, w: Array, *, conj_pairs: bool = True) -> Array:
    """Cauchy product of v, w (..., N) with the points z (..., L); returns (..., L).

    ``out[..., l] = sum_n v[..., n] / (z[..., l] - w[..., n])``, plus
    ``conj(v[..., n]) / (z[..., l] - conj(w[..., n]))`` when ``conj_pairs`` (S4 keeps
    one half of each conjugate pair). complex64 or complex128; leading dimensions
    broadcast. Torch tensors give a differentiable result (in v, z and w); NumPy
    arrays give a NumPy array.
    """
    return CAUCHY(v, z, w, conj_pairs)


if torch is not None:

    def _backward(ctx, grad):
        v, z, w = ctx.saved_tensors
        needs = list(ctx.needs_input_grad[:3])
        if not any(needs):
            return None, None, None, None
        dv, dz, dw = torch.ops.ssmkit.cauchy_backward(grad, v, z, w, ctx.conj_pairs, needs)
        return (
            sum_to(dv, v.shape) if needs[0] else None,
            sum_to(dz, z.shape) if needs[1] else None,
            sum_to(dw, w.shape) if needs[2] else None,
            None,
        )

    CAUCHY.register(_backward)
    CAUCHY_BACKWARD.register()
