"""fft_conv (the S4 layer's long convolution) against the float64 torch.fft reference
(docs/architecture.md's 2x rule), gradients, opcheck, torch.compile, the NumPy entry,
determinism, empty sizes and bad input."""

import numpy as np
import pytest
import torch
from accuracy import assert_close_2x

import ssmkit
from ssmkit import ops
from ssmkit.ops import reference as ref

F32, F64 = torch.float32, torch.float64


def inputs(batch, L, H, c=1, dtype=F32, decay=True):
    """u (batch, L, H) and k (c, H, L); k decays like an SSM kernel when `decay`."""
    u = torch.randn(batch, L, H, dtype=F64)
    k = torch.randn(c, H, L, dtype=F64)
    if decay:
        k = k * torch.exp(-torch.arange(L, dtype=F64) * torch.rand(H, 1, dtype=F64) * 10 / max(L, 1))
    return u.to(dtype), k.to(dtype)


def direct(u, k):
    """The defining sums, one lag at a time (float64): checks the reference itself."""
    batch, L, H = u.shape
    y = torch.zeros_like(u)
    for s in range(L):
        y[:, s:] += k[0, :, s] * u[:, : L - s]
        if k.shape[0] == 2 and s < L - 1:
            y[:, : L - 1 - s] += k[1, :, s] * u[:, s + 1 :]
    return y


@pytest.mark.parametrize("c", [1, 2])
def test_reference_is_the_direct_sum(c):
    u, k = inputs(3, 37, 5, c, F64)
    torch.testing.assert_close(ref.fft_conv(u, k), direct(u, k), rtol=0, atol=1e-12)
    torch.testing.assert_close(ops.fft_conv(u, k), direct(u, k), rtol=0, atol=1e-12)


SHAPES = [(1, 1, 1), (1, 2, 3), (3, 97, 17), (2, 1025, 33), (5, 64, 16), (8, 4096, 40)]


@pytest.mark.parametrize("c", [1, 2])
@pytest.mark.parametrize("batch, L, H", SHAPES)
def test_forward_backward_2x(batch, L, H, c):
    u, k = inputs(batch, L, H, c)
    g = torch.randn(batch, L, H)

    def run(fn, u, k, g):
        u, k = u.detach().requires_grad_(), k.detach().requires_grad_()
        y = fn(u, k)
        return [y.detach(), *torch.autograd.grad(y, (u, k), g)]

    out = run(ops.fft_conv, u, k, g)
    truth = run(ref.fft_conv, u.double(), k.double(), g.double())
    low = run(ref.fft_conv, u, k, g)
    for name, o, t, lo in zip(("y", "du", "dk"), out, truth, low):
        assert_close_2x(f"{name} {batch}x{L}x{H} c={c}", o, t, lo)
    out64 = run(ops.fft_conv, u.double(), k.double(), g.double())
    for name, o, t in zip(("y", "du", "dk"), out64, truth):
        assert_close_2x(f"float64 {name} {batch}x{L}x{H} c={c}", o, t)


@pytest.mark.parametrize("c", [1, 2])
def test_gradcheck(c):
    u, k = inputs(3, 13, 5, c, F64)
    assert torch.autograd.gradcheck(ops.fft_conv, (u.requires_grad_(), k.requires_grad_()))
    u, k = inputs(2, 300, 3, c, F64)  # N = 1024: every stage kind of the transform
    assert torch.autograd.gradcheck(ops.fft_conv, (u.requires_grad_(), k.requires_grad_()), fast_mode=True)


def test_one_gradient_only():
    u, k = inputs(3, 50, 4, 2, F64)
    g = torch.randn_like(u)
    du = torch.autograd.grad(ops.fft_conv(u.requires_grad_(), k), u, g)[0]
    dk = torch.autograd.grad(ops.fft_conv(u.detach(), k.requires_grad_()), k, g)[0]
    want = torch.autograd.grad(ref.fft_conv(u, k), (u, k), g)
    torch.testing.assert_close(du, want[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(dk, want[1], rtol=0, atol=1e-12)


def test_opcheck():
    u, k = inputs(3, 70, 5, 1)
    g = torch.randn_like(u)
    o = torch.ops.ssmkit
    torch.library.opcheck(o.fft_conv.default, (u.requires_grad_(), k.requires_grad_()))
    torch.library.opcheck(o.fft_conv.default, inputs(2, 33, 4, 2))
    torch.library.opcheck(o.fft_conv_backward.default, (u.detach(), k.detach(), g, [True, True]))
    torch.library.opcheck(o.fft_conv_backward.default, (u.detach(), k.detach(), g, [True, False]))


def test_torch_compile_fullgraph():
    def f(u, k):
        return (ops.fft_conv(u, k) ** 2).sum()

    u, k = inputs(2, 100, 6, 2)
    u, k = u.requires_grad_(), k.requires_grad_()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got, want = compiled(u, k), f(u, k)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got, (u, k)), torch.autograd.grad(want, (u, k)))


def test_numpy_entry_and_layouts():
    u, k = inputs(3, 200, 7, 2)
    out = ops.fft_conv(u.numpy(), k.numpy())
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, ops.fft_conv(u, k).numpy())
    # non-contiguous tensors are copied: the same bits as their contiguous values
    ut = u.transpose(0, 1).contiguous().transpose(0, 1)
    kt = k.flip(-1).contiguous().flip(-1)
    assert torch.equal(ops.fft_conv(ut, kt), ops.fft_conv(u, k))


def test_batch_pairs_are_independent():
    """Batch elements share transforms in pairs; each result is that of its element alone."""
    u, k = inputs(5, 300, 19, 2)
    y = ops.fft_conv(u, k)
    for b in range(5):
        single = ops.fft_conv(u[b : b + 1], k)
        assert_close_2x(f"element {b}", y[b : b + 1], ref.fft_conv(u[b : b + 1].double(), k.double()),
                        ref.fft_conv(u[b : b + 1], k))  # fmt: skip
        assert_close_2x(f"element {b} alone", single, ref.fft_conv(u[b : b + 1].double(), k.double()),
                        ref.fft_conv(u[b : b + 1], k))  # fmt: skip


def test_deterministic_across_thread_counts():
    u, k = inputs(3, 1000, 70, 2)
    g = torch.randn_like(u)
    n = ssmkit._C.get_num_threads()

    def run():
        uu, kk = u.clone().requires_grad_(), k.clone().requires_grad_()
        y = ops.fft_conv(uu, kk)
        return [y, *torch.autograd.grad(y, (uu, kk), g)]

    try:
        ssmkit._C.set_num_threads(1)
        one = run()
        ssmkit._C.set_num_threads(3)
        three = run()
    finally:
        ssmkit._C.set_num_threads(n)
    assert all(torch.equal(a, b) for a, b in zip(one, three))
    assert all(torch.equal(a, b) for a, b in zip(run(), run()))


def test_empty_sizes():
    for batch, L, H in [(0, 5, 3), (2, 0, 3), (2, 5, 0)]:
        u, k = inputs(batch, L, H, 2)
        u, k = u.requires_grad_(), k.requires_grad_()
        y = ops.fft_conv(u, k)
        assert y.shape == (batch, L, H)
        du, dk = torch.autograd.grad(y, (u, k), torch.ones_like(y))
        assert du.shape == u.shape and dk.shape == k.shape and dk.eq(0).all()


@pytest.mark.parametrize(
    "call, exc, fragment",
    [
        (lambda u, k: ops.fft_conv(u.to(torch.complex64), k), TypeError,
         "u: expected a float32 or float64"),
        (lambda u, k: ops.fft_conv(u, k.double()), TypeError, "k: expected float32"),
        (lambda u, k: ops.fft_conv(u.int(), k), TypeError, "u: expected a float32 or float64 array, got int32"),
        (lambda u, k: ops.fft_conv(u[0], k), ValueError, "u: expected"),
        (lambda u, k: ops.fft_conv(u, k[:, :2]), ValueError, "k: expected shape (c, H, L)"),
        (lambda u, k: ops.fft_conv(u, k.expand(3, 4, 6)), ValueError, "c = 1 (causal) or 2"),
        (lambda u, k: ops.fft_conv(u.numpy(), k.numpy()[..., :5]), ValueError, "k: expected shape (c, H, L)"),
        (lambda u, k: ops.fft_conv(u.numpy(), k.double().numpy()), TypeError, "k: expected float32 like u"),
        (lambda u, k: ops.fft_conv(u.to(torch.complex64).numpy(), k.numpy()), TypeError,
         "u: expected a float32 or float64 array, got complex64"),
        (lambda u, k: ssmkit._C.fft_conv(u.numpy(), k.numpy(), np.empty((2, 6, 3), np.float32)), ValueError,
         "y: expected an output of shape (2, 6, 4)"),
        (lambda u, k: ssmkit._C.fft_conv_backward(u.numpy(), k.numpy(), u.numpy()[:, :5], None, None), ValueError,
         "gy: expected shape (batch, L, H) like u"),
    ],
)  # fmt: skip
def test_bad_inputs(call, exc, fragment):
    u, k = inputs(2, 6, 4, 1)
    with pytest.raises(exc) as info:
        call(u, k)
    assert fragment in str(info.value)
