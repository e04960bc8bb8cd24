"""Initial state matrices for S4 (HiPPO-LegS, normal plus low rank) and S4D (diagonal).

Framework-free (NumPy, float64 and complex128): the torch layer (:class:`ssmkit.nn.S4`)
and the JAX layer (:mod:`ssmkit.jax.s4`) start from these same values. Every function
returns conjugate-pair storage: a real state matrix of size ``d_state`` has its
eigenvalues in conjugate pairs, and only the half with positive imaginary part is kept
(N = d_state / 2 values), as everywhere in ssmkit.
"""

from __future__ import annotations

import math

import numpy as np

from ._blas import one_blas_thread

DIAG_INITS = ("legs", "lin", "inv")


def _check_d_state(d_state) -> int:
    if isinstance(d_state, bool) or not isinstance(d_state, int) or d_state < 2 or d_state % 2:
        raise ValueError(f"d_state: expected an even integer >= 2 (conjugate pairs), got {d_state!r}")
    return d_state


def legs(d_state: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The HiPPO-LegS matrices (A, B) and its rank-1 correction P, float64.

    .. math:: A_{nk} = -\sqrt{(2n+1)(2k+1)}\ (n > k), \quad A_{nn} = -(n+1), \quad A_{nk} = 0\ (n < k),
              \qquad B_n = \sqrt{2n+1}, \qquad P_n = \sqrt{n + 1/2}

    A + P P^T = -I/2 + (a skew-symmetric matrix), a normal matrix.
    Returns A (d_state, d_state), B (d_state,), P (d_state,).
    """
    n = np.arange(_check_d_state(d_state), dtype=np.float64)
    root = np.sqrt(2 * n + 1)
    A = -np.tril(root[:, None] * root[None, :], k=-1) - np.diag(n + 1)
    return A, root, np.sqrt(n + 0.5)


def legs_nplr(d_state: int, b_clip: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""HiPPO-LegS as normal plus low rank in the eigenbasis of its normal part.

    A = V (diag(Lambda) - P P^*) V^* with V unitary: Lambda are the eigenvalues of the
    normal part S = A + P P^T (real part -1/2), P = V^* P_legs and B = V^* B_legs.
    Returns Lambda (N,), P (1, N), B (N,) complex128, N = d_state / 2: one eigenvalue of
    each conjugate pair (positive imaginary part, ascending).

    b_clip: clip Im(B) to [-b_clip, b_clip] (the state-spaces/s4 reference does, with 2,
    by default; then B is no longer exactly HiPPO-LegS's). None keeps B exact.
    """
    A, B, P = legs(d_state)
    S = A + P[:, None] * P[None, :]
    # S = -I/2 + K with K real skew-symmetric: -iK is Hermitian and eigh is accurate for it.
    K = S - np.diag(np.diagonal(S))
    with one_blas_thread():
        freq, V = np.linalg.eigh(-1j * K)  # K = V diag(i freq) V^*
    keep = freq > 0  # one of each pair (freq, -freq); eigh sorts ascending
    Vh = V[:, keep].conj().T
    Lambda = -0.5 + 1j * freq[keep]
    B = Vh @ B
    if b_clip is not None:
        if not b_clip > 0:
            raise ValueError(f"b_clip: expected a positive bound or None, got {b_clip!r}")
        B = B.real + 1j * np.clip(B.imag, -b_clip, b_clip)
    return Lambda, (Vh @ P)[None, :], B


def diag_init(kind: str, d_state: int, b_clip: float | None = None) -> tuple[np.ndarray, np.ndarray]:
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
    n = np.arange(N, dtype=np.float64)
    if kind == "lin":
        imag = math.pi * n
    elif kind == "inv":
        imag = d_state / math.pi * (d_state / (2 * n + 1) - 1)
    else:
        raise ValueError(f"init: expected one of {', '.join(map(repr, DIAG_INITS))} for a diagonal SSM, got {kind!r}")
    return -0.5 + 1j * imag, np.ones(N, dtype=np.complex128)
