"""Seeds, fuzzing profiles, and the models and helpers that several test modules share
(import them with ``from conftest import ...``; test modules never import each other)."""

import copy
import os
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))  # tests/accuracy.py

from ssmkit.models import SaShiMi  # noqa: E402
from ssmkit.models.sashimi import START, shift_right  # noqa: E402
from ssmkit.nn import S4  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Torch on one thread: steps work on tiny tensors, where torch's thread pool only
    adds wake-up latency (and on a loaded machine a lot of it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_steps(m, x, state=None):
    """m.step over x[:, t] (an S4 layer's inputs or SaShiMi's tokens) from `state`
    (default: m.default_state(batch)): the outputs stacked on dim 1, and the state."""
    state = m.default_state(x.shape[0]) if state is None else state
    ys = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            y, state = m.step(x[:, t], state)
            ys.append(y)
    return torch.stack(ys, 1), state


# ---- random values for the JAX tests (NumPy) ----------------------------------------


def complex_normal(rng, *shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def s4_poles(rng, *shape):
    """S4-like stable values: Re in [-1, -0.05], Im in [0, 10]."""
    return -rng.uniform(0.05, 1.0, shape) + 1j * rng.uniform(0.0, 10.0, shape)


def decaying(rng, *shape):
    """Discrete poles inside the unit circle, |dA| in [0.5, 0.99]."""
    return rng.uniform(0.5, 0.99, shape) * np.exp(1j * rng.uniform(-np.pi, np.pi, shape))


# ---- SaShiMi -------------------------------------------------------------------------

SMALL = dict(d_model=8, n_layers=1, pool=(4, 4), expand=2, ff=1, d_state=8)


def small(mode, **kw):
    """A small float32 SaShiMi on the compiled kernels (its biases randomised so that no
    path is trivially zero)."""
    m = SaShiMi(**(SMALL | dict(mode=mode, backend="compiled") | kw))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    return m.eval()


def twins(m):
    """The float32 reference-backend twin and the float64 copy (ground truth) of a model."""
    ref = copy.deepcopy(m)
    for layer in ref.modules():
        if isinstance(layer, S4):
            layer.backend = "reference"
    return ref, copy.deepcopy(m).double()


def tokens(batch, L):
    """A smooth random walk in mu-law codes, like audio, after the start token."""
    walk = torch.cumsum(torch.randint(-3, 4, (batch, L)), 1) + START
    return shift_right(walk.clamp(0, 255))


def with_truth(mode, batch, L, **kw):
    """A small SaShiMi (l_max=L), its twins, tokens (batch, L) and the float64
    convolution's logits of them: (m, ref, m64, x, truth)."""
    m = small(mode, l_max=L, **kw)
    ref, m64 = twins(m)
    x = tokens(batch, L)
    with torch.no_grad():
        truth = m64(x)
    return m, ref, m64, x, truth


# Fuzzing budgets of tests/test_fuzz.py (pytest --hypothesis-profile=NAME): "dev" for
# quick local runs (the default, random), "ci" for .ci/run (derandomized: the same
# examples on every run, so CI never fails by chance; new ground is broken by "dev"
# and "long" runs, which are random), "long" for a soak run.
settings.register_profile("dev", max_examples=25, deadline=None, print_blob=True)
settings.register_profile("ci", max_examples=100, deadline=None, print_blob=True, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=2000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("dev")


def _long_double_solve(A, B):
    """A X = B by Gaussian elimination with partial pivoting in NumPy's long double."""
    A, B, n = A.copy(), B.copy(), A.shape[0]
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[[k, p]], B[[k, p]] = A[[p, k]], B[[p, k]]
        f = A[k + 1 :, k] / A[k, k]
        A[k + 1 :] -= f[:, None] * A[k]
        B[k + 1 :] -= f[:, None] * B[k]
    X = np.zeros_like(B)
    for k in range(n - 1, -1, -1):
        X[k] = (B[k] - A[k, k + 1 :] @ X[k + 1 :]) / A[k, k]
    return X


def untruncated_C_long_double(dt, Lambda, P, C, L):
    """C~ (I - dA^L)^{-1} with dense matrices, dA^L by repeated squaring, all in long double
    (64-bit mantissa): the ground truth of dplr_untruncated_C, stored half (H, N).
    Arguments: complex128 torch tensors or NumPy arrays; returns a complex128 NumPy array."""
    ld = np.clongdouble
    Lambda, P, C = map(np.asarray, (Lambda, P, C))
    out = []
    for h in range(Lambda.shape[0]):
        lf, Pf, Cf = (np.concatenate([t[h], t[h].conj()], -1).astype(ld) for t in (Lambda, P, C))
        A = np.diag(lf) - Pf.T @ Pf.conj()
        eye = np.eye(len(lf), dtype=ld)
        half = np.longdouble(float(dt[h])) / 2
        dA = _long_double_solve(eye - half * A, eye + half * A)
        power, base, e = eye, dA, L
        while e:
            power, base, e = (power @ base if e & 1 else power), base @ base, e >> 1
        out.append(_long_double_solve((eye - power).T, Cf[:, None])[: Lambda.shape[1], 0].astype(np.complex128))
    return np.stack(out)
