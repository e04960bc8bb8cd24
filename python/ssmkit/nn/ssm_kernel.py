r"""SSM convolution kernels and the state algebra of S4 (DPLR) and S4D (diagonal).

Conventions (as in :mod:`ssmkit.ops`): dt real (H,); Lambda, B complex (H, N) and P
complex (H, r, N) with conjugate-pair storage (N stored values stand for a real system of
size 2N); C complex (c, H, N), one row per kernel channel (two when bidirectional). With
a state x_l = dA x_{l-1} + dB u_l and output y_l = 2 Re(sum_n C_n x_l[n]) (+ D u_l) the
convolution kernel is K_l = C dA^l dB (full 2N sums), and y = K * u for a zero start.

DPLR (S4): A = diag(Lambda) - P P^* (Q = conj P, tied), bilinear discretization. The
kernel is never built from powers of dA. Its generating function at the L-th roots of
unity z_k = exp(-2 pi i k / L) is

    K^(z) = sum_{l<L} K_l z^l = C~ (I - dA z)^{-1} dB = 2/(1+z) C~ (g(z) - A)^{-1} B,
    g(z) = (2/dt) (1-z)/(1+z),           C~ = C (I - dA^L),

and with R = diag(1/(g - Lambda)) the Woodbury identity turns (g - A)^{-1} into
R - R P (I + P^* R P)^{-1} P^* R: four Cauchy products k00 = C~ R B, k01 = C~ R P,
k10 = P^* R B, k11 = P^* R P give K^ = 2/(1+z) (k00 - k01 (I + k11)^{-1} k10), and an
inverse FFT gives K_l for l < L. As S4 does, the layer learns C~ (for one kernel length)
rather than C. Writing dt (g - Lambda) = zhat - dt Lambda with zhat = 2 (1-z)/(1+z) =
2i tan(pi k/L) and 2/(1+z) = 1 + zhat/2, the Cauchy points are shared by every channel.
At z = -1 (the Nyquist bin of an even L) g is infinite; there K^(-1) = C~ dt B / 2 exactly.

Diagonal (S4D): K_l = 2 Re sum_n C_n dB_n exp(l log dA_n), a log-Vandermonde product.
"""

from __future__ import annotations

import math

import torch

from .backend import Primitives


def _points(L: int, freqs: int, dtype: torch.dtype, device) -> torch.Tensor:
    """zhat_k = 2i tan(pi k / L) for k < freqs (the bilinear map of z_k; no k = L/2)."""
    k = torch.arange(freqs, dtype=torch.float64, device=device)
    tan = torch.tan(math.pi * k / L)  # in float64, then rounded once
    return torch.complex(torch.zeros_like(tan), 2 * tan).to(dtype)


def _woodbury_inner(k10, k11):
    """(I + k11)^{-1} k10 at each frequency: k10 (..., r, F), k11 (..., r, r, F) -> (..., r, F)."""
    if k11.shape[-2] == 1:
        return k10 / (1 + k11[..., 0, :, :])
    eye = torch.eye(k11.shape[-2], dtype=k11.dtype, device=k11.device)
    x = torch.linalg.solve(eye + k11.movedim(-1, -3), k10.movedim(-1, -2).unsqueeze(-1))  # (..., F, r, 1)
    return x.squeeze(-1).movedim(-2, -1)


def dplr_kernel(prims: Primitives, dt, Lambda, P, B, C, L: int) -> torch.Tensor:
    """The DPLR kernel K_l = C dA^l dB, l < L, from C~ = C (I - dA^L) (the module docstring).

    dt (H,), Lambda (H, N), P (H, r, N), C (c, H, N); B (..., H, N) may carry batch
    dimensions (the state's contribution uses one B per batch element). Returns real
    (..., c, H, L). Differentiable in every input.
    """
    c, H, N = C.shape
    r = P.shape[-2]
    batch = B.shape[:-2]
    freqs = L // 2 + 1  # the rfft bins of a real kernel
    inner = freqs - 1 if L % 2 == 0 else freqs  # without the Nyquist bin
    zhat = _points(L, inner, Lambda.dtype, Lambda.device)
    w = (dt.unsqueeze(-1) * Lambda).unsqueeze(-2)  # (H, 1, N): dt * Lambda, Cauchy nodes
    left = torch.cat([C.transpose(0, 1), P.conj()], -2)  # (H, c + r, N): C~ and P^*
    right = torch.cat([B.unsqueeze(-2), P.expand(*batch, H, r, N)], -2)  # (..., H, 1 + r, N): B and P
    v = (left.unsqueeze(-2) * right.unsqueeze(-3)).flatten(-3, -2)  # (..., H, (c + r)(1 + r), N)
    v = v * dt.unsqueeze(-1).unsqueeze(-1)  # k_ij = dt sum v / (zhat - dt Lambda); scaled here, on N not L values
    k = prims.cauchy(v, zhat.unsqueeze(0), w)  # (..., H, M, F)
    # split, not slices: the backward concatenates the parts' gradients, where each slice
    # would fill a zero array of k's size
    (k00, k01), (k10, k11) = (part.split([1, r], -2) for part in k.unflatten(-2, (c + r, 1 + r)).split([c, r], -3))
    k00, k10 = k00.squeeze(-2), k10.squeeze(-2)
    low_rank = (k01 * _woodbury_inner(k10, k11).unsqueeze(-3)).sum(-2)  # k01 (I + k11)^{-1} k10
    at_roots = (k00 - low_rank) * (1 + zhat / 2)  # (..., H, c, F)
    if L % 2 == 0:  # Nyquist bin: dt Re sum_n C~_n B_n (the conjugate pair doubles the real part)
        nyquist = dt.unsqueeze(-1) * (C.transpose(0, 1) * B.unsqueeze(-2)).sum(-1).real
        at_roots = torch.cat([at_roots, nyquist.to(at_roots.dtype).unsqueeze(-1)], -1)
    return torch.fft.irfft(at_roots, n=L).transpose(-3, -2)  # (..., c, H, L)


def dplr_state_sum(prims: Primitives, dt, Lambda, P, B, u) -> torch.Tensor:
    """The aliased state forwarding S = sum_m Fa_m u_{L-1-m} of a DPLR system, stored half.

    Fa_m = (I - dA^L)^{-1} dA^m dB (the inverse DFT of F(z) = (I - dA z)^{-1} dB at the
    L-th roots of unity), so that the state after u (from zero) is (I - dA^L) S with the
    full S = [S, conj S]. By Parseval the sum is over frequencies; each term is a Cauchy
    fraction in the state index, so S is one Cauchy product over the L frequencies,
    without an (L, N) array. u: real (batch, H, L). Returns complex (batch, H, N).
    """
    L = u.shape[-1]
    r = P.shape[-2]
    inner = [k for k in range(L) if 2 * k != L]  # every frequency but z = -1
    k_idx = torch.tensor(inner, dtype=torch.float64, device=u.device)
    tan = torch.tan(math.pi * k_idx / L)
    zhat = torch.complex(torch.zeros_like(tan), 2 * tan).to(Lambda.dtype)  # (F,)
    dtw = dt.unsqueeze(-1) * Lambda  # (H, N)
    # x(z) = (I + k11)^{-1} k10 with k10 = P^* R B, k11 = P^* R P: (H, r, F)
    v = (P.conj().unsqueeze(-2) * torch.cat([B.unsqueeze(-2), P], -2).unsqueeze(-3)).flatten(-3, -2)
    k = prims.cauchy(v * dt[:, None, None], zhat.unsqueeze(0), dtw.unsqueeze(-2)).unflatten(-2, (r, 1 + r))
    k10, k11 = k[..., 0, :], k[..., 1:, :]  # (H, r, F), (H, r, r, F)
    x = _woodbury_inner(k10, k11)
    # weights a_k = (2/(1+z_k)) z_k fft(u)_k / L
    U = torch.fft.fft(u.to(Lambda.dtype), dim=-1)  # (batch, H, L)
    z = torch.exp(-2j * math.pi * torch.arange(L, dtype=torch.float64, device=u.device) / L).to(Lambda.dtype)
    a_all = z * U / L
    a = a_all[..., inner] * (1 + zhat / 2)  # (batch, H, F)
    terms = torch.cat([a.unsqueeze(-2), a.unsqueeze(-2) * x], -2)  # (batch, H, 1 + r, F)
    # T_j[n] = sum_k terms_j[k] / (zhat_k - dt Lambda_n) = -Cauchy(terms, dt Lambda, zhat)
    T = -prims.cauchy(terms, dtw.unsqueeze(-2), zhat, conj_pairs=False)  # (batch, H, 1 + r, N)
    S = dt[:, None] * (B * T[..., 0, :] - (P * T[..., 1:, :]).sum(-2))
    if L % 2 == 0:  # z = -1: F(-1) = dt B / 2
        S = S + dt[:, None] * B * a_all[..., L // 2].unsqueeze(-1) / 2
    return S


def dplr_untruncated_C(prims: Primitives, dt, Lambda, P, C, L: int) -> torch.Tensor:
    r"""C = C~ (I - dA^L)^{-1} of a DPLR system: the C that the recurrent step needs, from
    the C~ that the layer learns for kernel length L (the module docstring), stored half.

    Without dense matrices or powers of dA: summing the resolvent over the L-th roots of
    unity gives (I - dA^L)^{-1} = (1/L) sum_k (I - z_k dA)^{-1} (partial fractions of
    1/(1 - a^L)), and (I - z dA)^{-1} = (1 + zhat/2) (zhat - dt A)^{-1} (I - dt/2 A) with
    zhat as in :func:`dplr_kernel`. Woodbury turns each row C~ (zhat - dt A)^{-1} into
    R (C~ - y P^*) with y = k01 (I + k11)^{-1}, so C is (C~ T0 - P^* T1) (I - dt/2 A) with
    T0, T1 Cauchy products over the frequencies, weights a_k = (1 + zhat_k/2)/L and
    a_k y_k (conjugate frequencies pair up, as in :func:`dplr_state_sum`): four products of
    (L/2) x N terms per channel (rank 1), where the dense power costs log2(L) products of
    (2N)^3. T0 has a closed form, 1/((1 - dA_n^L)(1 - dt Lambda_n/2)), but C~ T0 and P^* T1
    can nearly cancel, and computed alike their errors cancel too: against a long-double
    dense solve this is within a few float64 ulps (the dense complex128 power is off by up
    to 1e-13, the closed form by 1e-11). Give complex128 inputs for the step's accuracy.

    :func:`ssmkit.ops.dplr_untruncated_C` computes the same sums in one kernel (inference
    only, no (H, L) intermediates); this composition is the differentiable path.

    dt (H,), Lambda (H, N), P (H, r, N), C (H, N). Returns complex (H, N).
    """
    H, r, N = P.shape
    freqs = L // 2 + 1
    inner = freqs - 1 if L % 2 == 0 else freqs  # k < L/2 (+ 1 for an odd L); conjugates pair up
    zhat = _points(L, inner, Lambda.dtype, Lambda.device)
    dtw = dt.unsqueeze(-1) * Lambda  # (H, N)
    # k01 = dt C~ R P and k11 = dt P^* R P at each frequency: (H, r, F) and (H, r, r, F)
    left = torch.cat([C.unsqueeze(-2), P.conj()], -2)  # (H, 1 + r, N)
    v = (left.unsqueeze(-2) * P.unsqueeze(-3)).flatten(-3, -2) * dt[:, None, None]
    k = prims.cauchy(v, zhat.unsqueeze(0), dtw.unsqueeze(-2)).unflatten(-2, (1 + r, r))
    weight = (1 + zhat / 2) / L
    weight = torch.cat([weight[:1] / 2, weight[1:]])  # z = 1 is its own conjugate: once in the paired sum
    # the row a_k k01 (I + k11)^{-1}: the Woodbury weights of T1
    ay = _woodbury_inner(k[..., 0, :, :] * weight, k[..., 1:, :, :].transpose(-3, -2))
    # sum over all k of a_k / (zhat_k - x) is minus the paired Cauchy product at the points x;
    # T0 and T1 in one call whose rows share the points and the nodes (computed once per channel)
    terms = torch.cat([weight.expand(H, 1, -1), ay], -2)  # (H, 1 + r, F)
    T = -prims.cauchy(terms, dtw.unsqueeze(-2), zhat)  # (H, 1 + r, N)
    V = C * T[..., 0, :] - (P.conj() * T[..., 1:, :]).sum(-2)
    if L % 2 == 0:  # z = -1 has no zhat: there (I + dA)^{-1} = (I - dt/2 A) / 2
        V = V + C / (2 * L)
    # V (I - dt/2 A) over the full state, A = diag(Lambda) - P P^*
    s = 2 * (V.unsqueeze(-2) * P).sum(-1).real  # V P over the full state: (H, r)
    return V * (1 - dtw / 2) + (dt / 2).unsqueeze(-1) * (s.unsqueeze(-1) * P.conj()).sum(-2)


def full(x: torch.Tensor) -> torch.Tensor:
    """Conjugate pairs written out along the last dimension: [x, conj x]."""
    return torch.cat([x, x.conj()], -1)


def diag_kernel(prims: Primitives, dt, Lambda, B, C, L: int, method: str):
    """The diagonal kernel K_l = 2 Re sum_n C_n dB_n dA_n^l, l < L: real (c, H, L)."""
    dA, dB = prims.discretize(dt, Lambda, B, method)
    log_dA = dt.unsqueeze(-1) * Lambda if method == "zoh" else torch.log(dA)
    return prims.vandermonde(C * dB, log_dA, L)
