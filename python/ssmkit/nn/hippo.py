"""Initial state matrices for S4 (HiPPO-LegS, normal plus low rank) and S4D (diagonal).

Every function returns conjugate-pair storage: a real state matrix of size ``d_state``
has its eigenvalues in conjugate pairs, and only the half with positive imaginary part
is kept (N = d_state / 2 values), as everywhere in ssmkit.
"""

from __future__ import annotations

import math

import torch

DIAG_INITS = ("legs", "lin", "inv")


def _check_d_state(d_state) -> int:
    if isinstance(d_state, bool) or not isinstance(d_state, int) or d_state < 2 or d_state % 2:
        raise ValueError(f"d_state: expected an even integer >= 2 (conjugate pairs), got {d_state!r}")
    return d_state


def legs(d_state: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The HiPPO-LegS matrices (A, B) and its rank-1 correction P, float64.

    .. math:: A_{nk} = -\sqrt{(2n+1)(2k+1)}\ (n > k), \quad A_{nn} = -(n+1), \quad A_{nk} = 0\ (n < k),
              \qquad B_n = \sqrt{2n+1}, \qquad P_n = \sqrt{n + 1/2}

    A + P P^T = -I/2 + (a skew-symmetric matrix), a normal matrix.
    Returns A (d_state, d_state), B (d_state,), P (d_state,).
    """
    n = torch.arange(_check_d_state(d_state), dtype=torch.float64)
    root = torch.sqrt(2 * n + 1)
    A = -torch.tril(root.unsqueeze(1) * root.unsqueeze(0), diagonal=-1) - torch.diag(n + 1)
    return A, root.clone(), torch.sqrt(n + 0.5)


def legs_nplr(d_state: int, b_clip: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""HiPPO-LegS as normal plus low rank in the eigenbasis of its normal part.

    A = V (diag(Lambda) - P P^*) V^* with V unitary: Lambda are the eigenvalues of the
    normal part S = A + P P^T (real part -1/2), P = V^* P_legs and B = V^* B_legs.
    Returns Lambda (N,), P (1, N), B (N,) complex128, N = d_state / 2: one eigenvalue of
    each conjugate pair (positive imaginary part, ascending).

    b_clip: clip Im(B) to [-b_clip, b_clip] (the state-spaces/s4 reference does, with 2,
    by default; then B is no longer exactly HiPPO-LegS's). None keeps B exact.
    """
    A, B, P = legs(d_state)
    S = A + P.unsqueeze(1) * P.unsqueeze(0)
    # S = -I/2 + K with K real skew-symmetric: -iK is Hermitian and eigh is accurate for it.
    K = S - torch.diag(torch.diagonal(S))
    freq, V = torch.linalg.eigh(-1j * K.to(torch.complex128))  # K = V diag(i freq) V^*
    keep = freq > 0  # one of each pair (freq, -freq); eigh sorts ascending
    V = V[:, keep]
    Lambda = torch.complex(torch.full_like(freq[keep], -0.5), freq[keep])
    Vh = V.conj().transpose(0, 1)
    B = Vh @ B.to(V.dtype)
    if b_clip is not None:
        if not b_clip > 0:
            raise ValueError(f"b_clip: expected a positive bound or None, got {b_clip!r}")
        B = torch.complex(B.real, B.imag.clamp(-b_clip, b_clip))
    return Lambda, (Vh @ P.to(V.dtype)).unsqueeze(0), B


def diag_init(kind: str, d_state: int, b_clip: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""S4D's diagonal initialisations; returns Lambda, B (N,) complex128, N = d_state / 2.

    - ``"legs"``: the eigenvalues of HiPPO-LegS's normal part (-1/2 + i freq), with its
      B in that eigenbasis (the diagonal of S4's NPLR form, dropping P; ``b_clip`` as in
      :func:`legs_nplr`).
    - ``"lin"``: -1/2 + i pi n, B = 1.
    - ``"inv"``: -1/2 + i (d/pi) (d/(2n+1) - 1) with d = d_state, B = 1.
    """
    N = _check_d_state(d_state) // 2
    if kind == "legs":
        Lambda, _, B = legs_nplr(d_state, b_clip)
        return Lambda, B
    n = torch.arange(N, dtype=torch.float64)
    if kind == "lin":
        imag = math.pi * n
    elif kind == "inv":
        imag = d_state / math.pi * (d_state / (2 * n + 1) - 1)
    else:
        raise ValueError(f"init: expected one of {', '.join(map(repr, DIAG_INITS))} for a diagonal SSM, got {kind!r}")
    return torch.complex(torch.full_like(n, -0.5), imag), torch.ones(N, dtype=torch.complex128)
