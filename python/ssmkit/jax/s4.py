"""S4 and S4D for JAX: pure functions on a parameter pytree.

The same layer as :class:`ssmkit.nn.S4` (same parameters, same function): an SSM
convolution per channel, the skip D, the activation, dropout and an output linear layer
followed by a GLU, on (batch, length, d_model). The parameters are a dict of arrays
named as the torch layer's ``state_dict`` (``output_linear`` a nested dict), with the
complex ones stored as real (..., 2) arrays as there, so that optax, Flax and Equinox
can hold and train them as they are; the options are an :class:`S4Config` (hashable: a
static argument under ``jit``).

- :func:`init` (HiPPO initialisation, :mod:`ssmkit.hippo`), :func:`kernel` (the DPLR
  kernel from Cauchy products or the diagonal one from a Vandermonde product),
  :func:`apply` (the FFT convolution), :func:`scan` (from a start state, returning the
  end state), :func:`step_tensors` and :func:`step` (one time step, for generation);
- :func:`from_torch` and :func:`to_torch` convert a torch layer's parameters.

``config.backend``: ``"compiled"`` runs ssmkit's kernels (:mod:`ssmkit.jax`, XLA custom
calls), ``"reference"`` the pure-``jnp`` definitions (:mod:`ssmkit.jax.reference`). The
kernels' math is written out in :mod:`ssmkit.nn.ssm_kernel`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .. import hippo
from .._validate import positive_int, s4_options
from . import reference

BACKENDS = ("compiled", "reference")
ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # torch's nn.GELU: the exact erf form
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
    "identity": lambda x: x,
}


@dataclass(frozen=True)
class S4Config:
    """The options of a layer, as :class:`ssmkit.nn.S4`'s arguments (see there).

    l_max: DPLR only, required: the kernel length the learned C~ belongs to (inputs
    may be shorter). backend: ``"compiled"`` or ``"reference"``.
    """

    d_model: int
    d_state: int = 64
    mode: str = "dplr"
    init: str = "legs"
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    bidirectional: bool = False
    dropout: float = 0.0
    activation: str = "gelu"
    discretization: Optional[str] = None
    l_max: Optional[int] = None
    backend: str = "compiled"

    def __post_init__(self):
        positive_int("d_model", self.d_model)
        disc = s4_options(self.d_state, self.mode, self.init, self.dt_min, self.dt_max, self.dropout,
                          self.activation, self.discretization)  # fmt: skip
        object.__setattr__(self, "discretization", disc)
        if self.mode == "dplr":
            positive_int("l_max", self.l_max)
        elif self.l_max is not None:
            raise ValueError(f"l_max: only a DPLR layer has a kernel length, got l_max={self.l_max!r} with mode='diag'")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {', '.join(map(repr, BACKENDS))}, got {self.backend!r}")


# ---- primitives --------------------------------------------------------------------


class Primitives(NamedTuple):
    """The primitives a layer runs on, with the signatures of :mod:`ssmkit.ops`."""

    cauchy: Callable[..., Any]
    vandermonde: Callable[..., Any]
    discretize: Callable[..., Any]
    ssm_step: Callable[..., Any]
    ssm_scan: Callable[..., Any]
    dplr_setup: Callable[..., Any]  # (dt, Lambda, P, B) -> what dplr_step takes as factors
    dplr_step: Callable[..., Any]  # (state, u, factors, C, D) -> y, state'
    fft_conv: Callable[..., Any]  # (u (batch, L, H), k (c, H, L)) -> causal convolution (batch, L, H)
    untruncated_C: Callable[..., Any]  # (dt, Lambda, P, C~, L) -> the DPLR step's C = C~ (I - dA^L)^{-1}


def _dense_step(state, u, dense, C, D):
    """The reference DPLR step on the dense matrices of reference.dplr_dense."""
    dA, dB = dense
    N = state.shape[-1]
    new = (jnp.einsum("hij,bhj->bhi", dA, _full(state)) + dB * u[..., None].astype(dB.dtype))[..., :N]
    return 2 * (C * new).sum(-1).real + D * u, new


REFERENCE = Primitives(reference.cauchy, reference.vandermonde, reference.discretize, reference.ssm_step,
                       reference.ssm_scan, reference.dplr_dense, _dense_step, reference.fft_conv,
                       reference.dplr_untruncated_C)  # fmt: skip


def dplr_setup(dt, Lambda, P, B):
    """The factors of :func:`ssmkit.jax.dplr_step`: :func:`ssmkit.ops.dplr_setup` in jnp
    (its module docstring derives them). dt (H,); Lambda, B (H, N); P (H, r, N)."""
    from ..ops.dplr import dplr_factors

    return dplr_factors(jnp, dt, Lambda, P, B)


def primitives(backend: str) -> Primitives:
    if backend == "reference":
        return REFERENCE
    from . import ops  # the custom calls; imported here, once the package is initialised

    return Primitives(ops.cauchy, ops.vandermonde, ops.discretize, ops.ssm_step, ops.ssm_scan, dplr_setup,
                      ops.dplr_step, ops.fft_conv, ops.dplr_untruncated_C)  # fmt: skip


# ---- parameters ----------------------------------------------------------------------


def _complex(x):
    """A real (..., 2) array as complex (...,)."""
    return jax.lax.complex(x[..., 0], x[..., 1])


def _pairs(z):
    return jnp.stack([z.real, z.imag], -1)


def _full(x):
    """Conjugate pairs written out along the last dimension: [x, conj x]."""
    return jnp.concatenate([x, jnp.conj(x)], -1)


def init(key, config: S4Config, dtype=jnp.float32) -> dict:
    """Parameters drawn as :class:`ssmkit.nn.S4` draws them: the HiPPO Lambda, B (and P),
    log dt uniform in [log dt_min, log dt_max], C complex normal, D normal, the output
    linear layer uniform in +-1/sqrt(d_model). Returns the parameter dict (real arrays)."""
    H, N, c = config.d_model, config.d_state // 2, 2 if config.bidirectional else 1
    if config.mode == "dplr":
        Lambda, P, B = hippo.legs_nplr(config.d_state)
    else:
        Lambda, B = hippo.diag_init(config.init, config.d_state)
    k_dt, k_c, k_d, k_w, k_b = jax.random.split(key, 5)
    lo, hi = math.log(config.dt_min), math.log(config.dt_max)
    bound = 1 / math.sqrt(H)
    params = {
        "log_dt": jax.random.uniform(k_dt, (H,), dtype, lo, hi),
        "Lambda_real_log": jnp.broadcast_to(np.log(-Lambda.real), (H, N)).astype(dtype),
        "Lambda_imag": jnp.broadcast_to(Lambda.imag, (H, N)).astype(dtype),
        "B": jnp.broadcast_to(np.stack([B.real, B.imag], -1), (H, N, 2)).astype(dtype),
        "C": jax.random.normal(k_c, (c, H, N, 2), dtype) * math.sqrt(0.5),  # E|C|^2 = 1
        "D": jax.random.normal(k_d, (H,), dtype),
        "output_linear": {
            "weight": jax.random.uniform(k_w, (2 * H, H), dtype, -bound, bound),
            "bias": jax.random.uniform(k_b, (2 * H,), dtype, -bound, bound),
        },
    }
    if config.mode == "dplr":
        params["P"] = jnp.broadcast_to(np.stack([P.real, P.imag], -1), (H, 1, N, 2)).astype(dtype)
    return params


def _ssm(params):
    """dt (H,), Lambda (H, N), P (H, 1, N) or None, B (H, N), C (c, H, N), complex where complex."""
    Lambda = jax.lax.complex(-jnp.exp(params["Lambda_real_log"]), params["Lambda_imag"])
    P = _complex(params["P"]) if "P" in params else None
    return jnp.exp(params["log_dt"]), Lambda, P, _complex(params["B"]), _complex(params["C"])


def from_torch(layer) -> tuple[dict, S4Config]:
    """The parameters (as jnp arrays of the layer's dtype) and the options of a torch
    :class:`ssmkit.nn.S4`. A DPLR layer must have its kernel length set (``l_max`` or
    one forward)."""
    if layer.mode == "dplr" and layer.l_kernel is None:
        raise ValueError("layer: the DPLR layer's kernel length is not set yet; give l_max or run forward once")
    params: dict = {}
    for name, t in layer.state_dict().items():
        if name == "_extra_state":
            continue
        *outer, last = name.split(".")
        node = params
        for part in outer:
            node = node.setdefault(part, {})
        node[last] = jnp.asarray(t.detach().cpu().numpy())
    activation = next(k for k, v in _torch_activations().items() if isinstance(layer.activation, v))
    config = S4Config(layer.d_model, layer.d_state, mode=layer.mode, init=layer.init, bidirectional=layer.bidirectional,
                      dropout=layer.dropout.p, activation=activation, discretization=layer.discretization,
                      l_max=layer.l_kernel)  # fmt: skip
    return params, config


def _flat(params: dict, prefix: str = ""):
    for name, value in params.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{name}.")
        else:
            yield prefix + name, value


def to_torch(params: dict, config: S4Config, layer) -> None:
    """Loads the parameters into a torch :class:`ssmkit.nn.S4` built with the same options
    (its DPLR kernel length becomes config.l_max)."""
    import torch

    state = {name: torch.from_numpy(np.array(value)) for name, value in _flat(params)}
    layer.load_state_dict(state | {"_extra_state": {"l_kernel": config.l_max}})


def _torch_activations():
    from ..nn.s4 import ACTIVATIONS

    return ACTIVATIONS


# ---- SSM kernels (the math of ssmkit.nn.ssm_kernel, in jnp) ---------------------------


def _bilinear_points(k: np.ndarray, L: int, dtype):
    """zhat_k = 2i tan(pi k / L), the bilinear map of z_k = exp(-2 pi i k / L) (float64, rounded once)."""
    return jnp.asarray(2j * np.tan(np.pi * k / L), dtype)


def _woodbury_inner(k10, k11):
    """(I + k11)^{-1} k10 at each frequency: k10 (..., r, F), k11 (..., r, r, F) -> (..., r, F)."""
    if k11.shape[-2] == 1:
        return k10 / (1 + k11[..., 0, :, :])
    eye = jnp.eye(k11.shape[-2], dtype=k11.dtype)
    x = jnp.linalg.solve(eye + jnp.moveaxis(k11, -1, -3), jnp.moveaxis(k10, -1, -2)[..., None])
    return jnp.moveaxis(x[..., 0], -2, -1)


def dplr_kernel(prims: Primitives, dt, Lambda, P, B, C, L: int):
    """The DPLR kernel K_l = C dA^l dB, l < L, from C~ = C (I - dA^L): four Cauchy products,
    Woodbury, an inverse FFT (:mod:`ssmkit.nn.ssm_kernel` derives it). dt (H,), Lambda
    (H, N), P (H, r, N), C (c, H, N); B (..., H, N) may carry batch dimensions. Returns
    real (..., c, H, L)."""
    c, H, N = C.shape
    r = P.shape[-2]
    batch = B.shape[:-2]
    inner = L // 2 if L % 2 == 0 else L // 2 + 1  # the rfft bins without the Nyquist bin
    zhat = _bilinear_points(np.arange(inner), L, Lambda.dtype)
    w = (dt[:, None] * Lambda)[:, None, :]  # (H, 1, N): the Cauchy nodes dt Lambda
    left = jnp.concatenate([jnp.swapaxes(C, 0, 1), jnp.conj(P)], -2)  # (H, c + r, N): C~ and P^*
    right = jnp.concatenate([B[..., None, :], jnp.broadcast_to(P, (*batch, H, r, N))], -2)  # (..., H, 1 + r, N)
    v = (left[:, :, None, :] * right[..., None, :, :]).reshape(*batch, H, (c + r) * (1 + r), N)
    k = prims.cauchy(v * dt[:, None, None], zhat[None, :], w)  # (..., H, M, F)
    k = k.reshape(*k.shape[:-2], c + r, 1 + r, inner)
    k00, k01, k10, k11 = k[..., :c, 0, :], k[..., :c, 1:, :], k[..., c:, 0, :], k[..., c:, 1:, :]
    low_rank = (k01 * _woodbury_inner(k10, k11)[..., None, :, :]).sum(-2)
    at_roots = (k00 - low_rank) * (1 + zhat / 2)  # (..., H, c, F)
    if L % 2 == 0:  # Nyquist bin: dt Re sum_n C~_n B_n
        nyquist = dt[:, None] * (jnp.swapaxes(C, 0, 1) * B[..., None, :]).sum(-1).real
        at_roots = jnp.concatenate([at_roots, nyquist.astype(at_roots.dtype)[..., None]], -1)
    return jnp.swapaxes(jnp.fft.irfft(at_roots, n=L), -3, -2)


def dplr_state_sum(prims: Primitives, dt, Lambda, P, B, u):
    """The aliased state forwarding S of a DPLR system after u (real (batch, H, L)), stored
    half, as one Cauchy product over the L frequencies (see
    :func:`ssmkit.nn.ssm_kernel.dplr_state_sum`). Returns complex (batch, H, N)."""
    L = u.shape[-1]
    H, r, N = P.shape
    inner = np.array([k for k in range(L) if 2 * k != L])  # every frequency but z = -1
    zhat = _bilinear_points(inner, L, Lambda.dtype)
    dtw = dt[:, None] * Lambda
    v = (jnp.conj(P)[:, :, None, :] * jnp.concatenate([B[:, None, :], P], -2)[:, None, :, :]).reshape(H, -1, N)
    k = prims.cauchy(v * dt[:, None, None], zhat[None, :], dtw[:, None, :]).reshape(H, r, 1 + r, len(inner))
    x = _woodbury_inner(k[..., 0, :], k[..., 1:, :])  # (H, r, F)
    z = jnp.asarray(np.exp(-2j * np.pi * np.arange(L) / L), Lambda.dtype)
    a_all = z * jnp.fft.fft(u.astype(Lambda.dtype), axis=-1) / L
    a = a_all[..., inner] * (1 + zhat / 2)  # (batch, H, F)
    terms = jnp.concatenate([a[..., None, :], a[..., None, :] * x], -2)  # (batch, H, 1 + r, F)
    T = -prims.cauchy(terms, dtw[:, None, :], zhat, conj_pairs=False)  # (batch, H, 1 + r, N)
    S = dt[:, None] * (B * T[..., 0, :] - (P * T[..., 1:, :]).sum(-2))
    if L % 2 == 0:  # z = -1: F(-1) = dt B / 2
        S = S + dt[:, None] * B * a_all[..., L // 2, None] / 2
    return S


def diag_kernel(prims: Primitives, dt, Lambda, B, C, L: int, method: str):
    """The diagonal kernel K_l = 2 Re sum_n C_n dB_n dA_n^l, l < L: real (c, H, L)."""
    dA, dB = prims.discretize(dt, Lambda, B, method=method)
    log_dA = dt[:, None] * Lambda if method == "zoh" else jnp.log(dA)
    return prims.vandermonde(C * dB, log_dA, L)


def kernel(params: dict, L: int, config: S4Config):
    """The convolution kernel K_l = C dA^l dB for l < L: real (c, d_model, L)."""
    L = positive_int("L", L)
    prims = primitives(config.backend)
    dt, Lambda, P, B, C = _ssm(params)
    if config.mode == "diag":
        assert config.discretization is not None  # S4Config fills it in
        return diag_kernel(prims, dt, Lambda, B, C, L, config.discretization)
    lk = _check_length(L, config)
    return dplr_kernel(prims, dt, Lambda, P, B, C, lk)[..., :L]


def _check_length(L, config) -> int:
    """The DPLR kernel length l_max, checked against an input of length L."""
    assert config.l_max is not None  # S4Config requires it for a DPLR layer
    if L > config.l_max:
        raise ValueError(f"x: expected a length of at most l_max = {config.l_max} (the DPLR kernel length of C~), "
                         f"got {L}")  # fmt: skip
    return config.l_max


# ---- the layer -------------------------------------------------------------------------


def _check_input(params, x, shape: str, dims: int, config):
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"x: expected an array of shape {shape}, got {type(x).__name__}")
    if x.ndim != dims or x.shape[-1] != config.d_model:
        raise ValueError(f"x: expected shape {shape} with d_model = {config.d_model}, got {tuple(x.shape)}")
    if x.dtype != params["log_dt"].dtype:
        raise TypeError(f"x: expected {params['log_dt'].dtype} like the layer's parameters, got {x.dtype}")


def _check_state(params, state, batch: int, config):
    if config.bidirectional:
        raise ValueError("state: a bidirectional layer has no state (it sees the future); use bidirectional=False")
    shape = (batch, config.d_model, config.d_state // 2)
    dtype = jnp.result_type(params["log_dt"].dtype, jnp.complex64)
    if not hasattr(state, "shape") or tuple(state.shape) != shape or state.dtype != dtype:
        got = f"{tuple(state.shape)} {state.dtype}" if hasattr(state, "shape") else type(state).__name__
        raise ValueError(f"state: expected a {dtype} array of shape {shape} (see default_state), got {got}")


def default_state(config: S4Config, batch: int, dtype=jnp.complex64):
    """The zero state, complex (batch, d_model, d_state/2)."""
    positive_int("batch", batch)
    if config.bidirectional:
        raise ValueError("a bidirectional layer has no state (it sees the future); use bidirectional=False")
    return jnp.zeros((batch, config.d_model, config.d_state // 2), dtype)


def _output(params, y, config: S4Config, key):
    """activation, dropout (when key is given), output linear + GLU on (..., H)."""
    y = ACTIVATIONS[config.activation](y)
    if config.dropout and key is not None:
        keep = jax.random.bernoulli(key, 1 - config.dropout, y.shape)
        y = jnp.where(keep, y / (1 - config.dropout), 0)
    y = y @ params["output_linear"]["weight"].T + params["output_linear"]["bias"]
    a, gate = jnp.split(y, 2, -1)
    return a * jax.nn.sigmoid(gate)


def _convolve(prims: Primitives, x, K, D):
    """The causal (or, with two kernels, bidirectional) convolution of x (batch, L, H) with
    K (c, H, L), plus the skip D x as the causal kernel's lag 0 (one convolution, as nn.S4)."""
    return prims.fft_conv(x, K.at[0, :, 0].add(D))


def apply(params: dict, x, config: S4Config, *, key=None):
    """The layer by convolution: x (batch, L, d_model) -> y (batch, L, d_model).

    key: a PRNG key for dropout (training); None applies none (evaluation)."""
    _check_input(params, x, "(batch, length, d_model)", 3, config)
    if x.shape[1] == 0:
        return _output(params, x, config, key)
    y = _convolve(primitives(config.backend), x, kernel(params, x.shape[1], config), params["D"])
    return _output(params, y, config, key)


def scan(params: dict, x, state, config: S4Config, *, key=None):
    """The layer from a start state: x (batch, L, d_model), state -> (y, the state after x).

    Differentiable. S4D runs the fused scan; S4 the convolution plus the start state's
    response, and the end state from one more Cauchy product and dense (2N x 2N) powers
    dA^L (as :meth:`ssmkit.nn.S4.forward` with a state)."""
    _check_input(params, x, "(batch, length, d_model)", 3, config)
    _check_state(params, state, x.shape[0], config)
    if x.shape[1] == 0:
        return _output(params, x, config, key), state
    prims = primitives(config.backend)
    dt, Lambda, P, B, C = _ssm(params)
    D = params["D"]
    if config.mode == "diag":
        dA, dB = prims.discretize(dt, Lambda, B, method=config.discretization)
        y, end = prims.ssm_scan(x, dA, dB, C[0], D, state)
        return _output(params, y, config, key), end
    L, N = x.shape[1], state.shape[-1]
    lk = _check_length(L, config)
    y = _convolve(prims, x, dplr_kernel(prims, dt, Lambda, P, B, C, lk)[..., :L], D)
    dA, _ = reference.dplr_dense(dt, Lambda, P, B)
    power_k = jnp.linalg.matrix_power(dA, lk)
    eye = jnp.eye(2 * N, dtype=dA.dtype)
    if L == lk:
        power, C_L = power_k, C[0]
    else:  # C~ for length L: C (I - dA^L) with C = C~_lk (I - dA^lk)^{-1}
        power = jnp.linalg.matrix_power(dA, L)
        C_true = jnp.linalg.solve(jnp.swapaxes(eye - power_k, -1, -2), _full(C[0])[..., None])[..., 0]
        C_L = jnp.einsum("hi,hij->hj", C_true, eye - power)[..., :N]
    # the start state's response: the kernel with B' = (I + dt/2 A) x0 / dt (see nn.S4._dplr_with_state)
    s = 2 * (jnp.conj(P) * state[..., None, :]).sum(-1).real  # P^* x0 over the full state: (batch, H, r)
    B_start = state / dt[:, None] + (Lambda * state - (P * s[..., None]).sum(-2)) / 2
    y = y + jnp.swapaxes(dplr_kernel(prims, dt, Lambda, P, B_start, C_L[None], L)[..., 0, :, :], -1, -2)
    S = dplr_state_sum(prims, dt, Lambda, P, B, jnp.swapaxes(x, -1, -2))
    end = jnp.einsum("hij,bhj->bhi", power, _full(state)) + jnp.einsum("hij,bhj->bhi", eye - power, _full(S))
    return _output(params, y, config, key), end[..., :N]


def step_tensors(params: dict, config: S4Config):
    """What :func:`step` needs, computed once per parameter values: S4D (dA, dB, C); S4 (the
    ``dplr_setup`` factors, C), where C = C~ (I - dA^l_max)^{-1} is found in double
    precision from concrete parameters (call it outside ``jit``)."""
    prims = primitives(config.backend)
    dt, Lambda, P, B, C = _ssm(params)
    if config.mode == "diag":
        return prims.discretize(dt, Lambda, B, method=config.discretization) + (C[0],)
    with jax.enable_x64(True):
        d = [jnp.asarray(np.asarray(t).astype(np.complex128 if jnp.iscomplexobj(t) else np.float64))
             for t in (dt, Lambda, P, C[0])]  # fmt: skip
        C_step = np.asarray(prims.untruncated_C(*d, config.l_max))
    return prims.dplr_setup(dt, Lambda, P, B), jnp.asarray(C_step.astype(C.dtype))


def step(tensors, params: dict, x, state, config: S4Config):
    """One time step: x (batch, d_model), state -> (y (batch, d_model), next state), from
    :func:`step_tensors`. Equal to :func:`apply` on a sequence, one element at a time.
    Inference only (the step kernels have no gradient)."""
    _check_input(params, x, "(batch, d_model)", 2, config)
    _check_state(params, state, x.shape[0], config)
    prims = primitives(config.backend)
    if config.mode == "diag":
        dA, dB, C = tensors
        y, new = prims.ssm_step(state, x, dA, dB, C, params["D"])
    else:
        factors, C = tensors
        y, new = prims.dplr_step(state, x, factors, C, params["D"])
    return _output(params, y, config, None), new
