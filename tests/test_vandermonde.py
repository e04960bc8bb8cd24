"""Log-Vandermonde products: accuracy (the 2x rule of docs/architecture.md), gradients, overflow,
the torch/NumPy entry points and argument checks."""

import math

import numpy as np
import pytest
import torch
from accuracy import FLOOR, assert_close_2x

import ssmkit
from ssmkit.ops import reference, vandermonde, vandermonde_transpose

C64, C128 = torch.complex64, torch.complex128
BUDGET = 2**21  # elements of the (rows, N, chunk) matrix a reference may materialise


def s4d_x(shape, N, dtype=C64):
    """S4D-Lin-like x: real parts log-uniform in [-10, -1e-4], imaginary parts pi * n."""
    re = -torch.exp(torch.empty(shape + (N,), dtype=torch.float64).uniform_(math.log(1e-4), math.log(10)))
    im = math.pi * torch.arange(N, dtype=torch.float64).expand(shape + (N,))
    return torch.complex(re, im).to(dtype)


def rand_c(shape, dtype=C64):
    return torch.randn(shape, dtype=dtype)


def _rows(*tensors):
    batch = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
    return math.prod(batch), batch


def ref_vandermonde(v, x, L, cp, exact=False):
    """reference.vandermonde, evaluated over chunks of l so memory stays bounded."""
    rows, _ = _rows(v, x)
    chunk = max(1, BUDGET // max(1, rows * v.shape[-1]))
    if L <= chunk:
        return reference.vandermonde(v, x, L, cp, exact_exponent=exact)
    outs = []
    for l0 in range(0, L, chunk):
        y = (v.unsqueeze(-1) * reference._exp_xl(x, min(chunk, L - l0), exact, start=l0)).sum(-2)
        outs.append(2 * y.real if cp else y)
    return torch.cat(outs, -1)


def ref_transpose(u, v, x, exact=False):
    """reference.vandermonde_transpose, summed over chunks of l so memory stays bounded."""
    rows, _ = _rows(u, v, x)
    L, chunk = u.shape[-1], max(1, BUDGET // max(1, rows * v.shape[-1]))
    if L <= chunk:
        return reference.vandermonde_transpose(u, v, x, exact_exponent=exact)
    acc = 0
    for l0 in range(0, L, chunk):
        E = reference._exp_xl(x, min(chunk, L - l0), exact, start=l0)
        acc = acc + (u[..., l0 : l0 + chunk].unsqueeze(-2) * E).sum(-1)
    return v * acc


def up(t):
    return t.to(C128 if t.is_complex() else torch.float64)


# Leading shapes for 0..3 dims; v and x broadcast against each other.
LEAD = {0: ((), ()), 1: ((3,), (1,)), 2: ((2, 1), (1, 3)), 3: ((2, 1, 2), (1, 2, 1))}


def check_forward(v, x, L, cp, name):
    out = vandermonde(v, x, L, conj_pairs=cp)
    truth = ref_vandermonde(up(v), up(x), L, cp, exact=True)
    low = ref_vandermonde(v, x, L, cp) if v.dtype == C64 else None
    return assert_close_2x(name, out, truth, low)


@pytest.mark.parametrize("dtype", [C64, C128])
@pytest.mark.parametrize("L", [1, 2, 97, 1025, 4096])
@pytest.mark.parametrize("N", [1, 3, 32, 64, 100, 1024])
def test_forward_accuracy(N, L, dtype):
    for cp in (True, False):
        nd = (N + L + cp) % 4
        v = rand_c(LEAD[nd][0] + (N,), dtype)
        x = s4d_x(LEAD[nd][1], N, dtype)
        check_forward(v, x, L, cp, f"vandermonde N={N} L={L} lead={nd} cp={cp}")


@pytest.mark.parametrize("dtype", [C64, C128])
@pytest.mark.parametrize("L", [1, 97, 1025, 4096])
@pytest.mark.parametrize("N", [1, 3, 32, 100, 1024])
def test_transpose_accuracy(N, L, dtype):
    for real_u in (True, False):
        nd = (N + L + real_u) % 4
        u = torch.randn(LEAD[nd][1] + (L,), dtype=dtype.to_real() if real_u else dtype)
        v = rand_c(LEAD[nd][0] + (N,), dtype)
        x = s4d_x(LEAD[nd][1], N, dtype)
        out = vandermonde_transpose(u, v, x)
        truth = ref_transpose(up(u), up(v), up(x), exact=True)
        low = ref_transpose(u, v, x) if dtype == C64 else None
        assert_close_2x(f"transpose N={N} L={L} lead={nd} real_u={real_u}", out, truth, low)


def test_long_sequence_2_pow_20():
    # One case at L = 2^20: the blocked powers must not drift with l.
    L, N = 2**20, 16
    v, x = rand_c((N,)), s4d_x((), N)
    err, ref_err = check_forward(v, x, L, True, "vandermonde L=2^20")
    print(f"\nforward L=2^20: max error {err:.3g}, complex64 reference error {ref_err:.3g}")
    u = torch.randn(L)
    out = vandermonde_transpose(u, v, x)
    truth = ref_transpose(up(u), up(v), up(x), exact=True)
    err, ref_err = assert_close_2x("transpose L=2^20", out, truth, ref_transpose(u, v, x))
    print(f"transpose L=2^20: max error {err:.3g}, complex64 reference error {ref_err:.3g}")


@pytest.mark.parametrize("dtype", [C64, C128])
@pytest.mark.parametrize("cp", [True, False])
def test_positive_real_parts_overflow(dtype, cp):
    # Growing terms: exp(0.3 l) overflows float at l ~ 296 and double at l ~ 2366.
    N, L = 4, 4096
    a = torch.tensor([0.05, 0.1, 0.2, 0.3], dtype=torch.float64)
    x = torch.complex(a, torch.tensor([0.3, 1.1, 2.9, 0.7], dtype=torch.float64)).to(dtype)
    v = rand_c((2, N), dtype)
    out = vandermonde(v, x, L, conj_pairs=cp)
    low = reference.vandermonde(v, x, L, cp)  # same precision: its NaNs are its own arithmetic's
    # The true values can exceed double's range, so the truth is taken scaled:
    # out_l = ts_l * exp(amax l) with ts = the reference at x - amax (exact exponent).
    amax, lv = a.max().item(), torch.arange(L, dtype=torch.float64)
    xs = up(x) - amax
    ts = reference.vandermonde(up(v), xs, L, cp, exact_exponent=True)
    sc = (up(v).abs().unsqueeze(-1) * reference._exp_xl(xs, L, True).abs()).sum(-2) * (2 if cp else 1)
    o, t, lo = (torch.view_as_real(z) if z.is_complex() else z for z in (out, ts, low))
    shift = amax * lv if cp else (amax * lv).unsqueeze(-1)
    log_true = t.abs().log() + shift
    log_scale = sc.log() + amax * lv
    if not cp:
        log_scale = log_scale.unsqueeze(-1)
    log_big = math.log(torch.finfo(o.dtype).max)
    beyond = log_true > log_big + 0.5  # overflows for certain
    inside = (log_true < log_big - 2) & (log_scale < log_big - 2)
    assert beyond.any() and inside.any(), "the case must overflow and have values in range"
    # Never NaN from the blocking scheme: NaN only where the same-precision reference is NaN.
    nan = torch.isnan(o)
    assert not (nan & ~torch.isnan(lo)).any(), "NaN where the reference is not NaN"
    # Inf with the true sign wherever the true value overflows (NaN allowed as above:
    # Inf - Inf between terms).
    want_inf = beyond & ~nan
    assert torch.equal(o[want_inf], torch.sign(t[want_inf]) * math.inf), "expected Inf where it overflows"
    # Where the reference is Inf the result is Inf with the same sign, or finite where the
    # reference overflowed spuriously: it forms exp(a l) before multiplying by v and taking
    # the real part, so it overflows wherever |exp(a l)| does even if the term does not.
    # Those finite values must be the true ones.
    ref_inf = torch.isinf(lo) & ~nan
    both = ref_inf & torch.isinf(o)
    assert torch.equal(o[both].sign(), lo[both].sign()), "Inf of the wrong sign"
    near = ref_inf & ~torch.isinf(o)
    assert (log_true[near] < log_big + 0.5).all(), "finite where the true value overflows"
    rel = (o[near].double() - torch.sign(t[near]) * log_true[near].exp()).abs() / log_true[near].exp()
    assert (rel <= 1e-5).all(), f"finite values near overflow off by {rel.max().item():.3g}"
    # Accurate where the value and its terms are in range (per entry, relative to the
    # entry's own scale sum_n |v_n exp(x_n l)|, as entries span 10^300).
    assert torch.isfinite(o[inside]).all(), "Inf or NaN where the result is in range"
    truth = torch.sign(t) * (log_true).exp()
    err = ((o[inside].double() - truth[inside]).abs() / log_scale.expand_as(t)[inside].exp()).max().item()
    ok = inside & torch.isfinite(lo)
    ref_err = ((lo[ok].double() - truth[ok]).abs() / log_scale.expand_as(t)[ok].exp()).max().item()
    bound = (2 * ref_err if dtype == C64 else 0) + FLOOR[dtype]
    assert err <= bound, f"max error {err:.3g} > bound {bound:.3g} (reference error {ref_err:.3g})"


def _x_grad(shape, N, dtype=C128):
    re = -torch.empty(shape + (N,), dtype=torch.float64).uniform_(0.01, 0.5)
    im = torch.empty(shape + (N,), dtype=torch.float64).uniform_(-3, 3)
    return torch.complex(re, im).to(dtype)


# Full Jacobians on a short L; fast mode (random projections) across chunks (L > 2048).
@pytest.mark.parametrize("cp", [True, False])
@pytest.mark.parametrize("L, fast", [(70, False), (2100, True)])
def test_gradcheck_forward(cp, L, fast):
    v = rand_c((2, 3), C128).requires_grad_()
    x = _x_grad((), 3).requires_grad_()  # broadcast over v's leading dim
    fn = lambda v, x: vandermonde(v, x, L, conj_pairs=cp)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (v, x), fast_mode=fast)


@pytest.mark.parametrize("real_u", [True, False])
def test_gradcheck_transpose(real_u):
    u = torch.randn((2, 70), dtype=torch.float64 if real_u else C128).requires_grad_()
    v = rand_c((3,), C128).requires_grad_()
    x = _x_grad((2,), 3).requires_grad_()
    assert torch.autograd.gradcheck(vandermonde_transpose, (u, v, x))
    # Across chunks (L > 2048), v and x only.
    u = torch.randn((2100,), dtype=u.dtype).requires_grad_()
    assert torch.autograd.gradcheck(vandermonde_transpose, (u, v, x), fast_mode=True)


def _grads(fn, inputs, grad_out):
    inputs = [t.detach().requires_grad_() for t in inputs]
    return torch.autograd.grad(fn(*inputs), inputs, grad_out)


@pytest.mark.parametrize("cp", [True, False])
def test_backward_complex64_forward(cp):
    L, N = 4096, 32
    v, x = rand_c((2, N)), s4d_x((2,), N) * 0.01  # phases in range of float's accuracy
    g = torch.randn((2, L), dtype=torch.float32 if cp else C64)
    out = _grads(lambda v, x: vandermonde(v, x, L, conj_pairs=cp), (v, x), g)
    low = _grads(lambda v, x: reference.vandermonde(v, x, L, cp), (v, x), g)
    truth = _grads(lambda v, x: reference.vandermonde(v, x, L, cp, exact_exponent=True), (up(v), up(x)), up(g))
    for name, o, t, lo in zip(("dv", "dx"), out, truth, low):
        assert_close_2x(f"vandermonde {name} cp={cp}", o, t, lo)


@pytest.mark.parametrize("real_u", [True, False])
def test_backward_complex64_transpose(real_u):
    L, N = 4096, 32
    u = torch.randn((2, L), dtype=torch.float32 if real_u else C64)
    v, x = rand_c((N,)), s4d_x((2,), N) * 0.01
    g = rand_c((2, N))
    out = _grads(vandermonde_transpose, (u, v, x), g)
    low = _grads(reference.vandermonde_transpose, (u, v, x), g)
    truth = _grads(lambda u, v, x: reference.vandermonde_transpose(u, v, x, exact_exponent=True),
                   (up(u), up(v), up(x)), up(g))
    for name, o, t, lo in zip(("du", "dv", "dx"), out, truth, low):
        assert_close_2x(f"transpose {name} real_u={real_u}", o, t, lo)


def test_opcheck():
    v, x, g = rand_c((2, 5)), s4d_x((), 5), torch.randn(2, 70)
    u = torch.randn(2, 70)
    ops = torch.ops.ssmkit
    torch.library.opcheck(ops.vandermonde.default, (v.requires_grad_(), x, 70, True))
    torch.library.opcheck(ops.vandermonde.default, (v, x, 70, False))
    torch.library.opcheck(ops.vandermonde_backward.default, (g, v.detach(), x, True, [True, True]))
    torch.library.opcheck(ops.vandermonde_transpose.default, (u.requires_grad_(), v, x))
    torch.library.opcheck(ops.vandermonde_transpose_backward.default,
                          (rand_c((2, 5)), u.detach(), v.detach(), x, [True, True, True]))


def test_torch_compile_fullgraph():
    def f(u, v, x):
        return vandermonde(v, x, 300).sum() + vandermonde_transpose(u, v, x).abs().sum()

    u, v, x = torch.randn(2, 300), rand_c((2, 8)).requires_grad_(), s4d_x((), 8).requires_grad_()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got, want = compiled(u, v, x), f(u, v, x)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got, (v, x)), torch.autograd.grad(want, (v, x)))


def test_numpy_entry():
    v, x, u = rand_c((3, 6)), s4d_x((3,), 6), torch.randn(3, 200)
    out = vandermonde(v.numpy(), x.numpy(), 200)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, vandermonde(v, x, 200).numpy())
    out = vandermonde(v.numpy(), x.numpy(), 200, conj_pairs=False)
    np.testing.assert_array_equal(out, vandermonde(v, x, 200, conj_pairs=False).numpy())
    out = vandermonde_transpose(u.numpy(), v.numpy(), x.numpy())
    assert out.dtype == np.complex64
    np.testing.assert_array_equal(out, vandermonde_transpose(u, v, x).numpy())


def test_noncontiguous_and_conj_views():
    base_v, base_x = rand_c((6, 20), C128), s4d_x((6,), 20, C128)
    v, x = base_v[::2, ::2], base_x[::2, ::2].conj().conj()  # strided, then a lazy double conj
    xc = torch.complex(x.real, -x.imag).conj()  # a conj view whose value is x
    u = torch.randn(300, 3, dtype=torch.float64).t()  # (3, 300), last-dim stride 3
    for xx in (x, xc):
        assert_close_2x("strided forward", vandermonde(v, xx, 300),
                        reference.vandermonde(v, x.resolve_conj(), 300, True, exact_exponent=True))
        assert_close_2x("strided transpose", vandermonde_transpose(u, v, xx),
                        reference.vandermonde_transpose(u, v, x.resolve_conj(), exact_exponent=True))
    uc = rand_c((3, 300), C128).conj()
    assert_close_2x("conj u", vandermonde_transpose(uc, v, x),
                    reference.vandermonde_transpose(uc.resolve_conj(), v, x, exact_exponent=True))


def test_empty_sizes():
    assert vandermonde(rand_c((2, 0)), s4d_x((2,), 0), 5).eq(0).all()
    assert vandermonde(rand_c((2, 3)), s4d_x((2,), 3), 0).shape == (2, 0)
    assert vandermonde_transpose(torch.randn(2, 0), rand_c((2, 3)), s4d_x((), 3)).eq(0).all()


def test_deterministic_across_thread_counts():
    v, x, u = rand_c((4, 40)), s4d_x((4,), 40), torch.randn(4, 5000)
    n = ssmkit._C.get_num_threads()
    try:
        ssmkit._C.set_num_threads(1)
        one = (vandermonde(v, x, 5000), vandermonde_transpose(u, v, x))
        ssmkit._C.set_num_threads(2)
        two = (vandermonde(v, x, 5000), vandermonde_transpose(u, v, x))
    finally:
        ssmkit._C.set_num_threads(n)
    assert all(torch.equal(a, b) for a, b in zip(one, two))


class FakeCudaArray:
    """A CUDA array as DLPack describes one; its data must never be read."""

    shape = (3,)
    dtype = np.complex64

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, *args, **kwargs):
        raise AssertionError("__dlpack__ of a CUDA array was called before the device check")


@pytest.mark.parametrize(
    "call, exc, fragment",
    [
        (lambda v, x: vandermonde(v, x, -1), ValueError, "L: expected a non-negative"),
        (lambda v, x: vandermonde(v, x, 2.5), TypeError, "L: expected a non-negative integer"),
        (lambda v, x: vandermonde(v, x, "4"), TypeError, "L: expected"),
        (lambda v, x: vandermonde(v, x, True), TypeError, "L: expected"),
        (lambda v, x: vandermonde(v, x[..., :2], 4), ValueError, "x: expected the last dimension to be N = 3"),
        (lambda v, x: vandermonde(v.real, x, 4), TypeError, "v: expected a complex64 or complex128"),
        (lambda v, x: vandermonde(v, x.real, 4), TypeError, "x: expected a complex64 or complex128"),
        (lambda v, x: vandermonde(v, x.to(C128), 4), TypeError, "x: expected complex64 like v"),
        (lambda v, x: vandermonde_transpose(torch.randn(5).double(), v, x), TypeError, "u: expected float32"),
        (lambda v, x: vandermonde_transpose(torch.randn(5), v, x[..., :2]), ValueError, "x: expected the last"),
        (lambda v, x: vandermonde_transpose(torch.randn(5), v.real, x), TypeError, "v: expected a complex"),
        (lambda v, x: vandermonde_transpose(torch.randn(5), v, x.real), TypeError, "x: expected a complex"),
        (lambda v, x: vandermonde(v.numpy(), x.numpy(), -3), ValueError, "L: expected"),
        (lambda v, x: vandermonde(v.numpy(), x.real.numpy(), 3), TypeError, "x: expected a complex"),
    ],
)
def test_bad_inputs(call, exc, fragment):
    v, x = rand_c((2, 3)), s4d_x((), 3)
    with pytest.raises(exc) as info:
        call(v, x)
    assert fragment in str(info.value)


def test_mixed_devices():
    v, x = rand_c((2, 3)), s4d_x((), 3)
    with pytest.raises((ValueError, RuntimeError, TypeError)) as info:
        vandermonde(v, x.to("meta"), 4)
    assert "x" in str(info.value) or "device" in str(info.value)
    if ssmkit._C.build_info()["cuda_compiled"]:
        return  # a CUDA build reads CUDA arrays (FakeCudaArray has no data); see test_cuda.py
    out = np.empty((2, 4), np.float32)
    with pytest.raises(ValueError) as info:
        ssmkit._C.vandermonde(v.numpy(), FakeCudaArray(), 4, out, True)
    assert "x is on cuda:0" in str(info.value)
    with pytest.raises(ValueError) as info:
        ssmkit._C.vandermonde_transpose(FakeCudaArray(), v.numpy(), x.numpy(), np.empty((2, 3), np.complex64))
    assert "u is on cuda:0" in str(info.value)
