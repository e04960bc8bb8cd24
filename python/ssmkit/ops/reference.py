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
