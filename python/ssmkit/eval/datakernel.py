"""Data kernels: compare models by the geometry of their embeddings of the same items.

The method of Duderstadt, Helm and Priebe, "Comparing Foundation Models using Data
Kernels" (2023). Each model embeds the same n items; the kNN graph of those embeddings
(the model's *data kernel*) is modelled as a random dot product graph (RDPG): edge
i~j appears independently with probability <x_i, x_j> for latent positions x_i in R^d.

- :func:`knn_graph` builds a data kernel; :func:`ase` estimates the latent positions of
  one graph (adjacency spectral embedding); :func:`omnibus_embed` embeds m graphs of the
  same items jointly, so that their latent positions are directly comparable.
- :func:`per_datum_test` asks, item by item, whether two models embed it alike:
  T_i = ||Z_a[i] - Z_b[i]|| in the omnibus embedding, with a p-value from a parametric
  bootstrap under the RDPG fitted to model a's graph, and Benjamini-Hochberg
  adjusted p-values.
- :func:`model_distances` gives the distances between a population of models;
  :func:`model_manifold` places them in a plane by classical MDS and
  :func:`plot_manifold` draws it.

Everything is sparse: no n x n dense matrix is formed (kNN search goes by row blocks,
eigenvectors come from ``scipy.sparse.linalg.eigsh``, RDPG graphs are sampled by
thinning a rank-one Poisson process).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh

from .._blas import one_blas_thread
from .._validate import positive_int

METRICS = ("cosine", "euclidean")

# Eigenvalues computed for the automatic choice of dimension (at most; fewer for small graphs).
MAX_DIM = 50

# Below this size a dense symmetric eigensolver is faster than ARPACK and never fails.
_DENSE_SIZE = 128

# kNN search: similarity blocks of at most this many entries (8 bytes each).
_BLOCK_ENTRIES = 1 << 22

# The per-datum test refuses fewer items: its bootstrap null, fitted to one graph, is too
# narrow at small n (null p-values at or below 0.05: 8.6% at n = 100, 8.25% with the null
# fitted to both graphs; 5.0% at n = 300), and tests/test_datakernel.py checks n = 200.
MIN_TEST_ITEMS = 200

# RDPG sampling: pairs with ||x_i|| ||x_j|| above this bound are drawn one by one; the
# rest by thinning a Poisson process (see sample_rdpg).
_HEAVY = 0.5


# ---------------------------------------------------------------------------- validation


def _embedding(name: str, Y) -> np.ndarray:
    """Y as a finite float64 array of shape (items, features)."""
    try:
        arr = np.asarray(Y)
    except Exception as e:  # noqa: BLE001 - say what could not be read
        raise TypeError(f"{name}: expected an array of shape (items, features), got {type(Y).__name__}") from e
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected an array of shape (items, features), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"{name}: expected at least 2 items and 1 feature, got shape {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise ValueError(f"{name}: expected finite values; row {int(np.flatnonzero(bad)[0])} has NaN or Inf")
    return arr


def _graph(name: str, A) -> sp.csr_array:
    """A as a sparse symmetric float64 adjacency matrix (CSR)."""
    if not (sp.issparse(A) or isinstance(A, np.ndarray)):
        raise TypeError(f"{name}: expected a scipy.sparse matrix or a NumPy array, got {type(A).__name__}")
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] < 2:
        raise ValueError(f"{name}: expected a square adjacency matrix with at least 2 rows, got shape {A.shape}")
    A = sp.csr_array(A, dtype=np.float64)
    if not np.isfinite(A.data).all():
        raise ValueError(f"{name}: expected finite entries")
    if abs(A - A.T).max() > 1e-12 * max(1.0, abs(A).max()):
        raise ValueError(f"{name}: expected a symmetric adjacency matrix")
    return A


def _dimension(d, n: int) -> int | None:
    if d is None:
        return None
    return positive_int("d", d, upper=n - 1, upper_text=f"fewer than the {n} items")


# ---------------------------------------------------------------------------- data kernels


def knn_graph(Y, k: int, metric: str = "cosine") -> sp.csr_array:
    """The data kernel of embeddings Y: the symmetric kNN graph of its items.

    Y: (n, features), one row per item. Each item is joined to its k nearest other items
    (itself excluded) by ``metric``: "cosine" (1 - cosine similarity; rows must be
    nonzero) or "euclidean". The directed kNN relation is then symmetrised by union:
    i ~ j when j is among the k nearest of i *or* i among the k nearest of j, so every
    item has degree at least k. Returns an unweighted (0/1) float64 ``scipy.sparse``
    CSR array of shape (n, n) with an empty diagonal. Ties among equally near items are
    broken deterministically (same input, same graph).

    The search goes by row blocks (``Y[rows] @ Y.T``), so memory stays O(n) per row
    and no n x n matrix is held.
    """
    Y = _embedding("Y", Y)
    n = Y.shape[0]
    k = positive_int("k", k, upper=n - 1, upper_text=f"fewer than the {n} items of Y")
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {', '.join(map(repr, METRICS))}, got {metric!r}")

    norms = np.sqrt(np.einsum("ij,ij->i", Y, Y))
    if metric == "cosine":
        zero = norms == 0
        if zero.any():
            raise ValueError(f"Y: the cosine metric needs nonzero rows; row {int(np.flatnonzero(zero)[0])} is all zeros")
        Y = Y / norms[:, None]
    block = max(1, _BLOCK_ENTRIES // n)
    neighbours = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))
        # Larger score = nearer: cosine similarity, or -squared distance up to a per-row constant.
        score = Y[rows] @ Y.T
        if metric == "euclidean":
            score -= 0.5 * norms**2
        score[np.arange(len(rows)), rows] = -np.inf  # not one's own neighbour
        neighbours[rows] = np.argpartition(-score, k - 1, axis=1)[:, :k]
    directed = sp.csr_array((np.ones(n * k), (np.repeat(np.arange(n), k), neighbours.ravel())), shape=(n, n))
    return directed.maximum(directed.T).tocsr()


# ---------------------------------------------------------------------------- dimension


def profile_likelihood_elbows(values, n_elbows: int = 2) -> list[int]:
    """Elbows of a scree plot by Zhu and Ghodsi's profile likelihood (2006).

    ``values`` are sorted in decreasing order; splitting them after the q-th into two
    groups, each normal with its own mean and a pooled variance, gives a likelihood
    whose maximiser over q is the first elbow. The next elbow is found the same way in
    the values after it. Returns the elbow positions (cumulative counts of leading
    values), at most ``n_elbows`` of them, increasing.
    """
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())[::-1]
    n_elbows = positive_int("n_elbows", n_elbows)
    elbows: list[int] = []
    offset = 0
    while len(elbows) < n_elbows and len(v) - offset >= 2:
        q = offset + _first_elbow(v[offset:])
        elbows.append(q)
        offset = q
    return elbows or [1]


def _first_elbow(v: np.ndarray) -> int:
    p = len(v)
    if p == 2:
        return 1
    q = np.arange(1, p)
    csum, csq = np.cumsum(v), np.cumsum(v**2)
    # Within-group sums of squares of v[:q] and v[q:], from running sums.
    ss_head = csq[q - 1] - csum[q - 1] ** 2 / q
    ss_tail = (csq[-1] - csq[q - 1]) - (csum[-1] - csum[q - 1]) ** 2 / (p - q)
    var = np.maximum(ss_head + ss_tail, 0.0) / (p - 2)  # Zhu-Ghodsi's pooled variance
    tiny = np.finfo(np.float64).tiny
    loglik = -0.5 * p * np.log(2 * math.pi * np.maximum(var, tiny)) - 0.5 * (ss_head + ss_tail) / np.maximum(var, tiny)
    return int(q[np.argmax(loglik)])


# ---------------------------------------------------------------------------- embeddings


def _top_eigenpairs(M, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest (algebraic) eigenvalues of symmetric M, decreasing, and their eigenvectors."""
    size = M.shape[0]
    if sp.issparse(M) and M.nnz == 0:  # no edges at all (ARPACK cannot start): all eigenvalues 0
        return np.zeros(k), np.eye(size, k)
    with one_blas_thread():
        if size <= _DENSE_SIZE or k >= size - 1:
            dense = M.toarray() if sp.issparse(M) else M @ np.eye(size)
            values, vectors = np.linalg.eigh(dense)
            return values[::-1][:k], vectors[:, ::-1][:, :k]
        v0 = np.random.default_rng(0).uniform(0.5, 1.5, size)  # a fixed start: results are reproducible
        # A Krylov space of at least 20 vectors: ARPACK's default 2k + 1 restarts often for small k.
        values, vectors = eigsh(M, k=k, which="LA", v0=v0, ncv=min(size - 1, max(2 * k + 1, 20)))
    order = np.argsort(values)[::-1]
    return values[order], vectors[:, order]


def _choose_dimension(values: np.ndarray) -> int:
    # The first elbow: on kNN graphs of clustered data it is the number of clusters; later
    # elbows fall inside the bulk of noise eigenvalues, where eigenvectors are unstable.
    return profile_likelihood_elbows(values, n_elbows=1)[0]


def _embed(M, n_rows: int, d: int | None, max_dim: int) -> np.ndarray:
    """Rows U sqrt(lambda) of symmetric M for its d largest eigenvalues (d chosen when None)."""
    if d is None:
        values, vectors = _top_eigenpairs(M, min(max_dim, n_rows - 1))
        d = _choose_dimension(values)
        values, vectors = values[:d], vectors[:, :d]
    else:
        values, vectors = _top_eigenpairs(M, d)
    # RDPG: P = X X^T is positive semidefinite; a nonpositive eigenvalue carries no signal.
    return vectors * np.sqrt(np.maximum(values, 0.0))


def ase(A, d: int | None = None, *, max_dim: int = MAX_DIM) -> np.ndarray:
    """Adjacency spectral embedding: latent positions X (n, d) with A ~ X X^T.

    X = U Lambda^(1/2) for the d largest eigenvalues of A (an RDPG's P = X X^T is
    positive semidefinite, so the largest algebraic ones, not the largest in magnitude;
    a nonpositive one gives a zero column).
    With ``d=None`` the dimension is the (first) Zhu-Ghodsi profile-likelihood elbow of
    the top ``max_dim`` eigenvalues. X is defined up to an orthogonal rotation.
    """
    A = _graph("A", A)
    n = A.shape[0]
    d = _dimension(d, n)
    max_dim = positive_int("max_dim", max_dim)
    return _embed(A, n, d, max_dim)


def rdpg_fit(A, d: int | None = None, *, max_dim: int = MAX_DIM) -> np.ndarray:
    """Latent positions X (n, d) of an RDPG fitted to graph A: :func:`ase` with debiased eigenvalues.

    The top eigenvalues of a Bernoulli adjacency matrix overshoot those of P = X X^T: by
    second-order perturbation, lambda_hat_k ~ lambda_k + u_k^T D u_k / lambda_k -
    u_k^T diag(P) u_k, with D_ii = sum_{j != i} p_ij (1 - p_ij) (noise variance) and the
    last term from the empty diagonal. Positions from the raw eigenvalues make a null
    model with too little spread: bootstrap p-values came out too small (6.8% below 0.05
    at n=300 in a calibration run, 5.0% with this correction). The correction uses P
    estimated from the raw fit (no clipping, O(n d^2)).
    """
    A = _graph("A", A)
    n = A.shape[0]
    d = _dimension(d, n)
    max_dim = positive_int("max_dim", max_dim)
    if d is None:
        d = ase(A, None, max_dim=max_dim).shape[1]
    values, U = _top_eigenpairs(A, d)
    X = U * np.sqrt(np.maximum(values, 0.0))
    p_self = np.einsum("ij,ij->i", X, X)
    variance = X @ X.sum(axis=0) - np.einsum("ij,jk,ik->i", X, X.T @ X, X) - (p_self - p_self**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = (U**2 * np.maximum(variance, 0.0)[:, None]).sum(axis=0) / values - (U**2 * p_self[:, None]).sum(axis=0)
    corrected = np.where(values > 0, values - shift, 0.0)
    return U * np.sqrt(np.maximum(corrected, 0.0))


def _omnibus_operator(graphs: Sequence[sp.csr_array]):
    """The omnibus matrix M (mn x mn) with block (i, j) = (A_i + A_j) / 2.

    For a few graphs it is built (ARPACK then multiplies in compiled code, no Python per
    product). For many it is an operator: (M v)_i = sum_j (A_i + A_j) v_j / 2 =
    (A_i s + w) / 2 with s = sum_j v_j and w = sum_j A_j v_j, 2m sparse products
    instead of m^2 blocks in memory.
    """
    m, n = len(graphs), graphs[0].shape[0]
    if m <= 4:
        return sp.csr_array(sp.bmat([[(Ai + Aj) * 0.5 for Aj in graphs] for Ai in graphs], format="csr"))

    def matmat(V):
        blocks = V.reshape(m, n, -1)
        s = blocks.sum(axis=0)
        w = sum(A @ b for A, b in zip(graphs, blocks))
        return np.concatenate([0.5 * (A @ s + w) for A in graphs]).reshape(V.shape)

    return LinearOperator((m * n, m * n), matvec=matmat, matmat=matmat, dtype=np.float64)


def omnibus_embed(graphs: Sequence, d: int | None = None, *, max_dim: int = MAX_DIM) -> np.ndarray:
    """Joint spectral embedding of m graphs on the same n items: an array (m, n, d).

    The omnibus matrix has block (i, j) = (A_i + A_j) / 2; its adjacency spectral
    embedding (see :func:`ase`), cut into m blocks of n rows, gives each graph's latent
    positions in one common frame, so Z[i][r] and Z[j][r] can be compared directly
    (Levin et al., 2017). With ``d=None`` the dimension is chosen from the omnibus
    matrix's eigenvalues as in :func:`ase`.
    """
    graphs = _graphs(graphs)
    m, n = len(graphs), graphs[0].shape[0]
    d = _dimension(d, n)
    max_dim = positive_int("max_dim", max_dim)
    Z = _embed(_omnibus_operator(graphs), n, d, max_dim)
    return Z.reshape(m, n, -1)


def _graphs(graphs) -> list[sp.csr_array]:
    if isinstance(graphs, (np.ndarray,)) or sp.issparse(graphs) or not isinstance(graphs, Sequence):
        raise TypeError(f"graphs: expected a list of adjacency matrices, got {type(graphs).__name__}")
    if len(graphs) < 1:
        raise ValueError("graphs: expected at least one adjacency matrix, got none")
    out = [_graph(f"graphs[{i}]", A) for i, A in enumerate(graphs)]
    n = out[0].shape[0]
    for i, A in enumerate(out):
        if A.shape[0] != n:
            raise ValueError(f"graphs[{i}]: expected {n} items like graphs[0], got shape {A.shape}")
    return out


# ---------------------------------------------------------------------------- RDPG sampling


def sample_rdpg(X, rng: np.random.Generator | int | None = None) -> sp.csr_array:
    """A graph drawn from the RDPG with latent positions X (n, d): a symmetric 0/1 CSR array.

    Each pair i < j is an edge independently with probability p_ij = clip(<x_i, x_j>, 0, 1);
    no self loops. Exact and without drawing n^2 random numbers; see :class:`RdpgSampler`,
    which draws many graphs from one X faster (it prepares once).
    """
    return RdpgSampler(X).sample(rng)


class RdpgSampler:
    """Draws graphs from the RDPG with latent positions X (n, d), exactly and sparsely.

    Pairs with p_ij > 1/2 are few (at most twice the expected edge count); they are found
    once and drawn one by one. The other pairs are drawn by thinning a Poisson process:
    items are split into G groups of similar direction (spherical k-means), and the pairs
    of groups (g, h) get candidate pairs at rate c_gh r_i r_j (r_i = ||x_i||), with
    c_gh = max over the block of mu_ij / (r_i r_j) bounded from p_ij / (1 - p_ij) and
    mu_ij = -log(1 - p_ij); both endpoints are drawn proportional to r within their
    groups. A candidate is kept with probability mu_ij / (c_gh r_i r_j), so the kept
    candidates of a pair are Poisson(mu_ij) and the pair is an edge (at least one kept)
    with probability 1 - exp(-mu_ij) = p_ij, independently of other pairs.

    Preparing takes one blocked pass over all pairs (matrix products, as the kNN search
    does); each graph then costs about (sum_gh c_gh S_g S_h) candidate pairs, a small
    multiple of its edge count when the groups are tight (S_g: sum of r over group g).
    """

    def __init__(self, X, n_groups: int | None = None):
        X = _embedding("X", X)
        n = X.shape[0]
        r = np.sqrt(np.einsum("ij,ij->i", X, X))
        groups = _direction_groups(X, r, n_groups or int(np.clip(n // 64, 1, 128)))
        self.order = np.argsort(groups, kind="stable")  # sorted position -> item
        self.X, self.r, groups = X[self.order], r[self.order], groups[self.order]
        n_groups = groups.max() + 1
        self.starts = np.searchsorted(groups, np.arange(n_groups + 1))  # group g: sorted positions starts[g]:starts[g+1]
        self.cdf = np.cumsum(self.r)
        self.mass = np.add.reduceat(self.r, self.starts[:-1]) if n else np.zeros(0)  # S_g

        rate = np.zeros((n_groups, n_groups))
        heavy = []
        block = max(1, _BLOCK_ENTRIES // n)
        for lo in range(0, n, block):
            hi = min(lo + block, n)
            p = np.clip(self.X[lo:hi] @ self.X.T, 0.0, 1.0)
            p[np.arange(hi - lo), np.arange(lo, hi)] = 0.0  # no self loops
            rows, cols = np.nonzero(p > _HEAVY)
            upper = cols > rows + lo
            heavy.append((rows[upper] + lo) * n + cols[upper])
            light = np.where(p > _HEAVY, 0.0, p)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = light / (1.0 - light) / np.outer(self.r[lo:hi], self.r)
            ratio[~np.isfinite(ratio)] = 0.0  # r_i r_j = 0: such pairs have p = 0
            by_col_group = np.maximum.reduceat(ratio, self.starts[:-1], axis=1)
            np.maximum.at(rate, groups[lo:hi], by_col_group)
        self.rate = np.maximum(rate, rate.T)
        # Heavy pairs as keys i * n + j of sorted positions i < j, increasing.
        self.heavy = np.sort(np.concatenate(heavy)) if heavy else np.zeros(0, dtype=np.int64)
        self.heavy_p = _edge_probability(self.X, self.heavy // n, self.heavy % n)

    def expected_candidates(self) -> float:
        """Mean number of candidate pairs a graph costs (compare with its edge count)."""
        g, h = np.triu_indices(len(self.mass))
        return float(self._block_mass(g, h).sum())

    def _block_mass(self, g, h):
        # Rate mass of group pair (g, h), g <= h; within a group, unordered pairs count once.
        return self.rate[g, h] * self.mass[g] * self.mass[h] * np.where(g == h, 0.5, 1.0)

    def _draw_in_groups(self, g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # Sorted positions drawn proportional to r within each group g.
        base = np.where(self.starts[g] > 0, self.cdf[self.starts[g] - 1], 0.0)
        position = np.searchsorted(self.cdf, base + rng.random(len(g)) * self.mass[g], side="right")
        return np.minimum(position, self.starts[g + 1] - 1)

    def sample(self, rng: np.random.Generator | int | None = None) -> sp.csr_array:
        rng = np.random.default_rng(rng)
        n = self.X.shape[0]
        kept = [self.heavy[rng.random(len(self.heavy)) < self.heavy_p]]

        g, h = np.triu_indices(len(self.mass))
        counts = rng.poisson(self._block_mass(g, h))
        g, h = np.repeat(g, counts), np.repeat(h, counts)
        i, j = self._draw_in_groups(g, rng), self._draw_in_groups(h, rng)
        u = rng.random(len(i))
        chunk = 1 << 18  # bounded memory for the gathered rows
        for lo in range(0, len(i), chunk):
            ci, cj, cu = i[lo : lo + chunk], j[lo : lo + chunk], u[lo : lo + chunk]
            keys = np.minimum(ci, cj) * n + np.maximum(ci, cj)
            with np.errstate(divide="ignore"):  # p = 1 only on heavy pairs, which are dropped
                mu = -np.log1p(-_edge_probability(self.X, ci, cj))
            bound = self.rate[g[lo : lo + chunk], h[lo : lo + chunk]] * self.r[ci] * self.r[cj]
            accept = (ci != cj) & ~_contains(self.heavy, keys) & (cu * bound < mu)
            kept.append(keys[accept])
        keys = np.unique(np.concatenate(kept))  # a pair kept twice is one edge
        a, b = self.order[keys // n], self.order[keys % n]
        return sp.csr_array((np.ones(2 * len(a)), (np.concatenate([a, b]), np.concatenate([b, a]))), shape=(n, n))


def _direction_groups(X: np.ndarray, r: np.ndarray, n_groups: int, iterations: int = 10) -> np.ndarray:
    """Group labels (n,) of items by direction x_i / r_i: spherical k-means (fixed start, deterministic)."""
    nonzero = np.flatnonzero(r > 0)
    if len(nonzero) == 0:  # no edges possible: one group
        return np.zeros(X.shape[0], dtype=np.int64)
    U = X / np.where(r > 0, r, 1.0)[:, None]
    centres = U[np.random.default_rng(0).choice(nonzero, min(n_groups, len(nonzero)), replace=False)]
    for _ in range(iterations):
        labels = np.argmax(U @ centres.T, axis=1)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, U)
        norms = np.linalg.norm(sums, axis=1)
        centres = sums[norms > 0] / norms[norms > 0, None]  # empty groups are dropped
    labels = np.argmax(U @ centres.T, axis=1)
    return np.unique(labels, return_inverse=True)[1]  # 0..G-1 without gaps


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[at] == keys


def _edge_probability(X: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    return np.clip(np.einsum("ij,ij->i", X[i], X[j]), 0.0, 1.0)


# ---------------------------------------------------------------------------- per-datum test


@dataclass
class PerDatumResult:
    """Outcome of :func:`per_datum_test`, one entry per item (arrays of shape (n,))."""

    statistic: np.ndarray  # T_i = ||Z_a[i] - Z_b[i]||
    p_value: np.ndarray  # (1 + #{b: T_i^b >= T_i}) / (B + 1)
    p_adjusted: np.ndarray  # Benjamini-Hochberg
    d: int  # embedding dimension used
    n_bootstrap: int

    def to_frame(self):
        """A pandas DataFrame with columns item, statistic, p_value, p_adjusted."""
        import pandas as pd

        return pd.DataFrame(
            {
                "item": np.arange(len(self.statistic)),
                "statistic": self.statistic,
                "p_value": self.p_value,
                "p_adjusted": self.p_adjusted,
            }
        )


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values: reject at FDR q where adjusted <= q."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1 or ((p < 0) | (p > 1) | np.isnan(p)).any():
        raise ValueError("p: expected a 1-D array of probabilities in [0, 1]")
    n = len(p)
    order = np.argsort(p)
    scaled = p[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]  # step-up: min over larger ranks
    out = np.empty(n)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def per_datum_test(
    Y_a,
    Y_b,
    k: int,
    d: int | None = None,
    n_bootstrap: int = 200,
    seed=None,
    *,
    metric: str = "cosine",
    progress: bool | None = None,
) -> PerDatumResult:
    """Which items do two models embed differently?

    Y_a, Y_b: (n, features_a), (n, features_b), the two models' embeddings of the same
    n items in the same order (feature counts may differ). Their kNN graphs
    (:func:`knn_graph` with ``k`` and ``metric``) are compared by
    :func:`per_datum_test_graphs`; see there for the statistic and p-values.
    """
    Y_a, Y_b = _embedding("Y_a", Y_a), _embedding("Y_b", Y_b)
    if Y_a.shape[0] != Y_b.shape[0]:
        raise ValueError(f"Y_b: expected the {Y_a.shape[0]} items of Y_a, got {Y_b.shape[0]} rows")
    return per_datum_test_graphs(
        knn_graph(Y_a, k, metric), knn_graph(Y_b, k, metric), d, n_bootstrap, seed, progress=progress
    )


def per_datum_test_graphs(
    A_a, A_b, d: int | None = None, n_bootstrap: int = 200, seed=None, *, progress: bool | None = None
) -> PerDatumResult:
    """Per-item test that graphs A_a and A_b (same n items) have the same latent positions.

    Statistic: T_i = ||Z_a[i] - Z_b[i]|| with Z = :func:`omnibus_embed` of (A_a, A_b).
    Null: both graphs are independent draws of one RDPG, estimated as X = rdpg_fit(A_a, d).
    Each of ``n_bootstrap`` rounds draws two graphs from that RDPG
    (:func:`sample_rdpg`), embeds them jointly and records T_i^b; the p-value is
    p_i = (1 + #{b: T_i^b >= T_i}) / (B + 1). With ``d=None``, d is chosen from A_a's
    eigenvalues (:func:`ase`) and used throughout. ``seed`` (int or Generator) makes
    the result reproducible. ``progress``: a tqdm bar (None: only on a terminal).
    Needs at least ``MIN_TEST_ITEMS`` (200) items: below that the null is too narrow and
    the p-values too small.
    """
    from tqdm.auto import tqdm

    A_a, A_b = _graph("A_a", A_a), _graph("A_b", A_b)
    n = A_a.shape[0]
    if A_b.shape != A_a.shape:
        raise ValueError(f"A_b: expected shape {A_a.shape} like A_a, got {A_b.shape}")
    d = _dimension(d, n)
    n_bootstrap = positive_int("n_bootstrap", n_bootstrap)
    if n < MIN_TEST_ITEMS:
        raise ValueError(
            f"A_a: the per-datum test needs at least {MIN_TEST_ITEMS} items (below that its bootstrap null is too "
            f"narrow and the p-values too small: 8.6% at or below 0.05 at n = 100 under the null), got {n}"
        )
    rng = np.random.default_rng(seed)

    X = rdpg_fit(A_a, d)
    d = X.shape[1]
    Z = _embed(_omnibus_operator([A_a, A_b]), n, d, MAX_DIM)
    statistic = np.linalg.norm(Z[:n] - Z[n:], axis=1)

    null = RdpgSampler(X)
    exceed = np.zeros(n, dtype=np.int64)
    for _ in tqdm(range(n_bootstrap), desc="bootstrap", unit="pair", disable=None if progress is None else not progress):
        Zb = _embed(_omnibus_operator([null.sample(rng), null.sample(rng)]), n, d, MAX_DIM)
        exceed += np.linalg.norm(Zb[:n] - Zb[n:], axis=1) >= statistic
    p_value = (1 + exceed) / (n_bootstrap + 1)
    return PerDatumResult(statistic, p_value, benjamini_hochberg(p_value), d, n_bootstrap)


# ---------------------------------------------------------------------------- populations of models


def model_distances(embeddings: Mapping[str, object], k: int, d: int | None = None, *, metric: str = "cosine"):
    """Distances between models from the omnibus embedding of their data kernels.

    embeddings: {name: Y} with each Y of shape (n, features) over the same n items.
    D[a, b] = ||Z_a - Z_b||_F / sqrt(n), the root mean square distance between an item's
    latent positions under models a and b in the joint (omnibus) embedding. Returns a
    symmetric pandas DataFrame indexed and labelled by the names.
    """
    import pandas as pd

    if not isinstance(embeddings, Mapping) or len(embeddings) < 2:
        raise ValueError(f"embeddings: expected a mapping of at least two names to arrays, got {type(embeddings).__name__}"
                         + (f" with {len(embeddings)} entries" if isinstance(embeddings, Mapping) else ""))
    names = [str(name) for name in embeddings]
    arrays = [_embedding(f"embeddings[{name!r}]", Y) for name, Y in zip(names, embeddings.values())]
    n = arrays[0].shape[0]
    for name, Y in zip(names, arrays):
        if Y.shape[0] != n:
            raise ValueError(f"embeddings[{name!r}]: expected the {n} items of embeddings[{names[0]!r}], got {Y.shape[0]} rows")
    Z = omnibus_embed([knn_graph(Y, k, metric) for Y in arrays], d)
    flat = Z.reshape(len(names), -1)
    gram = flat @ flat.T
    sq = np.diag(gram)[:, None] + np.diag(gram)[None, :] - 2 * gram
    D = np.sqrt(np.maximum(sq, 0.0) / n)
    np.fill_diagonal(D, 0.0)
    return pd.DataFrame(D, index=names, columns=names)


def model_manifold(D, n_components: int = 2):
    """Classical (Torgerson) MDS of a distance matrix: coordinates whose distances match D.

    D: (m, m) symmetric with zero diagonal (array or DataFrame such as
    :func:`model_distances` returns). B = -J D^2 J / 2 (J centres), coordinates are
    V sqrt(lambda) for its ``n_components`` largest eigenvalues (negative ones, from
    non-Euclidean D, give zero coordinates). Each axis' sign makes its largest-magnitude
    coordinate positive, so results are deterministic. Returns a DataFrame (m,
    n_components) with columns mds1, mds2, ... indexed by the models' names.
    """
    import pandas as pd

    names = list(D.index) if isinstance(D, pd.DataFrame) else None
    D = np.asarray(D, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] != D.shape[1] or D.shape[0] < 2:
        raise ValueError(f"D: expected a square distance matrix of at least 2 models, got shape {D.shape}")
    m = D.shape[0]
    if not np.isfinite(D).all() or (D < 0).any():
        raise ValueError("D: expected finite nonnegative distances")
    scale = max(D.max(), np.finfo(np.float64).tiny)
    if abs(D - D.T).max() > 1e-9 * scale or abs(np.diag(D)).max() > 1e-9 * scale:
        raise ValueError("D: expected a symmetric matrix with a zero diagonal")
    n_components = positive_int("n_components", n_components, upper=m, upper_text=f"the {m} models")

    J = np.eye(m) - 1.0 / m
    B = -0.5 * J @ (D**2) @ J
    values, vectors = np.linalg.eigh(B)
    values, vectors = values[::-1][:n_components], vectors[:, ::-1][:, :n_components]
    coords = vectors * np.sqrt(np.maximum(values, 0.0))
    flip = np.sign(coords[np.argmax(abs(coords), axis=0), np.arange(n_components)])
    coords *= np.where(flip == 0, 1.0, flip)
    return pd.DataFrame(coords, index=names, columns=[f"mds{c + 1}" for c in range(n_components)])


def plot_manifold(coords, path, title: str = "models by data kernel (classical MDS)") -> Path:
    """Save the models of :func:`model_manifold` as labelled points in a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = coords.iloc[:, 0].to_numpy()
    y = coords.iloc[:, 1].to_numpy() if coords.shape[1] > 1 else np.zeros_like(x)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(x, y, s=40, color="tab:blue", zorder=2)
    for name, xi, yi in zip(coords.index, x, y):
        ax.annotate(str(name), (xi, yi), textcoords="offset points", xytext=(5, 5), fontsize=9)
    ax.set_xlabel("MDS 1")
    ax.set_ylabel("MDS 2" if coords.shape[1] > 1 else "")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.margins(0.15)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------- whole comparisons


def compare_models(
    embeddings: Mapping[str, object],
    k: int,
    out,
    *,
    d: int | None = None,
    n_bootstrap: int = 200,
    seed=None,
    metric: str = "cosine",
    items=None,
    alpha: float = 0.05,
    progress: bool | None = None,
) -> str:
    """Compare a population of models and write the results to the folder ``out``.

    embeddings: {name: Y} over the same n items. Writes ``per_datum.csv`` (the first model
    against each other one: model_a, model_b, item, statistic, p_value, p_adjusted, plus
    the columns of ``items``, a DataFrame with one row per item, when given),
    ``distances.csv``, ``manifold.csv`` and ``manifold.png``. Returns a short text report:
    items flagged at ``alpha`` (raw and BH), the items that differ most, the distances.
    """
    import pandas as pd

    names = list(embeddings)
    if len(names) < 2:
        raise ValueError(f"embeddings: expected at least two models, got {len(names)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    reference = names[0]
    lines, frames = [], []
    for name in names[1:]:
        result = per_datum_test(embeddings[reference], embeddings[name], k, d, n_bootstrap, rng, metric=metric, progress=progress)
        frame = result.to_frame()
        if items is not None:
            frame = pd.concat([frame, items.reset_index(drop=True).drop(columns="item", errors="ignore")], axis=1)
        frames.append(pd.concat([pd.DataFrame({"model_a": reference, "model_b": name}, index=frame.index), frame], axis=1))
        top = frame.sort_values("statistic", ascending=False).head(5)
        if items is not None:  # a few identifying columns, file names without folders
            shown = ["item", "statistic", "p_value", "p_adjusted"] + [c for c in items.columns if c != "item"][:3]
            top = top[shown].apply(lambda col: col.map(lambda v: Path(v).name) if col.name == "path" else col)
        lines.append(
            f"{reference} vs {name} (d={result.d}, B={n_bootstrap}): {(result.p_value <= alpha).sum()} of {len(frame)} items "
            f"with p <= {alpha}, {(result.p_adjusted <= alpha).sum()} after Benjamini-Hochberg; most different:"
        )
        lines.append(top.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    pd.concat(frames).to_csv(out / "per_datum.csv", index=False)

    D = model_distances(embeddings, k, d, metric=metric)
    D.to_csv(out / "distances.csv")
    coords = model_manifold(D, n_components=2)
    coords.to_csv(out / "manifold.csv")
    plot_manifold(coords, out / "manifold.png")
    lines.append("distances (RMS distance of an item's omnibus positions):")
    lines.append(D.to_string(float_format=lambda v: f"{v:.4f}"))
    lines.append(f"wrote {out / 'per_datum.csv'}, distances.csv, manifold.csv, manifold.png")
    return "\n".join(lines)


def embed_checkpoints(checkpoints: Mapping[str, object], data, split: str | None = "test", batch_size: int = 32):
    """Penultimate features of a WAV folder's items under trained ssmkit classifiers.

    checkpoints: {name: path of a checkpoint from ``ssmkit train classify``}. Each model
    embeds the items of ``data`` (a WavFolder root such as FSDD; ``split`` "train",
    "test" or None for all) as its training run fed them (rate, crop length, masks).
    Returns ({name: float32 array (items, features)}, a DataFrame of the items: item,
    path, label, speaker, ...), the items in the same order for every model.
    """
    import pandas as pd
    import torch

    from ..data.audio import WavFolder, collate_padded
    from ..models.checkpoint import load_classifier

    embeddings, paths = {}, None
    for name, path in checkpoints.items():
        model = load_classifier(path)
        spec = model.model_config.get("input", {})
        if "sample_rate" not in spec:
            raise ValueError(f"checkpoints[{name!r}]: {path} is not an audio classifier (task {model.model_config.get('task')!r})")
        dataset = WavFolder(data, spec["sample_rate"], spec.get("length"), split=split, crop="center", pad="none")
        if paths is None:
            paths = [it["path"] for it in dataset.metadata]
            items = dataset.dataframe()
        elif [it["path"] for it in dataset.metadata] != paths:
            raise ValueError(f"checkpoints[{name!r}]: its items of {data} differ from those of the first model")
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_padded)
        features = []
        with torch.no_grad():
            for x, _, mask in loader:
                features.append(model.embed(x.squeeze(-1), mask).float().numpy())
        embeddings[name] = np.concatenate(features)
    items.insert(0, "item", np.arange(len(items)))
    return embeddings, pd.DataFrame(items)
