"""The Cauchy product: ``out[..., l] = sum_n v_n / (z_l - w_n)`` (+ conjugate pairs).

S4's DPLR kernel evaluates its generating function at L frequencies through this
product. ``cauchy`` takes torch tensors (a custom op with autograd, usable under
torch.compile) or NumPy arrays (forward only). The meaning is defined by
:func:`ssmkit.ops.reference.cauchy`.
"""

from __future__ import annotations

import numpy as np

from .. import _C
from ._common import (
    array_module, array_stream, as_array, batch_shape, check_tensors, device_of, plain, run_core, sum_to, torch,
    use_torch,
)

_LAYOUT = {"v": "(..., N)", "z": "(..., L)", "w": "(..., N)"}


def _out_shape(v_shape, z_shape, w_shape) -> tuple:
    batch = batch_shape("cauchy", {"v": v_shape, "z": z_shape, "w": w_shape}, _LAYOUT)
    return batch + (z_shape[-1],)


def cauchy(v, z, w, *, conj_pairs: bool = True):
    """Cauchy product of v, w (..., N) with the points z (..., L); returns (..., L).

    ``out[..., l] = sum_n v[..., n] / (z[..., l] - w[..., n])``, plus
    ``conj(v[..., n]) / (z[..., l] - conj(w[..., n]))`` when ``conj_pairs`` (S4 keeps
    one half of each conjugate pair). complex64 or complex128; leading dimensions
    broadcast. Torch tensors give a differentiable result (in v, z and w); NumPy
    arrays give a NumPy array.
    """
    if use_torch("cauchy", {"v": v, "z": z, "w": w}):
        return torch.ops.ssmkit.cauchy(v, z, w, bool(conj_pairs))
    v, z, w = as_array("v", v), as_array("z", z), as_array("w", w)
    xp = array_module(v)  # CuPy arrays get a CuPy output on their device
    with device_of(v):
        out = xp.empty(_out_shape(np.shape(v), np.shape(z), np.shape(w)), dtype=getattr(v, "dtype", None))
    _C.cauchy(v, z, w, out, bool(conj_pairs), stream=array_stream(v))
    return out


if torch is not None:

    @torch.library.custom_op("ssmkit::cauchy", mutates_args=())
    def _cauchy_op(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor, conj_pairs: bool) -> torch.Tensor:
        out = v.new_empty(_out_shape(v.shape, z.shape, w.shape))
        run_core(_C.cauchy, v, plain(v), plain(z), plain(w), out, conj_pairs)
        return out

    @_cauchy_op.register_fake
    def _(v, z, w, conj_pairs):
        check_tensors({"v": v, "z": z, "w": w})
        return v.new_empty(_out_shape(v.shape, z.shape, w.shape))

    @torch.library.custom_op("ssmkit::cauchy_backward", mutates_args=())
    def _cauchy_backward_op(
        grad: torch.Tensor, v: torch.Tensor, z: torch.Tensor, w: torch.Tensor, conj_pairs: bool, needs: list[bool]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dv, dz, dw = _backward_buffers(grad, v, z, w, needs)
        run_core(
            _C.cauchy_backward, v, plain(grad), plain(v), plain(z), plain(w),
            dv if needs[0] else None, dz if needs[1] else None, dw if needs[2] else None, conj_pairs,
        )  # fmt: skip
        return dv, dz, dw

    def _backward_buffers(grad, v, z, w, needs):
        # Gradients at the full broadcast shape; those not needed are empty.
        shape = _out_shape(v.shape, z.shape, w.shape)
        batch, n = shape[:-1], v.shape[-1]
        dv = v.new_empty(batch + (n,) if needs[0] else (0,))
        dz = v.new_empty(shape if needs[1] else (0,))
        dw = v.new_empty(batch + (n,) if needs[2] else (0,))
        return dv, dz, dw

    @_cauchy_backward_op.register_fake
    def _(grad, v, z, w, conj_pairs, needs):
        check_tensors({"v": v, "z": z, "w": w, "grad": grad})
        return _backward_buffers(grad, v, z, w, needs)

    def _setup_context(ctx, inputs, output):
        v, z, w, conj_pairs = inputs
        ctx.save_for_backward(v, z, w)
        ctx.conj_pairs = conj_pairs

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

    _cauchy_op.register_autograd(_backward, setup_context=_setup_context)
