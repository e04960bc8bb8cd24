"""Tests of ssmkit.jax.reference, the pure-jnp definitions of the primitives: values against
the torch ground truth ssmkit.ops.reference (through NumPy; the 2x rule in complex64, the
double floor in complex128), gradients against torch autograd in complex128 (JAX's
convention: the conjugate of torch's for a complex input), and jit."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from accuracy import assert_close_2x
from conftest import complex_normal, decaying, s4_poles

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from ssmkit.jax import reference as jref  # noqa: E402
from ssmkit.ops import reference as tref  # noqa: E402


def _cases():
    """(id, function name, positional arrays, static keyword options)."""
    rng = np.random.default_rng(0)
    c, poles, decay = (functools.partial(f, rng) for f in (complex_normal, s4_poles, decaying))
    real = rng.standard_normal
    H, N, batch, L = 3, 4, 2, 7
    dt = rng.uniform(0.01, 0.5, H)
    step = [c(batch, H, N), real((batch, H)), decay(H, N), c(H, N), c(H, N)]
    dplr = [dt, poles(H, N), 0.5 * c(H, 1, N), c(H, N)]
    scan = [real((batch, L, H)), decay(H, N), c(H, N), c(H, N)]
    return [
        ("cauchy-pairs", "cauchy", [c(2, 1, N), 1j * c(3, L).imag, poles(2, 1, N)], {}),
        ("cauchy", "cauchy", [c(3, N), c(3, L), poles(3, N)], {"conj_pairs": False}),
        ("vandermonde-pairs", "vandermonde", [c(2, 1, N), 0.1 * poles(3, N), L], {}),
        ("vandermonde", "vandermonde", [c(3, N), 0.1 * poles(3, N), L], {"conj_pairs": False}),
        ("vandermonde-exact", "vandermonde", [c(3, N), 0.1 * poles(3, N), L], {"exact_exponent": True}),
        ("transpose-real", "vandermonde_transpose", [real((3, L)), c(3, N), 0.1 * poles(N)], {}),
        ("transpose-complex", "vandermonde_transpose", [c(1, L), c(3, N), 0.1 * poles(3, N)], {}),
        ("zoh", "discretize", [dt, poles(H, N), c(H, N)], {}),
        ("bilinear", "discretize", [dt, poles(H, N), c(H, N)], {"method": "bilinear"}),
        ("step", "ssm_step", step + [real(H)], {}),
        ("step-no-D", "ssm_step", step, {}),
        ("scan", "ssm_scan", scan + [real(H), c(batch, H, N)], {}),
        ("scan-zero-start", "ssm_scan", scan + [real(H)], {}),
        ("ssm-kernel", "ssm_kernel", [decay(H, N), c(H, N), c(H, N), L], {}),
        ("dplr-dense", "dplr_dense", dplr, {}),
        ("dplr-step", "dplr_step", [c(batch, H, N), real((batch, H))] + dplr + [c(H, N), real(H)], {}),
    ]


CASES = _cases()
IDS = [c[0] for c in CASES]


def _cast(args, precision):
    """numpy arrays in the case's precision (complex64/float32 or complex128/float64); sizes kept."""
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            a = a.astype({(True, 64): np.complex64, (True, 128): np.complex128,
                          (False, 64): np.float32, (False, 128): np.float64}[(np.iscomplexobj(a), precision)])  # fmt: skip
        out.append(a)
    return out


def _torch(name, args, kw, dtype_of=None):
    """The torch reference on the arrays (upcast to double with dtype_of="double")."""
    ts = [torch.from_numpy(np.asarray(a)) if isinstance(a, np.ndarray) else a for a in args]
    if dtype_of == "double":
        ts = [t.to(torch.complex128 if t.is_complex() else torch.float64) if torch.is_tensor(t) else t for t in ts]
    out = getattr(tref, name)(*ts, **kw)
    return list(out) if isinstance(out, tuple) else [out]


def _jax(name, args, kw):
    out = getattr(jref, name)(*[jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args], **kw)
    return list(out) if isinstance(out, tuple) else [out]


def _of_arrays(name, args, kw):
    """The reference as a function of the case's arrays alone (sizes held fixed), and those arrays."""
    arrays = [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]

    def call(*xs):
        full = list(args)
        for i, x in zip(arrays, xs):
            full[i] = x
        return _jax(name, full, kw)

    return call, arrays


def _complex64(case):
    """The case's name, arrays in complex64/float32 and options; exact_exponent cases skip."""
    _, name, args, kw = case
    if kw.get("exact_exponent"):
        pytest.skip("exact_exponent is complex128 only")
    return name, _cast(args, 64), kw


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_complex64_within_2x_of_the_torch_reference(case):
    name, args, kw = _complex64(case)
    outs, truths, lows = _jax(name, args, kw), _torch(name, args, kw, "double"), _torch(name, args, kw)
    for i, (o, t, low) in enumerate(zip(outs, truths, lows)):
        assert o.dtype == np.dtype(str(low.dtype).replace("torch.", "")), (o.dtype, low.dtype)
        assert_close_2x(f"{name}[{i}]", torch.from_numpy(np.array(o)), t, low)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_complex128_equals_the_torch_reference(case):
    _, name, args, kw = case
    with jax.enable_x64(True):
        outs = _jax(name, _cast(args, 128), kw)
        for i, (o, t) in enumerate(zip(outs, _torch(name, _cast(args, 128), kw))):
            assert o.dtype == np.dtype(str(t.dtype).replace("torch.", ""))
            assert_close_2x(f"{name}[{i}]", torch.from_numpy(np.array(o)), t)


def _weights(outs, rng):
    """Random real weights for a real loss of the outputs: (re, im) per output."""
    return [(rng.standard_normal(np.shape(o)), rng.standard_normal(np.shape(o))) for o in outs]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_grad_is_conjugate_of_torch_autograd(case):
    """jax.grad of a real loss of every output, in every array input, in complex128: equal
    to torch autograd's gradient for real inputs and to its conjugate for complex ones."""
    _, name, args, kw = case
    args = _cast(args, 128)
    call, arrays = _of_arrays(name, args, kw)
    ts = [torch.from_numpy(a).requires_grad_() if i in arrays else a for i, a in enumerate(args)]
    outs = getattr(tref, name)(*ts, **kw)
    outs = list(outs) if isinstance(outs, tuple) else [outs]
    weights = _weights(outs, np.random.default_rng(1))
    loss = sum((torch.real(o) * torch.from_numpy(a)).sum() + (torch.imag(o) * torch.from_numpy(b)).sum()
               if o.is_complex() else (o * torch.from_numpy(a)).sum() for o, (a, b) in zip(outs, weights))  # fmt: skip
    expected = torch.autograd.grad(loss, [ts[i] for i in arrays])

    with jax.enable_x64(True):

        def jloss(*xs):
            return sum(jnp.sum(jnp.real(o) * a) + jnp.sum(jnp.imag(o) * b) for o, (a, b) in zip(call(*xs), weights))

        got = jax.grad(jloss, argnums=tuple(range(len(arrays))))(*[jnp.asarray(args[i]) for i in arrays])
        for i, g, e in zip(arrays, got, expected):
            e = e.numpy()
            assert g.dtype == e.dtype
            np.testing.assert_allclose(np.asarray(g), np.conj(e), rtol=1e-10, atol=1e-12 * np.abs(e).max(),
                                       err_msg=f"{name}: gradient of argument {i}")  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_jit_equals_eager(case):
    name, args, kw = _complex64(case)
    call, arrays = _of_arrays(name, args, kw)
    eager = call(*[jnp.asarray(args[i]) for i in arrays])
    jitted = jax.jit(call)(*[jnp.asarray(args[i]) for i in arrays])
    for e, j in zip(eager, jitted):
        np.testing.assert_allclose(np.asarray(j), np.asarray(e), rtol=1e-5, atol=1e-5 * float(jnp.abs(e).max()))


def test_bad_method_and_exact_exponent_name_the_argument():
    x = jnp.ones((2, 3), jnp.complex64)
    with pytest.raises(ValueError, match='method: expected "zoh" or "bilinear", got \'euler\''):
        jref.discretize(jnp.ones(2, jnp.float32), x, x, "euler")
    with pytest.raises(ValueError, match="exact_exponent: needs complex128"):
        jref.vandermonde(x, x, 4, exact_exponent=True)
