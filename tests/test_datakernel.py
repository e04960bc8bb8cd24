"""ssmkit.eval.datakernel: data kernels, spectral embeddings, per-datum tests, model manifolds.

Every quantity is checked against an independent construction (brute-force neighbours,
a dense omnibus matrix, dense Bernoulli draws, scipy's BH) or against a statistical
property of the method (uniform null p-values, power on planted differences, order of a
noise population on the manifold).
"""

import numpy as np
import pytest

pytest.importorskip("scipy")
pytest.importorskip("pandas")
import scipy.sparse as sp
from scipy import stats
from scipy.spatial.distance import cdist

from ssmkit.eval import datakernel as dk


def clustered(rng, n, n_clusters=6, features=16, spread=1.5):
    """Gaussian clusters: embeddings (n, features) and their labels (n,)."""
    centres = rng.normal(size=(n_clusters, features)) * spread
    labels = rng.integers(0, n_clusters, n)
    return centres[labels] + rng.normal(size=(n, features)), labels, centres


def dense_rdpg(P, rng):
    """A 0/1 symmetric hollow adjacency with independent Bernoulli(P) edges, drawn densely."""
    upper = np.triu(rng.random(P.shape) < P, 1)
    return (upper | upper.T).astype(np.float64)


def knn_accuracy(Y, labels, k=5):
    """Leave-one-out accuracy of a k-nearest-neighbour majority vote (Euclidean)."""
    dist = cdist(Y, Y)
    np.fill_diagonal(dist, np.inf)
    votes = labels[np.argsort(dist, axis=1)[:, :k]]
    predicted = np.array([np.bincount(v, minlength=labels.max() + 1).argmax() for v in votes])
    return float((predicted == labels).mean())


# ---------------------------------------------------------------------------- knn_graph


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("n, k", [(97, 1), (97, 7), (40, 39)])
def test_knn_graph_is_the_union_of_brute_force_neighbourhoods(metric, n, k):
    rng = np.random.default_rng(n + k)
    Y = rng.normal(size=(n, 5)).astype(np.float32)
    A = dk.knn_graph(Y, k, metric)
    assert sp.issparse(A) and A.shape == (n, n)
    dist = cdist(Y.astype(np.float64), Y.astype(np.float64), metric)
    np.fill_diagonal(dist, np.inf)
    directed = np.zeros((n, n))
    directed[np.repeat(np.arange(n), k), np.argsort(dist, axis=1)[:, :k].ravel()] = 1
    np.testing.assert_array_equal(A.toarray(), np.maximum(directed, directed.T))
    assert A.diagonal().sum() == 0
    assert (np.asarray(A.sum(axis=1)).ravel() >= k).all()


def test_knn_graph_is_blockwise_for_large_inputs(monkeypatch):
    # Small blocks force the row-block path: same graph as one block.
    rng = np.random.default_rng(3)
    Y = rng.normal(size=(150, 4))
    whole = dk.knn_graph(Y, 6)
    monkeypatch.setattr(dk, "_BLOCK_ENTRIES", 150 * 7)
    assert (dk.knn_graph(Y, 6) != whole).nnz == 0


# ---------------------------------------------------------------------------- dimension, ASE, omnibus


def test_profile_likelihood_elbow_matches_a_brute_force_likelihood():
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = np.sort(np.concatenate([rng.normal(10, 1, rng.integers(1, 6)), rng.normal(2, 1, rng.integers(2, 30))]))[::-1]
        p = len(values)

        def loglik(q):
            head, tail = values[:q], values[q:]
            var = (((head - head.mean()) ** 2).sum() + ((tail - tail.mean()) ** 2).sum()) / (p - 2)
            return stats.norm.logpdf(head, head.mean(), np.sqrt(var)).sum() + stats.norm.logpdf(tail, tail.mean(), np.sqrt(var)).sum()

        best = max(range(1, p), key=loglik)
        assert dk.profile_likelihood_elbows(values, 1) == [best]


def test_profile_likelihood_elbows_find_two_levels():
    values = [30, 29, 31, 10, 11, 9, 10.5, 1, 1.2, 0.9, 1.1, 1.0, 0.8, 1.05, 0.95]
    assert dk.profile_likelihood_elbows(values, 2) == [3, 7]


def sbm_positions(n, rng):
    """Latent positions of a 3-block stochastic block model (rank 3) and the blocks."""
    B = np.array([[0.5, 0.1, 0.1], [0.1, 0.45, 0.05], [0.1, 0.05, 0.4]])
    values, vectors = np.linalg.eigh(B)
    roots = vectors * np.sqrt(values)
    blocks = rng.integers(0, 3, n)
    return roots[blocks], blocks


def aligned(X, Y):
    """X rotated onto Y by the best orthogonal map (Procrustes)."""
    U, _, Vt = np.linalg.svd(X.T @ Y)
    return X @ U @ Vt


def test_ase_recovers_latent_positions_and_dimension():
    rng = np.random.default_rng(1)
    errors = []
    for n in (300, 1200):
        X, blocks = sbm_positions(n, rng)
        Xhat = dk.ase(sp.csr_array(dense_rdpg(X @ X.T, rng)))
        assert Xhat.shape == (n, 3)  # the elbow finds the block count
        Xhat = aligned(Xhat, X)
        roots = np.unique(X, axis=0)
        nearest = np.argmin(cdist(Xhat, roots), axis=1)
        np.testing.assert_array_equal(roots[nearest], X)  # every item lands nearest its own block
        errors.append(np.linalg.norm(Xhat - X, axis=1).mean())
    assert 0.35 < errors[1] / errors[0] < 0.65  # consistent: error ~ 1/sqrt(n), so 4x the items halves it


def test_omnibus_matches_a_dense_omnibus_matrix():
    rng = np.random.default_rng(2)
    X, _ = sbm_positions(100, rng)  # 3 x 100 rows: the sparse eigensolver path
    graphs = [dense_rdpg(X @ X.T, rng) for _ in range(3)]
    Z = dk.omnibus_embed([sp.csr_array(G) for G in graphs], d=3)
    M = np.block([[(Gi + Gj) / 2 for Gj in graphs] for Gi in graphs])
    values, vectors = np.linalg.eigh(M)
    truth = (vectors[:, ::-1][:, :3] * np.sqrt(values[::-1][:3])).reshape(3, 100, 3)
    assert Z.shape == (3, 100, 3)
    for j in range(3):  # eigenvectors are defined up to sign
        sign = np.sign(Z[..., j].ravel() @ truth[..., j].ravel())
        np.testing.assert_allclose(sign * Z[..., j], truth[..., j], atol=1e-9)


def test_omnibus_of_identical_graphs_gives_identical_positions():
    rng = np.random.default_rng(3)
    A = dk.knn_graph(rng.normal(size=(250, 6)), 8)
    Z = dk.omnibus_embed([A, A], d=4)
    np.testing.assert_allclose(Z[0], Z[1], atol=1e-10)


# ---------------------------------------------------------------------------- RDPG sampling


def test_rdpg_sampler_draws_each_edge_with_its_probability():
    rng = np.random.default_rng(4)
    n, draws = 50, 2000
    X = np.abs(rng.normal(size=(n, 3))) * rng.uniform(0.05, 0.6, (n, 1))
    X[:4] *= 2.5  # some p_ij above 1/2 (drawn one by one) and some clipped at 1
    X[4:20, 1:] *= -1  # some negative inner products (p = 0)
    P = np.clip(X @ X.T, 0, 1)
    np.fill_diagonal(P, 0)
    sampler = dk.RdpgSampler(X, n_groups=4)
    counts = sum(sampler.sample(rng).toarray() for _ in range(draws))
    np.testing.assert_array_equal(counts, counts.T)
    assert counts.diagonal().sum() == 0
    upper = np.triu_indices(n, 1)
    c, p = counts[upper], P[upper]
    assert (c[p == 0] == 0).all() and (c[p == 1] == draws).all()
    inner = (p > 0) & (p < 1)
    assert (p > dk._HEAVY).any() and (p[inner] < dk._HEAVY).any()
    # Binomial tests of every pair (two-sided, doubled tail): the smallest, Bonferroni-corrected, is not extreme.
    c, p = c[inner], p[inner]
    tails = np.minimum(stats.binom.cdf(c, draws, p), stats.binom.sf(c - 1, draws, p))
    assert np.minimum(2 * tails, 1).min() * len(c) > 1e-3
    # Pearson's chi-square over the pairs with at least 5 expected edges and non-edges.
    large = (draws * p >= 5) & (draws * (1 - p) >= 5)
    chi2 = ((c - draws * p) ** 2 / (draws * p * (1 - p)))[large].sum()
    assert stats.chi2.sf(chi2, large.sum()) > 1e-3


def test_degenerate_positions_and_graphs():
    assert dk.sample_rdpg(np.zeros((50, 2)), 0).nnz == 0  # p = 0 everywhere
    X = np.r_[np.zeros((10, 2)), np.full((40, 2), 0.5)]  # items with no edges beside a clique of p = 1/2
    A = dk.sample_rdpg(X, 0).toarray()
    assert A[:10].sum() == 0 and A[10:, 10:].sum() > 0
    assert not dk.ase(sp.csr_array((300, 300)), d=2).any()  # an empty graph has zero positions


def test_rdpg_sampler_is_sparse_on_a_knn_fit():
    # Candidates examined per graph stay a small multiple of its edges.
    rng = np.random.default_rng(5)
    Y, _, _ = clustered(rng, 2000, n_clusters=10)
    X = dk.ase(dk.knn_graph(Y, 10))
    sampler = dk.RdpgSampler(X)
    edges = sampler.sample(rng).nnz / 2
    assert sampler.expected_candidates() < 4 * edges


# ---------------------------------------------------------------------------- per-datum test


def null_pvalues(repeats, n, n_bootstrap, seed):
    """One item's p-value per repeat; A_a and A_b are independent draws of one RDPG."""
    rng = np.random.default_rng(seed)
    out = []
    for r in range(repeats):
        X = rng.dirichlet([1, 1, 1], size=n) * 0.7
        P = X @ X.T
        result = dk.per_datum_test_graphs(dense_rdpg(P, rng), dense_rdpg(P, rng), d=3, n_bootstrap=n_bootstrap, seed=rng, progress=False)
        out.append(result.p_value[r % n])
    return np.array(out)


def test_null_pvalues_are_uniform():
    p = null_pvalues(repeats=30, n=200, n_bootstrap=29, seed=0)  # the smallest n the test takes
    ks = stats.kstest(p, "uniform")
    print(f"KS statistic {ks.statistic:.3f}, p-value {ks.pvalue:.3f}, fraction <= 0.05: {(p <= 0.05).mean():.3f}")
    assert ks.pvalue > 0.01


@pytest.mark.slow
def test_null_pvalues_are_uniform_over_many_repeats():
    p = null_pvalues(repeats=100, n=200, n_bootstrap=49, seed=1)
    ks = stats.kstest(p, "uniform")
    print(f"KS statistic {ks.statistic:.3f}, p-value {ks.pvalue:.3f}, fraction <= 0.05: {(p <= 0.05).mean():.3f}")
    assert ks.pvalue > 0.01


def test_small_n_is_refused_with_the_reason():
    """At n = 100 the bootstrap null is too narrow (8.25% of 400 independent null p-values at
    or below 0.05 with B = 19, where 5% + 2.5 binomial sd is 7.7%): the test refuses it."""
    rng = np.random.default_rng(0)
    X = rng.dirichlet([1, 1, 1], size=199) * 0.7
    A = dense_rdpg(X @ X.T, rng)
    with pytest.raises(ValueError, match="A_a: the per-datum test needs at least 200 items .* got 199"):
        dk.per_datum_test_graphs(A, A, d=3, n_bootstrap=5, seed=0, progress=False)
    with pytest.raises(ValueError, match="needs at least 200 items"):
        dk.per_datum_test(rng.normal(size=(100, 4)), rng.normal(size=(100, 4)), k=5, n_bootstrap=5, progress=False)


def planted(seed, n=600, moved_fraction=0.05):
    """Two embeddings of n items; Y_b is Y_a plus small noise, with 5% of items moved to another cluster."""
    rng = np.random.default_rng(seed)
    Y_a, labels, centres = clustered(rng, n, n_clusters=8, spread=2.0)
    Y_b = Y_a + 0.3 * rng.normal(size=Y_a.shape)
    moved = rng.choice(n, int(moved_fraction * n), replace=False)
    elsewhere = (labels[moved] + rng.integers(1, len(centres), len(moved))) % len(centres)
    Y_b[moved] = centres[elsewhere] + rng.normal(size=(len(moved), Y_a.shape[1]))
    return Y_a, Y_b, moved


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_differences_are_found(seed):
    Y_a, Y_b, moved = planted(seed)
    result = dk.per_datum_test(Y_a, Y_b, k=10, n_bootstrap=99, seed=seed, progress=False)
    flagged = result.p_value <= 0.05
    others = np.setdiff1d(np.arange(len(Y_a)), moved)
    print(f"d={result.d} power={flagged[moved].mean():.3f} false flags={flagged[others].mean():.3f}")
    assert flagged[moved].mean() >= 0.9
    # At most 5% of the unmoved items, plus three binomial standard deviations of noise.
    assert flagged[others].mean() <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / len(others))


@pytest.mark.slow
def test_ten_thousand_items_with_100_bootstraps():
    # The size (report its time: pytest -m slow -s -k ten_thousand); the test checks results only.
    import time

    rng = np.random.default_rng(0)
    Y_a, labels, centres = clustered(rng, 10_000, n_clusters=20, features=32)
    Y_b = Y_a + 0.3 * rng.normal(size=Y_a.shape)
    moved = rng.choice(len(Y_a), len(Y_a) // 20, replace=False)
    Y_b[moved] = centres[(labels[moved] + 1) % len(centres)] + rng.normal(size=(len(moved), Y_a.shape[1]))
    start = time.perf_counter()
    result = dk.per_datum_test(Y_a, Y_b, k=10, n_bootstrap=100, seed=0)
    flagged = result.p_value <= 0.05
    others = np.setdiff1d(np.arange(len(Y_a)), moved)
    print(f"n=10000 k=10 B=100 d={result.d}: {time.perf_counter() - start:.0f} s; power {flagged[moved].mean():.3f}, false flags {flagged[others].mean():.4f}")
    assert flagged[moved].mean() >= 0.9
    assert flagged[others].mean() <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / len(others))


def test_per_datum_test_is_reproducible_with_a_seed():
    Y_a, Y_b, _ = planted(3, n=300)
    first = dk.per_datum_test(Y_a, Y_b, k=8, n_bootstrap=20, seed=7, progress=False)
    again = dk.per_datum_test(Y_a, Y_b, k=8, n_bootstrap=20, seed=7, progress=False)
    other = dk.per_datum_test(Y_a, Y_b, k=8, n_bootstrap=20, seed=8, progress=False)
    np.testing.assert_array_equal(first.statistic, again.statistic)
    np.testing.assert_array_equal(first.p_value, again.p_value)
    assert not np.array_equal(first.p_value, other.p_value)
    frame = first.to_frame()
    assert list(frame.columns) == ["item", "statistic", "p_value", "p_adjusted"] and len(frame) == 300
    assert ((frame.p_value >= 1 / 21) & (frame.p_value <= 1)).all()


def test_benjamini_hochberg_matches_scipy():
    p = np.random.default_rng(6).uniform(size=200) ** 3
    np.testing.assert_allclose(dk.benjamini_hochberg(p), stats.false_discovery_control(p), rtol=1e-12)


# ---------------------------------------------------------------------------- populations of models


def test_noise_population_is_ordered_on_the_manifold_and_tracks_accuracy():
    rng = np.random.default_rng(8)
    Y, labels, _ = clustered(rng, 400)
    noise = np.linspace(0.0, 2.0, 8)
    models = {f"noise {s:.2f}": Y + s * rng.normal(size=Y.shape) for s in noise}
    D = dk.model_distances(models, k=10)
    assert list(D.index) == list(models) and np.allclose(D, D.T) and (np.diag(D) == 0).all()
    coords = dk.model_manifold(D)
    assert abs(stats.spearmanr(coords["mds1"], noise)[0]) >= 0.9
    accuracy = [knn_accuracy(Yi, labels) for Yi in models.values()]
    assert stats.spearmanr(D.iloc[0], accuracy)[0] <= -0.9  # farther from the clean model, less accurate


def test_model_manifold_recovers_a_planar_configuration(tmp_path):
    rng = np.random.default_rng(9)
    points = rng.normal(size=(7, 2))
    D = cdist(points, points)
    coords = dk.model_manifold(D)
    np.testing.assert_allclose(cdist(coords.to_numpy(), coords.to_numpy()), D, atol=1e-10)
    path = dk.plot_manifold(coords, tmp_path / "manifold.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: dk.knn_graph(np.zeros(5), 2), ValueError, "Y: expected an array of shape (items, features)"),
        (lambda: dk.knn_graph(np.ones((5, 2)), 5), ValueError, "k: expected at most 4"),
        (lambda: dk.knn_graph(np.ones((5, 2)), 0), ValueError, "k: expected a positive integer, got 0"),
        (lambda: dk.knn_graph(np.ones((5, 2)), 2.5), ValueError, "k: expected a positive integer, got 2.5"),
        (lambda: dk.knn_graph(np.ones((5, 2)), 2, "manhattan"), ValueError, "metric: expected one of"),
        (lambda: dk.knn_graph(np.r_[np.ones((4, 2)), np.zeros((1, 2))], 2), ValueError, "row 4 is all zeros"),
        (lambda: dk.knn_graph(np.r_[np.ones((4, 2)), [[np.nan, 1]]], 2), ValueError, "row 4 has NaN or Inf"),
        (lambda: dk.knn_graph(np.ones((5, 2), dtype=complex), 2), TypeError, "expected real numbers"),
        (lambda: dk.ase(np.ones((3, 4))), ValueError, "A: expected a square adjacency matrix"),
        (lambda: dk.ase(np.triu(np.ones((4, 4)))), ValueError, "A: expected a symmetric adjacency matrix"),
        (lambda: dk.ase(np.ones((4, 4)) - np.eye(4), d=4), ValueError, "d: expected at most 3"),
        (lambda: dk.omnibus_embed([np.ones((4, 4)), np.ones((5, 5))]), ValueError, "graphs[1]: expected 4 items"),
        (lambda: dk.omnibus_embed(np.ones((4, 4))), TypeError, "graphs: expected a list of adjacency matrices"),
        (lambda: dk.per_datum_test(np.ones((6, 2)), np.ones((5, 2)), 2), ValueError, "Y_b: expected the 6 items of Y_a, got 5"),
        (lambda: dk.per_datum_test(np.eye(6) + 1, np.eye(6) + 1, 2, n_bootstrap=0), ValueError, "n_bootstrap: expected a positive integer"),
        (lambda: dk.model_distances({"a": np.ones((5, 2))}, 2), ValueError, "embeddings: expected a mapping of at least two"),
        (lambda: dk.model_distances({"a": np.eye(5) + 1, "b": np.eye(4) + 1}, 2), ValueError, "embeddings['b']: expected the 5 items"),
        (lambda: dk.model_manifold(np.ones((3, 3))), ValueError, "D: expected a symmetric matrix with a zero diagonal"),
        (lambda: dk.model_manifold(np.zeros((3, 3)), n_components=4), ValueError, "n_components: expected at most 3"),
        (lambda: dk.benjamini_hochberg([0.5, 1.5]), ValueError, "p: expected a 1-D array of probabilities"),
    ],
)
def test_bad_input_names_the_argument(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)
