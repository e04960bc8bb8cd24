"""Pure-PyTorch references of every ssmkit primitive.

Each function states the op's meaning in the simplest form, materialising whatever
it needs. In complex128 they are the ground truth the kernels are tested against;
they also document the ops and serve as a fallback where no kernel exists.
"""

from __future__ import annotations

import torch


def cauchy(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor, conj_pairs: bool = True) -> torch.Tensor:
    r"""Cauchy product, materialising the (..., L, N) matrix of terms.

    .. math:: \mathrm{out}[..., l] = \sum_n \frac{v[..., n]}{z[..., l] - w[..., n]}
              \;\Big[+ \frac{\overline{v[..., n]}}{z[..., l] - \overline{w[..., n]}}\Big]

    v, w: complex (..., N); z: complex (..., L); leading dimensions broadcast.
    With ``conj_pairs`` each (v_n, w_n) stands for a conjugate pair of terms, as S4
    stores half of each pair. Returns complex (..., L).
    """
    if conj_pairs:
        v = torch.cat([v, v.conj()], dim=-1)
        w = torch.cat([w, w.conj()], dim=-1)
    terms = v.unsqueeze(-2) / (z.unsqueeze(-1) - w.unsqueeze(-2))  # (..., L, N)
    return terms.sum(dim=-1)


# ---- discretization and stepping ------------------------------------------------
# Conventions: A, B, C, dA, dB, dC are complex (H, N) with conjugate-pair storage (N
# stored values stand for 2N: the output of a sum over the full state is 2 Re(...));
# dt, D are real (H,); u, y are real.


def discretize(dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, method: str = "zoh"):
    r"""Discretize the diagonal system x' = A x + B u with step dt, per channel.

    zoh:      :math:`dA = e^{\Delta A}`, :math:`dB = (e^{\Delta A} - 1) A^{-1} B`
    bilinear: :math:`dA = (1 + \Delta A/2)/(1 - \Delta A/2)`, :math:`dB = \Delta B/(1 - \Delta A/2)`

    dt: real (H,); A, B: complex (H, N). Returns (dA, dB), complex (H, N). This is the
    naive formula: ZOH at A = 0 gives NaN here, where ops.discretize gives the limit dt B.
    """
    z = dt.unsqueeze(-1) * A
    if method == "zoh":
        dA = torch.exp(z)
        return dA, (dA - 1) / A * B
    if method == "bilinear":
        w = 1 / (1 - z / 2)
        return (1 + z / 2) * w, dt.unsqueeze(-1) * B * w
    raise ValueError(f'method: expected "zoh" or "bilinear", got {method!r}')


def ssm_step(state, u, dA, dB, dC, D=None):
    r"""One step: :math:`x' = dA \odot x + dB\,u`, :math:`y = 2\,\mathrm{Re}\sum_n dC_n x'_n + D u`.

    state: complex (batch, H, N); u: real (batch, H). Returns (y (batch, H), x').
    """
    new = dA * state + dB * u.unsqueeze(-1)
    y = 2 * (dC * new).sum(-1).real
    if D is not None:
        y = y + D * u
    return y, new


def ssm_scan(u, dA, dB, dC, D=None, state=None):
    """ssm_step over a sequence, one step at a time: u (batch, L, H) -> (y (batch, L, H),
    final state (batch, H, N)); the state starts at `state` (zero when None)."""
    batch, L, H = u.shape
    x = state if state is not None else dA.new_zeros(batch, H, dA.shape[-1])
    ys = []
    for l in range(L):
        y, x = ssm_step(x, u[:, l], dA, dB, dC, D)
        ys.append(y)
    y = torch.stack(ys, dim=1) if ys else u.new_zeros(batch, 0, H)
    return y, x


def ssm_kernel(dA, dB, dC, L: int) -> torch.Tensor:
    r"""The convolution kernel of the diagonal SSM, :math:`K_l = 2\,\mathrm{Re}\sum_n dC_n dA_n^l dB_n`,
    l < L, real (H, L): with a zero initial state, ssm_scan(u) = causal_conv(u, K) + D u.
    Powers as exp(l log dA) (ops.vandermonde computes the same sum)."""
    l = torch.arange(L, dtype=dA.real.dtype, device=dA.device)
    powers = torch.exp(torch.log(dA).unsqueeze(-1) * l)  # (H, N, L)
    return 2 * torch.einsum("hn,hnl->hl", dC * dB, powers).real


def dplr_dense(dt, Lambda, P, B):
    r"""Dense bilinear discretization of the full (2N) DPLR system, explicit matrices.

    A = diag(Lambda_f) - P_f^T conj(P_f) with the conjugate pairs written out
    (Lambda_f = [Lambda, conj Lambda], P_f = [P, conj P] along n, B_f likewise);
    dA = (I - dt/2 A)^{-1} (I + dt/2 A), dB = (I - dt/2 A)^{-1} dt B_f.
    dt: (H,); Lambda, B: (H, N); P: (H, r, N). Returns dA (H, 2N, 2N), dB (H, 2N).
    """
    Lf = torch.cat([Lambda, Lambda.conj()], -1)
    Pf = torch.cat([P, P.conj()], -1)
    Bf = torch.cat([B, B.conj()], -1)
    A = torch.diag_embed(Lf) - torch.einsum("hki,hkj->hij", Pf, Pf.conj())
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    h = (dt / 2).to(A.dtype)[:, None, None]
    lhs = eye - h * A
    dA = torch.linalg.solve(lhs, eye + h * A)
    dB = torch.linalg.solve(lhs, (dt.to(A.dtype)[:, None] * Bf).unsqueeze(-1)).squeeze(-1)
    return dA, dB


def dplr_dense_power(dt, Lambda, P, L: int):
    """Dense full-size (2N) bilinear dA^L by repeated squaring (:func:`dplr_dense`)."""
    dA, _ = dplr_dense(dt, Lambda, P, torch.zeros_like(Lambda))  # B does not enter dA
    return torch.linalg.matrix_power(dA, L)


def dplr_untruncated_C(dt, Lambda, P, C, L: int):
    r"""C = C~ (I - dA^L)^{-1} over the full state, stored half (H, N): the C that the
    bilinear DPLR step needs from the C~ that S4 learns for kernel length L. Dense dA^L
    (:func:`dplr_dense_power`), then a solve."""
    power = dplr_dense_power(dt, Lambda, P, L)
    eye = torch.eye(power.shape[-1], dtype=power.dtype, device=power.device)
    full = torch.cat([C, C.conj()], -1).unsqueeze(-1)
    return torch.linalg.solve((eye - power).transpose(-1, -2), full).squeeze(-1)[..., : C.shape[-1]]


def dplr_step(state, u, dt, Lambda, P, B, C, D=None):
    r"""One bilinear step of the DPLR system with dense matrices (:func:`dplr_dense`).

    The full state is [x, conj(x)]; returns (y, x'), y = 2 Re(sum_n C_n x'_n) + D u,
    x' the stored half of dA [x, conj x] + dB u. state: (batch, H, N); u: (batch, H).
    """
    dA, dB = dplr_dense(dt, Lambda, P, B)
    N = state.shape[-1]
    xf = torch.cat([state, state.conj()], -1)
    new = (torch.einsum("hij,bhj->bhi", dA, xf) + dB * u.unsqueeze(-1).to(dB.dtype))[..., :N]
    y = 2 * (C * new).sum(-1).real
    if D is not None:
        y = y + D * u
    return y, new
def _exp_xl(x: torch.Tensor, L: int, exact_exponent: bool, start: int = 0) -> torch.Tensor:
    """exp(x[..., n] * l) for start <= l < start + L, materialised as (..., N, L).

    ``exact_exponent`` (complex128 only, L < 2^29) forms x*l without rounding: x splits
    into x_hi (x rounded to complex64) and x_lo = x - x_hi, whose products with l are
    exact, and exp(x l) = exp(x_hi l) exp(x_lo l). The plain product rounds b*l, a phase
    error of up to eps*|b|*l (1e-9 at |b| l = 1e7), which would otherwise dominate the
    comparison of a double-precision kernel."""
    l = torch.arange(start, start + L, dtype=x.real.dtype, device=x.device)
    if not exact_exponent:
        return torch.exp(x.unsqueeze(-1) * l)
    assert x.dtype == torch.complex128 and start + L < 2**29, "exact_exponent needs complex128 and L < 2^29"
    x_hi = x.detach().to(torch.complex64).to(torch.complex128)
    x_lo = x - x_hi
    return torch.exp(x_hi.unsqueeze(-1) * l) * torch.exp(x_lo.unsqueeze(-1) * l)


def vandermonde(
    v: torch.Tensor, x: torch.Tensor, L: int, conj_pairs: bool = True, exact_exponent: bool = False
) -> torch.Tensor:
    r"""Log-Vandermonde product, materialising the (..., N, L) matrix exp(x_n l).

    .. math:: \mathrm{out}[..., l] = \sum_n v[..., n]\, e^{x[..., n]\, l}, \quad l = 0..L-1

    v, x: complex (..., N); leading dimensions broadcast. With ``conj_pairs`` each
    (v_n, x_n) stands for a conjugate pair and the result is the real ``2 Re(...)``;
    otherwise complex (..., L). See ``_exp_xl`` for ``exact_exponent``.
    """
    y = (v.unsqueeze(-1) * _exp_xl(x, L, exact_exponent)).sum(dim=-2)
    return 2 * y.real if conj_pairs else y


def vandermonde_transpose(
    u: torch.Tensor, v: torch.Tensor, x: torch.Tensor, exact_exponent: bool = False
) -> torch.Tensor:
    r"""Transposed log-Vandermonde product (state forwarding), materialising (..., N, L).

    .. math:: \mathrm{out}[..., n] = v[..., n] \sum_l u[..., l]\, e^{x[..., n]\, l}

    u: real or complex (..., L); v, x: complex (..., N); returns complex (..., N).
    """
    E = _exp_xl(x, u.shape[-1], exact_exponent)
    return v * (u.unsqueeze(-2) * E).sum(dim=-1)


# ---- the long convolution -------------------------------------------------------


def fft_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    r"""Causal convolution along the length, per channel, by a zero-padded FFT (the S4
    layer's convolution).

    .. math:: y[b, t, h] = \sum_{s \le t} k[0, h, s]\, u[b, t-s, h]
              \;\Big[+ \sum_{s < L-1-t} k[1, h, s]\, u[b, t+1+s, h]\Big]

    u: real (batch, L, H); k: real (c, H, L), c = 1, or 2 for a bidirectional layer (the
    second kernel is anticausal: it sees the strictly later inputs). Returns (batch, L, H).
    """
    L = u.shape[-2]
    if u.numel() == 0:  # no outputs (torch.fft refuses empty transforms)
        return torch.zeros_like(u)
    x = u.transpose(-1, -2)  # (batch, H, L)
    kf = k[0] if k.shape[0] == 1 else torch.nn.functional.pad(k[0], (0, L)) + torch.nn.functional.pad(k[1].flip(-1), (L, 0))
    n = 2 * L  # zero padding: a linear, not circular, convolution
    y = torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(kf, n=n), n=n)[..., :L]
    return y.transpose(-1, -2)
