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
