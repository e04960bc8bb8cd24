"""The long convolution of the S4 layers: ``y = causal_conv(u, k)`` along the length.

``fft_conv(u, k)``: u real (batch, L, H), k real (c, H, L) with c = 1 (causal) or 2
(bidirectional: the second kernel is anticausal). Differentiable in u and k. The CPU
kernel is an FFT over L whose elements are SIMD vectors of channels, reading u in its
(batch, L, H) layout (csrc/cpu/fft_conv.cpp). Torch tensors go through a custom op
(usable under torch.compile); NumPy arrays give NumPy results (forward only). The
meaning is defined by :func:`ssmkit.ops.reference.fft_conv`.
"""

from __future__ import annotations

from .. import _C
from ._common import torch
from ._spec import NEEDS, REAL, Op, Tensor

__all__ = ["fft_conv"]  # what ssmkit.ops exports

_U, _K = Tensor("u", REAL, "batch L H"), Tensor("k", REAL, "c H L")

FFT_CONV = Op("fft_conv", _C.fft_conv, [_U, _K], [Tensor("y", REAL, "batch L H")], ref="u", contiguous=True)

# du and dk; those not needed are empty.
FFT_CONV_BACKWARD = Op(
    "fft_conv_backward", _C.fft_conv_backward,
    [_U, _K, Tensor("gy", REAL, "batch L H"), NEEDS],
    [Tensor("du", REAL, "batch L H"), Tensor("dk", REAL, "c H L")],
    ref="u", contiguous=True,
)  # fmt: skip


def fft_conv(u, k):
    """Causal convolution of u (batch, L, H) with the per-channel kernels k (c, H, L).

    ``y[b, t, h] = sum_{s <= t} k[0, h, s] u[b, t - s, h]``, plus, when c = 2,
    ``sum_{s < L - 1 - t} k[1, h, s] u[b, t + 1 + s, h]`` (an anticausal kernel over the
    strictly later inputs, as the bidirectional S4 layer adds). float32 or float64.
    A NaN or Inf in u reaches every output of its channel, in its batch element and in
    the one it shares a transform with (elements 2i and 2i+1), as any FFT spreads it.
    """
    return FFT_CONV(u, k)


if torch is not None:

    def _backward(ctx, gy):
        u, k = ctx.saved_tensors
        needs = list(ctx.needs_input_grad[:2])
        if not any(needs):
            return None, None
        du, dk = torch.ops.ssmkit.fft_conv_backward(u, k, gy, needs)
        return du if needs[0] else None, dk if needs[1] else None

    FFT_CONV.register(_backward)
    FFT_CONV_BACKWARD.register()
