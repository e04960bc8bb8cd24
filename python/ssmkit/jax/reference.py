"""Pure-``jax.numpy`` references of every ssmkit primitive.

The same definitions as :mod:`ssmkit.ops.reference` (the torch ground truth), written in
``jnp``: each materialises whatever it needs. They work under ``jit``, ``grad`` and
``vmap``, in complex64 and, with x64 enabled, complex128, where they are the ground truth
the JAX kernels' values and gradients are tested against. Gradients follow JAX's
convention: for a real loss of a complex input, ``jax.grad`` gives the conjugate of what
torch's autograd gives. Lengths (``L``) and options (``conj_pairs``, ``method``) are
static arguments under ``jit``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

METHODS = ("zoh", "bilinear")


def cauchy(v, z, w, conj_pairs: bool = True):
    r"""Cauchy product, materialising the (..., L, N) matrix of terms.

    .. math:: \mathrm{out}[..., l] = \sum_n \frac{v[..., n]}{z[..., l] - w[..., n]}
              \;\Big[+ \frac{\overline{v[..., n]}}{z[..., l] - \overline{w[..., n]}}\Big]

    v, w: complex (..., N); z: complex (..., L); leading dimensions broadcast. Returns
    complex (..., L).
    """
    if conj_pairs:
        v = jnp.concatenate([v, jnp.conj(v)], -1)
        w = jnp.concatenate([w, jnp.conj(w)], -1)
    return (v[..., None, :] / (z[..., :, None] - w[..., None, :])).sum(-1)


def _exp_xl(x, L: int, exact_exponent: bool):
    """exp(x[..., n] * l) for l < L, materialised as (..., N, L); ``exact_exponent`` as in
    :func:`ssmkit.ops.reference._exp_xl` (complex128: x = x_hi + x_lo, x_hi in complex64,
    so that both products with l are exact)."""
    l = jnp.arange(L, dtype=x.real.dtype)
    if not exact_exponent:
        return jnp.exp(x[..., None] * l)
    if x.dtype != jnp.complex128 or L >= 2**29:
        raise ValueError(f"exact_exponent: needs complex128 x and L < 2^29, got {x.dtype} and L = {L}")
    x_hi = jax.lax.stop_gradient(x).astype(jnp.complex64).astype(jnp.complex128)
    return jnp.exp(x_hi[..., None] * l) * jnp.exp((x - x_hi)[..., None] * l)


def vandermonde(v, x, L: int, conj_pairs: bool = True, exact_exponent: bool = False):
    r"""Log-Vandermonde product, materialising the (..., N, L) matrix exp(x_n l).

    .. math:: \mathrm{out}[..., l] = \sum_n v[..., n]\, e^{x[..., n]\, l}, \quad l = 0..L-1

    v, x: complex (..., N); leading dimensions broadcast. With ``conj_pairs`` the real
    ``2 Re(...)``, else complex (..., L).
    """
    y = (v[..., None] * _exp_xl(x, L, exact_exponent)).sum(-2)
    return 2 * y.real if conj_pairs else y


def vandermonde_transpose(u, v, x, exact_exponent: bool = False):
    r"""Transposed log-Vandermonde product: :math:`\mathrm{out}[..., n] = v_n \sum_l u_l e^{x_n l}`.

    u: real or complex (..., L); v, x: complex (..., N); returns complex (..., N).
    """
    E = _exp_xl(x, u.shape[-1], exact_exponent)
    return v * (u[..., None, :] * E).sum(-1)


# ---- discretization and stepping ------------------------------------------------
# As in ssmkit.ops: A, B, dA, dB, dC complex (H, N) in conjugate-pair storage (y sums
# 2 Re(...)); dt, D real (H,); u, y real; state complex (batch, H, N).


def discretize(dt, A, B, method: str = "zoh"):
    r"""Discretize x' = A x + B u with step dt, per channel; returns (dA, dB), complex (H, N).

    zoh:      :math:`dA = e^{\Delta A}`, :math:`dB = (e^{\Delta A} - 1) A^{-1} B`
    bilinear: :math:`dA = (1 + \Delta A/2)/(1 - \Delta A/2)`, :math:`dB = \Delta B/(1 - \Delta A/2)`

    The naive formula: ZOH at A = 0 gives NaN here, where the kernel gives the limit dt B.
    """
    z = dt[..., None] * A
    if method == "zoh":
        dA = jnp.exp(z)
        return dA, (dA - 1) / A * B
    if method == "bilinear":
        w = 1 / (1 - z / 2)
        return (1 + z / 2) * w, dt[..., None] * B * w
    raise ValueError(f'method: expected "zoh" or "bilinear", got {method!r}')


def ssm_step(state, u, dA, dB, dC, D=None):
    r"""One step: :math:`x' = dA \odot x + dB\,u`, :math:`y = 2\,\mathrm{Re}\sum_n dC_n x'_n + D u`.

    state: complex (batch, H, N); u: real (batch, H). Returns (y (batch, H), x').
    """
    new = dA * state + dB * u[..., None]
    y = 2 * (dC * new).sum(-1).real
    if D is not None:
        y = y + D * u
    return y, new


def ssm_scan(u, dA, dB, dC, D=None, state=None):
    """ssm_step over a sequence (``lax.scan``): u (batch, L, H) -> (y (batch, L, H), final
    state (batch, H, N)); the state starts at `state` (zero when None)."""
    batch, _, H = u.shape
    x = jnp.zeros((batch, H, dA.shape[-1]), dA.dtype) if state is None else state

    def step(x, u_l):
        y, x = ssm_step(x, u_l, dA, dB, dC, D)
        return x, y

    x, y = jax.lax.scan(step, x, jnp.swapaxes(u, 0, 1))
    return jnp.swapaxes(y, 0, 1), x


def ssm_kernel(dA, dB, dC, L: int):
    r"""The convolution kernel of the diagonal SSM, :math:`K_l = 2\,\mathrm{Re}\sum_n dC_n dA_n^l dB_n`,
    l < L, real (H, L): with a zero start, ssm_scan(u) = causal_conv(u, K) + D u."""
    return vandermonde(dC * dB, jnp.log(dA), L)


def dplr_dense(dt, Lambda, P, B):
    r"""Dense bilinear discretization of the full (2N) DPLR system, explicit matrices.

    A = diag(Lambda_f) - P_f^T conj(P_f) with the conjugate pairs written out;
    dA = (I - dt/2 A)^{-1} (I + dt/2 A), dB = (I - dt/2 A)^{-1} dt B_f.
    dt: (H,); Lambda, B: (H, N); P: (H, r, N). Returns dA (H, 2N, 2N), dB (H, 2N).
    """
    Lf = jnp.concatenate([Lambda, jnp.conj(Lambda)], -1)
    Pf = jnp.concatenate([P, jnp.conj(P)], -1)
    Bf = jnp.concatenate([B, jnp.conj(B)], -1)
    A = jax.vmap(jnp.diag)(Lf) - jnp.einsum("hki,hkj->hij", Pf, jnp.conj(Pf))
    eye = jnp.eye(A.shape[-1], dtype=A.dtype)
    h = (dt / 2).astype(A.dtype)[:, None, None]
    lhs = eye - h * A
    dA = jnp.linalg.solve(lhs, eye + h * A)
    dB = jnp.linalg.solve(lhs, (dt.astype(A.dtype)[:, None] * Bf)[..., None])[..., 0]
    return dA, dB


def dplr_untruncated_C(dt, Lambda, P, C, L: int):
    """C~ (I - dA^L)^{-1} over the full state, stored half (H, N), as
    :func:`ssmkit.ops.reference.dplr_untruncated_C`: dense dA^L by repeated squaring, then a solve."""
    dA, _ = dplr_dense(dt, Lambda, P, jnp.zeros_like(Lambda))  # B does not enter dA
    eye = jnp.eye(dA.shape[-1], dtype=dA.dtype)
    lhs = jnp.swapaxes(eye - jnp.linalg.matrix_power(dA, L), -1, -2)
    full = jnp.concatenate([C, jnp.conj(C)], -1)[..., None]
    return jnp.linalg.solve(lhs, full)[..., 0][..., : C.shape[-1]]


def dplr_step(state, u, dt, Lambda, P, B, C, D=None):
    r"""One bilinear step of the DPLR system with dense matrices (:func:`dplr_dense`).

    The full state is [x, conj(x)]; returns (y, x'), y = 2 Re(sum_n C_n x'_n) + D u,
    x' the stored half of dA [x, conj x] + dB u. state: (batch, H, N); u: (batch, H).
    """
    dA, dB = dplr_dense(dt, Lambda, P, B)
    N = state.shape[-1]
    xf = jnp.concatenate([state, jnp.conj(state)], -1)
    new = (jnp.einsum("hij,bhj->bhi", dA, xf) + dB * u[..., None].astype(dB.dtype))[..., :N]
    y = 2 * (C * new).sum(-1).real
    if D is not None:
        y = y + D * u
    return y, new


# ---- the long convolution -------------------------------------------------------


def fft_conv(u, k):
    """Causal convolution along the length, per channel, by a zero-padded FFT, as
    :func:`ssmkit.ops.reference.fft_conv`: u real (batch, L, H), k real (c, H, L) with c = 1,
    or 2 for a second, anticausal kernel over the strictly later inputs."""
    L = u.shape[-2]
    if u.size == 0:  # no outputs (an empty transform has no length to pad to)
        return jnp.zeros_like(u)
    x = jnp.swapaxes(u, -1, -2)  # (batch, H, L)
    kf = k[0] if k.shape[0] == 1 else jnp.pad(k[0], ((0, 0), (0, L))) + jnp.pad(k[1][..., ::-1], ((0, 0), (L, 0)))
    n = 2 * L  # zero padding: a linear, not circular, convolution
    y = jnp.fft.irfft(jnp.fft.rfft(x, n=n) * jnp.fft.rfft(kf, n=n), n=n)[..., :L]
    return jnp.swapaxes(y, -1, -2).astype(u.dtype)
