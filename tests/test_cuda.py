"""Every op on every available device (tests/devices.py), and what only a GPU can show:
streams, CUDA graph capture, a second GPU, device checks with real CUDA tensors.

The accuracy rule is docs/architecture.md's (tests/accuracy.py): a device's result against the
complex128 reference on the CPU, within twice the complex64 reference's error. On the
CPU these cases repeat the CPU tests at a few shapes (cheap); on a GPU they are the
CUDA kernels' correctness grid. Without a GPU the CUDA-only tests skip, saying why.
"""

import numpy as np
import pytest
import torch
from accuracy import assert_close_2x
from conftest import untruncated_C_long_double
from devices import CUDA_BUILD, DEVICES, HAVE_CUDA, requires_cuda

import ssmkit
from ssmkit import ops
from ssmkit.ops import reference as ref

C64, C128 = torch.complex64, torch.complex128
REAL = {C64: torch.float32, C128: torch.float64}


def up(*ts):
    return [None if t is None else t.to(C128 if t.is_complex() else torch.float64) for t in ts]


def on(device, *ts):
    return [None if t is None else t.to(device) for t in ts]


def check(name, out, truth, low):
    """The 2x rule for a device result (moved to the CPU); low is ignored for complex128."""
    out = out.cpu()
    assert_close_2x(name, out, truth, low if out.dtype in (C64, torch.float32) else None)


def grads_of(fn, inputs, g):
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*inputs)
    return torch.autograd.grad(out, inputs, g)


def check_grads(prefix, names, kernel, truth, low, inputs, g, device):
    """The 2x rule for the gradients (of the outputs' gradients g) of kernel on device:
    truth runs upcast, low at the inputs' precision (both references on the CPU)."""
    gk = grads_of(kernel, on(device, *inputs), on(device, *g))
    gt = grads_of(truth, up(*inputs), up(*g))
    gl = grads_of(low, inputs, g)
    for name, k, t, lo in zip(names, gk, gt, gl):
        check(f"{prefix} {name}", k, t, lo)


def s4d_x(shape, N, dtype):
    re = -torch.exp(torch.empty(shape + (N,), dtype=torch.float64).uniform_(np.log(1e-4), np.log(10)))
    im = np.pi * torch.arange(N, dtype=torch.float64).expand(shape + (N,))
    return torch.complex(re, im).to(dtype)


# ---- the CPU grids, on every device -------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [C64, C128])
@pytest.mark.parametrize("conj_pairs", [True, False])
@pytest.mark.parametrize("N, L", [(1, 1), (3, 97), (32, 1025), (300, 33)])
def test_cauchy(device, dtype, conj_pairs, N, L):
    # broadcasting layout: v (2, 1, N), w (1, 3, N), z (L,) strided
    v = torch.randn(2, 1, N, dtype=dtype)
    w = torch.complex(-0.5 - torch.rand(1, 3, N), torch.pi * torch.randn(1, 3, N)).to(dtype)
    z = torch.exp(2j * torch.pi * torch.arange(2 * L, dtype=torch.float64) / (2 * L)).to(dtype)[::2]
    out = ops.cauchy(*on(device, v, z, w), conj_pairs=conj_pairs)
    check("cauchy", out, ref.cauchy(*up(v, z, w), conj_pairs), ref.cauchy(v, z, w, conj_pairs))
    g = torch.randn(2, 3, L, dtype=dtype)
    fk = lambda *a: ops.cauchy(*a, conj_pairs=conj_pairs)  # noqa: E731
    fr = lambda *a: ref.cauchy(*a, conj_pairs)  # noqa: E731
    check_grads("cauchy", ("dv", "dz", "dw"), fk, fr, fr, (v, z, w), (g,), device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [C64, C128])
@pytest.mark.parametrize("conj_pairs", [True, False])
@pytest.mark.parametrize("N, L", [(1, 1), (3, 97), (32, 2100), (100, 64)])
def test_vandermonde(device, dtype, conj_pairs, N, L):
    v, x = torch.randn(3, 1, N, dtype=dtype), s4d_x((1, 2), N, dtype)
    out = ops.vandermonde(*on(device, v, x), L, conj_pairs=conj_pairs)
    truth = ref.vandermonde(*up(v, x), L, conj_pairs, exact_exponent=True)
    check("vandermonde", out, truth, ref.vandermonde(v, x, L, conj_pairs))
    g = torch.randn(truth.shape, dtype=REAL[dtype] if conj_pairs else dtype)
    fk = lambda v, x: ops.vandermonde(v, x, L, conj_pairs=conj_pairs)  # noqa: E731
    ft = lambda v, x: ref.vandermonde(v, x, L, conj_pairs, exact_exponent=True)  # noqa: E731
    fl = lambda v, x: ref.vandermonde(v, x, L, conj_pairs)  # noqa: E731
    check_grads("vandermonde", ("dv", "dx"), fk, ft, fl, (v, x), (g,), device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [C64, C128])
@pytest.mark.parametrize("real_u", [True, False])
@pytest.mark.parametrize("N, L", [(1, 1), (3, 97), (32, 2100), (100, 64)])
def test_vandermonde_transpose(device, dtype, real_u, N, L):
    u = torch.randn(2, 1, L, dtype=REAL[dtype] if real_u else dtype)
    v, x = torch.randn(1, 3, N, dtype=dtype), s4d_x((3,), N, dtype)
    out = ops.vandermonde_transpose(*on(device, u, v, x))
    truth = ref.vandermonde_transpose(*up(u, v, x), exact_exponent=True)
    check("transpose", out, truth, ref.vandermonde_transpose(u, v, x))
    g = torch.randn(truth.shape, dtype=dtype)
    ft = lambda *a: ref.vandermonde_transpose(*a, exact_exponent=True)  # noqa: E731
    check_grads("transpose", ("du", "dv", "dx"), ops.vandermonde_transpose, ft, ref.vandermonde_transpose,
                (u, v, x), (g,), device)


def s4d_params(H, N, dtype):
    A = torch.complex(-0.5 * torch.ones(H, N), torch.pi * torch.arange(N).repeat(H, 1)).to(dtype)
    A = A + 0.3 * torch.randn(H, N, dtype=dtype)
    B, C = torch.randn(H, N, dtype=dtype), torch.randn(H, N, dtype=dtype) / N**0.5
    dt = torch.exp(torch.rand(H) * (np.log(0.1) - np.log(1e-3)) + np.log(1e-3)).to(REAL[dtype])
    return dt, A, B, C, torch.randn(H).to(REAL[dtype])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [C64, C128])
@pytest.mark.parametrize("method", ["zoh", "bilinear"])
def test_discretize(device, dtype, method):
    dt, A, B, _, _ = s4d_params(97, 33, dtype)
    out = ops.discretize(*on(device, dt, A, B), method=method)
    truth, low = ref.discretize(*up(dt, A, B), method), ref.discretize(dt, A, B, method)
    for name, o, t, lo in zip(("dA", "dB"), out, truth, low):
        check(f"{method} {name}", o, t, lo)
    g = [torch.randn(97, 33, dtype=dtype) for _ in range(2)]
    fk = lambda *a: ops.discretize(*a, method=method)  # noqa: E731
    fr = lambda *a: ref.discretize(*a, method)  # noqa: E731
    check_grads(f"{method} grad", ("dt", "A", "B"), fk, fr, fr, (dt, A, B), g, device)


def stable(H, N, dtype):
    dt, A, B, C, D = s4d_params(H, N, dtype)
    dA, dB = ref.discretize(*up(dt, A, B), "zoh")
    return dA.to(dtype), dB.to(dtype), C, D


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [C64, C128])
@pytest.mark.parametrize("batch, H, N", [(1, 1, 1), (3, 17, 5), (16, 256, 32), (2, 5, 300)])
def test_ssm_step(device, dtype, batch, H, N):
    dA, dB, dC, D = stable(H, N, dtype)
    x, u = torch.randn(batch, H, N, dtype=dtype), torch.randn(batch, H).to(REAL[dtype])
    for d in (D, None):
        y, new = ops.ssm_step(*on(device, x, u, dA, dB, dC, d))
        ty, tn = ref.ssm_step(*up(x, u, dA, dB, dC, d))
        ly, ln = ref.ssm_step(x, u, dA, dB, dC, d)
        check("y", y, ty, ly)
        check("state", new, tn, ln)
    xd = x.clone().to(device)  # in place
    with torch.no_grad():
        y, same = ops.ssm_step(xd, *on(device, u, dA, dB, dC, D), out=xd)
    assert same is xd
    check("state in place", xd, ref.ssm_step(*up(x, u, dA, dB, dC, D))[1], ref.ssm_step(x, u, dA, dB, dC, D)[1])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [C64, C128])
@pytest.mark.parametrize(
    "batch, L, H, N", [(1, 1, 1, 1), (2, 97, 17, 5), (3, 130, 33, 32), (1, 70, 3, 300), (1, 0, 4, 3)]
)
def test_ssm_scan(device, dtype, batch, L, H, N):
    dA, dB, dC, D = stable(H, N, dtype)
    u, x0 = torch.randn(batch, L, H).to(REAL[dtype]), torch.randn(batch, H, N, dtype=dtype)
    y, final = ops.ssm_scan(*on(device, u, dA, dB, dC, D, x0))
    ty, tf = ref.ssm_scan(*up(u, dA, dB, dC, D, x0))
    ly, lf = ref.ssm_scan(u, dA, dB, dC, D, x0)
    check("y", y, ty, ly)
    check("final state", final, tf, lf)
    if L == 0:
        return  # the reference's empty y has no graph to differentiate
    gy, gs = torch.randn(ty.shape).to(REAL[dtype]), torch.randn(tf.shape, dtype=dtype)
    names = ("u", "dA", "dB", "dC", "D", "state")
    check_grads("scan grad", names, ops.ssm_scan, ref.ssm_scan, ref.ssm_scan, (u, dA, dB, dC, D, x0), (gy, gs), device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [C64, C128])
@pytest.mark.parametrize("c", [1, 2])
@pytest.mark.parametrize("batch, L, H", [(1, 1, 1), (3, 97, 17), (2, 1025, 33), (1, 0, 4)])
def test_fft_conv(device, dtype, c, batch, L, H):
    u, k = torch.randn(batch, L, H).to(REAL[dtype]), (torch.randn(c, H, L) / max(L, 1) ** 0.5).to(REAL[dtype])
    y = ops.fft_conv(*on(device, u, k))
    check("y", y, ref.fft_conv(*up(u, k)), ref.fft_conv(u, k))
    if L == 0:
        return  # the reference's empty y has no graph to differentiate
    g = torch.randn(batch, L, H).to(REAL[dtype])
    check_grads("fft_conv grad", ("u", "k"), ops.fft_conv, ref.fft_conv, ref.fft_conv, (u, k), (g,), device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch, H, N, r", [(1, 1, 1, 1), (3, 17, 5, 2), (2, 4, 64, 3), (2, 3, 70, 1)])
def test_dplr_step(device, batch, H, N, r):
    Lam = torch.complex(-0.5 - torch.rand(H, N), torch.pi * torch.arange(N) * (1 + torch.rand(H, N))).to(C64)
    P = (torch.randn(H, r, N, dtype=C128) / N**0.5).to(C64)
    dt = torch.exp(torch.rand(H) * 4 - 7)
    B, C, D = torch.randn(H, N, dtype=C64), torch.randn(H, N, dtype=C64) / N**0.5, torch.randn(H)
    x, u = torch.randn(batch, H, N, dtype=C64), torch.randn(batch, H)
    f = ops.dplr_setup(*on(device, dt, Lam, P, B))
    y, new = ops.dplr_step(*on(device, x, u), f, *on(device, C, D))
    ty, tn = ref.dplr_step(*up(x, u, dt, Lam, P, B, C, D))
    ly, ln = ref.dplr_step(x, u, dt, Lam, P, B, C, D)
    check("y", y, ty, ly)
    check("state", new, tn, ln)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("H, N, r, L", [(1, 1, 0, 1), (3, 17, 1, 64), (2, 8, 3, 501), (2, 30, 1, 2048)])
def test_dplr_untruncated_C(device, H, N, r, L):
    Lam = torch.complex(-0.5 - torch.rand(H, N), torch.pi * torch.arange(N) * (1 + torch.rand(H, N))).to(C64)
    P = (torch.randn(H, r, N, dtype=C128) / N**0.5).to(C64)
    dt, C = torch.exp(torch.rand(H) * 4 - 7), torch.randn(H, N, dtype=C64)
    truth = torch.from_numpy(untruncated_C_long_double(*up(dt, Lam, P, C), L))
    check("untruncated C complex64", ops.dplr_untruncated_C(*on(device, dt, Lam, P, C), L), truth,
          ref.dplr_untruncated_C(dt, Lam, P, C, L))
    check("untruncated C complex128", ops.dplr_untruncated_C(*on(device, *up(dt, Lam, P, C)), L), truth, None)


# ---- CUDA only ------------------------------------------------------------------------


@requires_cuda
def test_cuda_graph_s4d_kernel_and_100_steps():
    """A captured S4D kernel (discretize + vandermonde) and 100 in-place ssm_step calls,
    replayed, give the eager results bit for bit (same kernels, same inputs)."""
    H, N, L, batch = 64, 32, 1024, 4
    dt, A, B, C, D = on("cuda", *s4d_params(H, N, C64))
    us = torch.randn(100, batch, H, device="cuda")
    x0 = torch.randn(batch, H, N, dtype=C64, device="cuda")

    def work(x):
        dA, dB = ops.discretize(dt, A, B)
        K = ops.vandermonde(C * dB, dt.unsqueeze(-1) * A, L)  # the S4D convolution kernel
        ys = [ops.ssm_step(x, us[i], dA, dB, C, D, out=x)[0] for i in range(100)]
        return K, torch.stack(ys)

    with torch.no_grad():
        x_eager = x0.clone()
        K_eager, y_eager = work(x_eager)
        x_graph = x0.clone()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):  # warm-up on a side stream, as torch's docs ask
            work(x_graph.clone())
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            K_graph, y_graph = work(x_graph)
        x_graph.copy_(x0)
        g.replay()
        torch.cuda.synchronize()
    assert torch.equal(K_graph, K_eager)
    assert torch.equal(y_graph, y_eager)
    assert torch.equal(x_graph, x_eager)


@requires_cuda
def test_runs_on_the_current_stream():
    """Work queued on a side stream is ordered before ssmkit's kernels on that stream."""
    v, w = torch.randn(256, 32, dtype=C64, device="cuda"), torch.randn(256, 32, dtype=C64, device="cuda")
    z = torch.randn(4097, dtype=C64, device="cuda")
    expected = ops.cauchy(v, z, w)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        z2 = torch.zeros_like(z)
        torch.cuda._sleep(10_000_000)  # if ssmkit ignored the stream it would read z2 early
        z2.copy_(z)
        out = ops.cauchy(v, z2, w)
    torch.cuda.current_stream().wait_stream(s)
    assert torch.equal(out, expected)


@requires_cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a second GPU")
def test_second_gpu():
    v, x = torch.randn(8, 32, dtype=C64), s4d_x((8,), 32, C64)
    expected = ops.vandermonde(v.cuda(0), x.cuda(0), 3000).cpu()
    torch.cuda.set_device(0)
    out = ops.vandermonde(v.cuda(1), x.cuda(1), 3000)
    assert out.device == torch.device("cuda:1")
    assert torch.equal(out.cpu(), expected)
    assert torch.cuda.current_device() == 0  # the device guard restored it


@requires_cuda
def test_mixed_devices_are_refused():
    v, z, w = torch.randn(3, 4, dtype=C64), torch.randn(5, dtype=C64).cuda(), torch.randn(3, 4, dtype=C64)
    out = np.empty((3, 5), np.complex64)
    with pytest.raises(ValueError, match="z: expected an array on cpu like v, got one on cuda:0"):
        ssmkit._C.cauchy(v.numpy(), z, w.numpy(), out, True)


@pytest.mark.skipif(CUDA_BUILD or not torch.cuda.is_available(), reason="needs a GPU and a CPU-only build")
def test_cpu_only_build_names_the_fix():
    with pytest.raises(ValueError, match="SSMKIT_CUDA=ON"):
        ops.cauchy(*(torch.randn(3, 4, dtype=C64, device="cuda") for _ in range(3)))


def test_devices_helper():
    assert DEVICES[0] == "cpu" and ("cuda" in DEVICES) == HAVE_CUDA


def test_bench_device_cuda_needs_a_gpu(capsys):
    from ssmkit.cli import main

    if HAVE_CUDA:
        assert main(["bench", "--device", "cuda", "--quick", "step"]) == 0
        assert "of peak" in capsys.readouterr().out
    else:
        assert main(["bench", "--device", "cuda", "--quick"]) == 2
        assert "--device cuda:" in capsys.readouterr().err
