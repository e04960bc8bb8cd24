"""Which implementation of the primitives an S4 layer runs on.

The primitives are the ops an S4 layer is built from (Cauchy, Vandermonde,
discretization, stepping, the long convolution). ``"compiled"``: ssmkit's kernels (:mod:`ssmkit.ops`).
``"reference"``: the pure-PyTorch definitions (:mod:`ssmkit.ops.reference`), the same math
materialised naively. ``"auto"``: the compiled primitive where this build has a kernel for
the tensors' device (as ``_C.build_info()`` reports it), else the reference, with one
warning per primitive and device.
"""

from __future__ import annotations

import warnings

import torch

from .. import _C, ops
from ..ops import reference

BACKENDS = ("auto", "compiled", "reference")


def check_backend(backend) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    return backend


# The layers convolve on the GPU with torch.fft (cuFFT): the CUDA fft_conv kernel
# (csrc/cuda/fft_conv.cu) is the defining direct sum, O(L^2), a correct twin of the CPU
# kernel but not yet a fast one.

# ---- the reference DPLR step with cached dense matrices ------------------------------


def _dense_setup(dt, Lambda, P, B):
    return reference.dplr_dense(dt, Lambda, P, B)  # dA (H, 2N, 2N), dB (H, 2N)


def _dense_step(state, u, dense, C, D):
    dA, dB = dense
    N = state.shape[-1]
    full = torch.cat([state, state.conj()], -1)
    new = (torch.einsum("hij,bhj->bhi", dA, full) + dB * u.unsqueeze(-1).to(dB.dtype))[..., :N]
    y = 2 * (C * new).sum(-1).real + D * u
    return y, new


def _compiled_untruncated_C(dt, Lambda, P, C, L):
    """The kernel (inference only), or where a gradient is wanted the same two Cauchy
    products composed with torch ops (differentiable)."""
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (dt, Lambda, P, C))):
        return ops.dplr_untruncated_C(dt, Lambda, P, C, L)
    from .ssm_kernel import dplr_untruncated_C  # imported here: ssm_kernel imports this module

    return dplr_untruncated_C(COMPILED, dt, Lambda, P, C, L)


class Primitives:
    """The primitives of one implementation, with the signatures of :mod:`ssmkit.ops`."""

    def __init__(self, name, cauchy, vandermonde, discretize, ssm_step, ssm_scan, dplr_setup, dplr_step, fft_conv,
                 untruncated_C):  # fmt: skip
        self.name = name
        self.cauchy = cauchy  # (v, z, w, conj_pairs=True) -> Cauchy product
        self.vandermonde = vandermonde  # (v, x, L) -> 2 Re sum v exp(x l)
        self.discretize = discretize  # (dt, A, B, method) -> dA, dB
        self.ssm_step = ssm_step  # (state, u, dA, dB, dC, D) -> y, state'
        self.ssm_scan = ssm_scan  # (u, dA, dB, dC, D, state) -> y, final state
        self.dplr_setup = dplr_setup  # (dt, Lambda, P, B) -> factors for dplr_step
        self.dplr_step = dplr_step  # (state, u, factors, C, D) -> y, state'
        self.fft_conv = fft_conv  # (u (batch, L, H), k (c, H, L)) -> causal convolution (batch, L, H)
        self.untruncated_C = untruncated_C  # (dt, Lambda, P, C~, L) -> the DPLR step's C = C~ (I - dA^L)^{-1}


COMPILED = Primitives(
    "compiled",
    cauchy=lambda v, z, w, conj_pairs=True: ops.cauchy(v, z, w, conj_pairs=conj_pairs),
    vandermonde=lambda v, x, L: ops.vandermonde(v, x, L),
    discretize=lambda dt, A, B, method: ops.discretize(dt, A, B, method=method),
    ssm_step=ops.ssm_step,
    ssm_scan=ops.ssm_scan,
    dplr_setup=ops.dplr_setup,
    dplr_step=ops.dplr_step,
    fft_conv=lambda u, k: ops.fft_conv(u, k) if u.device.type == "cpu" else reference.fft_conv(u, k),
    untruncated_C=_compiled_untruncated_C,
)

REFERENCE = Primitives(
    "reference",
    cauchy=reference.cauchy,
    vandermonde=reference.vandermonde,
    discretize=reference.discretize,
    ssm_step=reference.ssm_step,
    ssm_scan=reference.ssm_scan,
    dplr_setup=_dense_setup,
    dplr_step=_dense_step,
    fft_conv=reference.fft_conv,
    untruncated_C=reference.dplr_untruncated_C,
)

PRIMITIVES = ("cauchy", "vandermonde", "discretize", "ssm_step", "ssm_scan", "dplr_setup", "dplr_step", "fft_conv",
              "untruncated_C")
_chosen: dict[str, Primitives] = {}  # device -> the "auto" primitives there
_warned: set[str] = set()  # devices already warned about


def compiled_primitives(device: torch.device) -> tuple[str, ...]:
    """The primitives this build has compiled kernels for on `device`, from the build's own
    report: the CPU kernels are always built, the CUDA ones when ``cuda_compiled``."""
    if device.type == "cpu" or (device.type == "cuda" and _C.build_info()["cuda_compiled"]):
        return PRIMITIVES
    return ()


def primitives(backend: str, device: torch.device) -> Primitives:
    """The implementation an S4 layer with `backend` uses for tensors on `device`."""
    if backend == "reference":
        return REFERENCE
    if backend == "compiled" or device.type == "cpu":  # the CPU kernels are always built
        return COMPILED
    key = str(device)
    if key not in _chosen:
        _chosen[key] = _auto(key, compiled_primitives(device))
    return _chosen[key]


def _auto(key: str, compiled: tuple[str, ...]) -> Primitives:
    missing = [name for name in PRIMITIVES if name not in compiled]
    if not missing:
        return COMPILED
    if key not in _warned:
        _warned.add(key)
        warnings.warn(
            f"ssmkit: no compiled kernel for {', '.join(missing)} on {key} in this build; the S4 layers "
            f"fall back to their pure-PyTorch reference there (slower, more memory). Build ssmkit with "
            f"CUDA (SSMKIT_CUDA=ON) for the GPU kernels.",
            stacklevel=4,
        )
    mixed = {name: getattr(REFERENCE if name in missing else COMPILED, name) for name in PRIMITIVES}
    if "dplr_setup" in missing or "dplr_step" in missing:  # the step's cache and step go together
        mixed["dplr_setup"], mixed["dplr_step"] = REFERENCE.dplr_setup, REFERENCE.dplr_step
    return Primitives("auto", **mixed)
