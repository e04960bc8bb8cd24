"""Tests of ssmkit.jax, the kernels as XLA custom calls: values by the 2x rule against the
torch ground truth (ssmkit.ops.reference, through NumPy), gradients against jax.grad of the
jnp reference (ssmkit.jax.reference; JAX's conjugate convention), bit equality with the
torch path (ssmkit.ops) forward and backward, vmap against a Python loop (one custom call),
the lowered HLO, threads, and bad input."""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from accuracy import assert_close_2x
from conftest import complex_normal, decaying, s4_poles

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import ssmkit.jax as sj  # noqa: E402
import ssmkit.ops as so  # noqa: E402
from ssmkit.jax import reference as jref  # noqa: E402
from ssmkit.ops import reference as tref  # noqa: E402


@pytest.fixture(autouse=True)
def _x64():
    """complex128 for the ground truth (and the complex128 cases)."""
    with jax.enable_x64(True):
        yield


def _cases():
    """(id, name, positional args in complex128/float64 (sizes as ints), keyword options,
    whether the op is differentiable)."""
    rng = np.random.default_rng(1)
    c, poles = functools.partial(complex_normal, rng), functools.partial(s4_poles, rng)
    H, N, batch, L = 3, 5, 2, 9
    dt = rng.uniform(0.01, 0.5, H)
    step = [c(batch, H, N), rng.standard_normal((batch, H)), decaying(rng, H, N), c(H, N), c(H, N)]
    scan = [rng.standard_normal((batch, L, H)), decaying(rng, H, N), c(H, N), c(H, N)]
    return [
        ("cauchy-pairs", "cauchy", [c(2, 1, N), 1j * c(3, L).imag, poles(2, 1, N)], {}, True),
        ("cauchy", "cauchy", [c(3, N), c(3, L), poles(3, N)], {"conj_pairs": False}, True),
        ("vandermonde-pairs", "vandermonde", [c(2, 1, N), 0.1 * poles(3, N), L], {}, True),
        ("vandermonde", "vandermonde", [c(3, N), 0.1 * poles(3, N), L], {"conj_pairs": False}, True),
        ("transpose-real", "vandermonde_transpose", [rng.standard_normal((3, L)), c(3, N), 0.1 * poles(N)], {}, True),
        ("transpose-complex", "vandermonde_transpose", [c(1, L), c(3, N), 0.1 * poles(3, N)], {}, True),
        ("zoh", "discretize", [dt, poles(H, N), c(H, N)], {}, True),
        ("bilinear", "discretize", [dt, poles(H, N), c(H, N)], {"method": "bilinear"}, True),
        ("step", "ssm_step", step + [rng.standard_normal(H)], {}, False),
        ("step-no-D", "ssm_step", step, {}, False),
        ("untruncated-C", "dplr_untruncated_C", [dt, poles(H, N), 0.5 * c(H, 2, N), c(H, N), 64], {}, False),
        ("scan", "ssm_scan", scan + [rng.standard_normal(H), c(batch, H, N)], {}, True),
        ("scan-zero-start", "ssm_scan", scan + [rng.standard_normal(H)], {}, True),
        ("fft-conv", "fft_conv", [rng.standard_normal((3, L, H)), rng.standard_normal((1, H, L))], {}, True),
        ("fft-conv-bidirectional", "fft_conv", [rng.standard_normal((2, L, H)), rng.standard_normal((2, H, L))], {},
         True),
    ]


CASES = _cases()
IDS = [c[0] for c in CASES]
DIFF = [c for c in CASES if c[4]]


def _cast(args, single: bool):
    """The arrays in complex64/float32 (single) or complex128/float64; sizes kept."""
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            cplx = np.iscomplexobj(a)
            a = a.astype({(True, True): np.complex64, (True, False): np.complex128,
                          (False, True): np.float32, (False, False): np.float64}[cplx, single])  # fmt: skip
        out.append(a)
    return out


def _up(args):
    """The same values in double precision."""
    return _cast(args, single=False)


def _tensors(args):
    return [torch.from_numpy(np.array(a)) if isinstance(a, np.ndarray) else a for a in args]


def _outputs(x):
    return list(x) if isinstance(x, (tuple, list)) else [x]


def _t(x):
    return torch.from_numpy(np.array(x))


def _diff_argnums(args):
    return tuple(i for i, a in enumerate(args) if isinstance(a, np.ndarray))


def _cotangents(outs, rng):
    return [np.asarray(complex_normal(rng, *o.shape) if jnp.iscomplexobj(o) else rng.standard_normal(o.shape), o.dtype)
            for o in outs]


def _vjp(fn, args, kw, cts):
    """The gradients of sum(Re(conj(ct) * out)) over the outputs, for each array argument."""
    nums = _diff_argnums(args)

    def f(*arrays):
        full = list(args)
        for i, a in zip(nums, arrays):
            full[i] = a
        return tuple(_outputs(fn(*full, **kw)))

    # one compiled program: op-by-op dispatch of the jnp reference would compile each operation
    pull = jax.jit(lambda arrays, cts: jax.vjp(f, *arrays)[1](cts))
    return pull(tuple(args[i] for i in nums), tuple(cts))


# ---- values and gradients -------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_complex64_values_within_2x_of_the_reference(case):
    _, name, args, kw, _ = case
    args = _cast(args, single=True)
    outs = _outputs(getattr(sj, name)(*args, **kw))
    truth = _outputs(getattr(tref, name)(*_tensors(_up(args)), **kw))
    low = _outputs(getattr(tref, name)(*_tensors(args), **kw))
    assert len(outs) == len(truth)
    for k, (o, t, lo) in enumerate(zip(outs, truth, low)):
        assert o.dtype == np.dtype(str(lo.dtype).replace("torch.", ""))
        assert_close_2x(f"{name}[{k}]", _t(o), t, lo)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_complex128_values_match_the_reference(case):
    _, name, args, kw, _ = case
    outs = _outputs(getattr(sj, name)(*args, **kw))
    for k, (o, t) in enumerate(zip(outs, _outputs(getattr(tref, name)(*_tensors(args), **kw)))):
        assert o.dtype == np.dtype(str(t.dtype).replace("torch.", ""))
        assert_close_2x(f"{name}[{k}]", _t(o), t)


@pytest.mark.parametrize("case", DIFF, ids=[c[0] for c in DIFF])
def test_gradients_agree_with_jax_grad_of_the_jnp_reference(case):
    """complex128: at the double floor; complex64: the 2x rule against the complex128
    reference gradient, with the complex64 reference gradient as the naive one."""
    _, name, args, kw, _ = case
    single = _cast(args, single=True)
    cts = _cast(_cotangents(_outputs(getattr(jref, name)(*single, **kw)), np.random.default_rng(2)), single=True)
    double, cts_double = _up(single), _up(cts)  # the same values: one ground truth for both
    truth = _vjp(getattr(jref, name), double, kw, cts_double)
    for k, (g, t) in enumerate(zip(_vjp(getattr(sj, name), double, kw, cts_double), truth)):
        assert g.dtype == t.dtype and g.shape == t.shape
        assert_close_2x(f"{name} grad[{k}] complex128", _t(g), _t(t))
    low = _vjp(getattr(jref, name), single, kw, cts)
    for k, (g, t, lo) in enumerate(zip(_vjp(getattr(sj, name), single, kw, cts), truth, low)):
        assert g.dtype == lo.dtype and g.shape == lo.shape
        assert_close_2x(f"{name} grad[{k}] complex64", _t(g), _t(t), _t(lo))


def test_dplr_step_within_2x_and_bitwise_the_torch_path():
    rng = np.random.default_rng(3)
    H, N, r, batch = 3, 6, 1, 2
    c = functools.partial(complex_normal, rng)
    dt, Lam, P, B = rng.uniform(0.01, 0.5, H), s4_poles(rng, H, N), 0.5 * c(H, r, N), c(H, N)
    state, u, C, D = c(batch, H, N), rng.standard_normal((batch, H)), c(H, N), rng.standard_normal(H)
    single = _cast([state, u, dt, Lam, P, B, C, D], single=True)
    s, x, dt_, Lam_, P_, B_, C_, D_ = single
    factors = so.dplr_setup(*_tensors([dt_, Lam_, P_, B_]))
    y, ns = sj.dplr_step(s, x, [f.numpy() for f in factors], C_, D_)
    truth = tref.dplr_step(*_tensors(_up(single)))
    low = tref.dplr_step(*_tensors(single))
    assert_close_2x("dplr_step y", _t(y), truth[0], low[0])
    assert_close_2x("dplr_step state", _t(ns), truth[1], low[1])
    yt, nst = so.dplr_step(*_tensors([s, x]), factors, *_tensors([C_, D_]))
    np.testing.assert_array_equal(np.asarray(y), yt.numpy())
    np.testing.assert_array_equal(np.asarray(ns), nst.numpy())


# ---- the torch path, bit for bit -----------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("single", [True, False], ids=["complex64", "complex128"])
def test_results_equal_the_torch_path_bit_for_bit(case, single):
    _, name, args, kw, diff = case
    args = _cast(args, single)
    outs = _outputs(jax.jit(getattr(sj, name), static_argnames=tuple(kw), static_argnums=tuple(
        i for i, a in enumerate(args) if not isinstance(a, np.ndarray)))(*args, **kw))  # fmt: skip
    tensors = _tensors(args)
    if diff:
        for i in _diff_argnums(args):
            tensors[i].requires_grad_(True)
    touts = _outputs(getattr(so, name)(*tensors, **kw))
    for o, t in zip(outs, touts):
        np.testing.assert_array_equal(np.asarray(o), t.detach().numpy())
    if not diff or "pairs" in case[0] or case[0] == "transpose-complex":
        return  # broadcasting shapes: the gradients' sums over batch run in different orders
    _assert_gradients_equal_the_torch_path(name, args, kw, outs, tensors, touts)


def _assert_gradients_equal_the_torch_path(name, args, kw, outs, tensors, touts):
    """JAX's gradient is the conjugate of torch's: bit for bit, though ssmkit.jax runs the
    backward kernels at the conjugate inputs (ssmkit/jax/ops.py)."""
    cts = _cotangents(outs, np.random.default_rng(4))
    grads = _vjp(getattr(sj, name), args, kw, cts)
    inputs = [tensors[i] for i in _diff_argnums(args)]
    tgrads = torch.autograd.grad(touts, inputs, [_t(np.conj(c)) for c in cts])
    for g, t in zip(grads, tgrads):
        np.testing.assert_array_equal(np.asarray(g), np.conj(t.numpy()))


@pytest.mark.parametrize("name", ["cauchy", "vandermonde", "vandermonde_transpose"])
@pytest.mark.parametrize("single", [True, False], ids=["complex64", "complex128"])
def test_conjugate_pair_gradients_equal_the_torch_path_bit_for_bit(name, single):
    """The conjugate-pair kernels (and a complex u) on operands that do not broadcast, so
    that no sum over rows follows the kernel."""
    rng = np.random.default_rng(5)
    c, poles = functools.partial(complex_normal, rng), functools.partial(s4_poles, rng)
    N, L = 5, 9
    args = {"cauchy": [c(3, N), 1j * c(3, L).imag, poles(3, N)], "vandermonde": [c(3, N), 0.1 * poles(3, N), L],
            "vandermonde_transpose": [c(3, L), c(3, N), 0.1 * poles(3, N)]}[name]  # fmt: skip
    args = _cast(args, single)
    fn = getattr(sj, name)
    outs = _outputs(fn(*args) if name != "vandermonde" else jax.jit(fn, static_argnums=2)(*args))
    tensors = _tensors(args)
    for i in _diff_argnums(args):
        tensors[i].requires_grad_(True)
    _assert_gradients_equal_the_torch_path(name, args, {}, outs, tensors, _outputs(getattr(so, name)(*tensors)))


# ---- jit, vmap, threads ---------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vmap_equals_a_python_loop(case):
    """Over a new leading axis of the first argument, and (ops with parameter arrays) of the
    third as well, the others unbatched."""
    _, name, args, kw, _ = case
    fn = getattr(sj, name)
    axes = [0] + [None] * (len(args) - 1)
    if name in ("ssm_step", "ssm_scan"):
        axes[2] = 0  # a batch of systems (dA) too
    stacked = list(args)
    for i, ax in enumerate(axes):
        if ax == 0:
            stacked[i] = np.stack([args[i] * (1 + 0.1 * k) for k in range(3)])
    static = {i for i, a in enumerate(args) if not isinstance(a, np.ndarray)}

    def call(*a):
        full = [args[i] if i in static else a[i] for i in range(len(args))]
        return fn(*full, **kw)

    batched = jax.vmap(call, [None if i in static else ax for i, ax in enumerate(axes)])(*stacked)
    for k in range(3):
        one = call(*[s[k] if ax == 0 else s for s, ax in zip(stacked, axes)])
        for b, o in zip(_outputs(batched), _outputs(one)):
            if name == "fft_conv":  # batch elements 2i, 2i+1 share a transform: equal to rounding
                np.testing.assert_allclose(np.asarray(b[k]), np.asarray(o), rtol=0, atol=1e-14 * np.abs(o).max())
            else:
                np.testing.assert_array_equal(np.asarray(b[k]), np.asarray(o))


@pytest.mark.parametrize("name, axes", [
    ("ssm_step", (0, 0, None, None, None, None)),  # a batch of inputs and states
    ("ssm_scan", (0, None, None, None, None, 0)),
    ("discretize", (0, 0, 0)),  # a batch of systems
])  # fmt: skip
def test_vmap_folded_into_one_kernel_call_equals_a_python_loop(name, axes):
    """Where the batched arrays are exactly those that start with one dimension, the vmap
    dimensions fold into it: one kernel call (csrc/ffi/handlers.cpp); values and (scan)
    gradients as a loop."""
    _, _, args, kw, diff = next(c for c in CASES if c[1] == name and len(c[2]) == len(axes))
    stacked = [a if ax is None else np.stack([a * (1 + 0.1 * k) for k in range(3)]) for a, ax in zip(args, axes)]
    fn = getattr(sj, name)
    batched = jax.jit(jax.vmap(lambda *a: fn(*a, **kw), axes))(*stacked)
    for k in range(3):
        one = fn(*[s if ax is None else s[k] for s, ax in zip(stacked, axes)], **kw)
        for b, o in zip(_outputs(batched), _outputs(one)):
            np.testing.assert_array_equal(np.asarray(b[k]), np.asarray(o))
    if diff:
        loss = lambda *a: sum(jnp.sum(jnp.abs(o) ** 2) for o in _outputs(fn(*a, **kw)))  # noqa: E731
        grads = jax.jit(jax.vmap(jax.grad(loss, range(len(args))), axes))(*stacked)
        for k in range(3):
            one = jax.grad(loss, range(len(args)))(*[s if ax is None else s[k] for s, ax in zip(stacked, axes)])
            for b, o in zip(grads, one):
                np.testing.assert_array_equal(np.asarray(b[k]), np.asarray(o))


def test_vmap_of_a_gradient_and_nested_vmap():
    rng = np.random.default_rng(5)
    v, z, w = complex_normal(rng, 4, 3, 5), complex_normal(rng, 7), s4_poles(rng, 5)
    loss = lambda v: jnp.sum(jnp.abs(sj.cauchy(v, z, w)) ** 2)  # noqa: E731
    per_example = jax.jit(jax.vmap(jax.vmap(jax.grad(loss))))(v)
    for i in range(4):
        for j in range(3):
            np.testing.assert_array_equal(np.asarray(per_example[i, j]), np.asarray(jax.grad(loss)(v[i, j])))


def test_a_batched_call_is_one_custom_call():
    rng = np.random.default_rng(6)
    u, dA = rng.standard_normal((4, 2, 8, 3)), decaying(rng, 3, 5)
    dB, dC = complex_normal(rng, 3, 5), s4_poles(rng, 3, 5)
    text = jax.jit(jax.vmap(lambda u: sj.ssm_scan(u, dA, dB, dC)[0])).lower(u).as_text()
    assert text.count("ssmkit_ssm_scan") == 1, text


@pytest.mark.parametrize("name", ["cauchy", "ssm_scan"])
def test_lowered_hlo_is_a_custom_call_without_host_callback(name):
    _, _, args, kw, _ = next(c for c in CASES if c[1] == name)
    text = jax.jit(getattr(sj, name)).lower(*args, **kw).as_text()
    assert "custom_call" in text and f"@ssmkit_{name}" in text, text
    assert "callback" not in text.lower(), text
    grad_text = jax.jit(jax.grad(lambda *a: jnp.sum(jnp.abs(_outputs(getattr(sj, name)(*a))[0]) ** 2))).lower(
        *args).as_text()  # fmt: skip
    assert f"@ssmkit_{name}_backward" in grad_text and "callback" not in grad_text.lower()


def test_threads_calling_jitted_functions_get_the_serial_results():
    rng = np.random.default_rng(7)
    cauchy = jax.jit(sj.cauchy)
    scan = jax.jit(lambda u, dA, dB, dC: sj.ssm_scan(u, dA, dB, dC)[0])
    jobs = []  # single precision: the x64 switch of the test's thread does not reach the pool's
    for k in range(16):
        if k % 2:
            jobs.append((cauchy, _cast([complex_normal(rng, 8, 16), complex_normal(rng, 33), s4_poles(rng, 16)], True)))
        else:
            c = complex_normal(rng, 4, 8)
            args = [rng.standard_normal((2, 40, 4)), decaying(rng, 4, 8), c, 2 * c]
            jobs.append((scan, _cast(args, True)))
    serial = [np.asarray(f(*a)) for f, a in jobs]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            parallel = list(pool.map(lambda job: np.asarray(job[0](*job[1])), jobs))
            for s, p in zip(serial, parallel):
                np.testing.assert_array_equal(s, p)


# ---- bad input ----------------------------------------------------------------------------


def test_bad_input_raises_naming_the_argument_and_the_process_survives():
    rng = np.random.default_rng(8)
    v, z, w = (a.astype(np.complex64) for a in (complex_normal(rng, 4), complex_normal(rng, 6), s4_poles(rng, 4)))
    with pytest.raises(ValueError, match=r"^w: expected the last dimension to be N = 4 as in v"):
        sj.cauchy(v, z, w[:3])
    with pytest.raises(ValueError, match=r"^w: expected the last dimension to be N = 4 as in v"):
        jax.jit(sj.cauchy)(v, z, w[:3])
    with pytest.raises(TypeError, match=r"^w: expected complex64 like v, got complex128"):
        sj.cauchy(v, z, w.astype(np.complex128))
    with pytest.raises(TypeError, match=r"^v: expected a complex64 or complex128 array, got int32"):
        sj.vandermonde(np.ones(4, np.int32), v, 5)
    with pytest.raises(ValueError, match=r"^L: expected a non-negative integer length, got -1"):
        sj.vandermonde(v, v, -1)
    H, N = 3, 4
    dA, dB, dC = (complex_normal(rng, H, N).astype(np.complex64) for _ in range(3))
    u = rng.standard_normal((2, H)).astype(np.float32)
    with pytest.raises(ValueError, match=r"^state: expected shape \(batch, H, N\) with batch from u"):
        sj.ssm_step(complex_normal(rng, 3, H, N).astype(np.complex64), u, dA, dB, dC)
    with pytest.raises(TypeError, match=r"^u: expected a real float32 array"):
        sj.ssm_step(complex_normal(rng, 2, H, N).astype(np.complex64), u.astype(np.float64), dA, dB, dC)
    with pytest.raises(ValueError, match=r'^method: expected "zoh" or "bilinear"'):
        sj.discretize(np.ones(H, np.float32), dA, dB, method="euler")
    # the step sizes are data: checked when the kernel runs, eagerly or under jit
    for bad in (-np.inf, 0.0, np.nan, np.inf):
        dt = np.array([0.1, bad, 0.2], np.float32)
        for fn in (sj.discretize, jax.jit(sj.discretize)):
            with pytest.raises(Exception, match=r"dt: expected positive, finite step sizes, got dt\[1\]"):
                jax.block_until_ready(fn(dt, dA, dB))
    with pytest.raises(RuntimeError, match=r"ssm_step is inference only .* train with ssmkit.jax.ssm_scan"):
        jax.grad(lambda u: jnp.sum(sj.ssm_step(complex_normal(rng, 2, H, N).astype(np.complex64), u, dA, dB, dC)[0]))(u)
    with pytest.raises(RuntimeError, match=r"dplr_untruncated_C is inference only .* ssmkit.jax.reference"):
        jax.grad(lambda C: jnp.sum(sj.dplr_untruncated_C(np.ones(H, np.float32), dA, dB[:, None], C, 8).real))(dC)
    with pytest.raises(ValueError, match=r"^L: expected"):
        sj.dplr_untruncated_C(np.ones(H, np.float32), dA, dB[:, None], dC, 0)
    out = sj.cauchy(v, z, w)  # still working
    np.testing.assert_array_equal(np.asarray(out), so.cauchy(v, z, w))


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_import_ssmkit_never_imports_jax_and_ssmkit_jax_needs_it():
    r = _python("""
        import sys, ssmkit, ssmkit.ops
        assert "jax" not in sys.modules, "import ssmkit imported jax"
        sys.modules["jax"] = None  # as if jax were not installed
        try:
            import ssmkit.jax
        except ImportError as e:
            print(e)
        """)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert 'pip install "ssmkit[jax]"' in r.stdout
