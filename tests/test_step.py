"""discretize, ssm_step and ssm_scan against the complex128 references (docs/architecture.md's
2x rule), gradients, the agreement of the step, scan and convolution modes, long
horizons, bad input, opcheck and torch.compile."""

import math

import numpy as np
import pytest
import torch
from accuracy import assert_close_2x, rel_error

from ssmkit import ops
from ssmkit.ops import reference as ref

C64, C128 = torch.complex64, torch.complex128
REAL = {C64: torch.float32, C128: torch.float64}


def params(H, N, dtype=C64, method="zoh", scale=1.0):
    """S4D-like parameters: A = -1/2 + i pi n (S4D-Lin), dt log-uniform in [1e-3, 1e-1]."""
    n = torch.arange(N).repeat(H, 1)
    A = torch.complex(-0.5 * torch.ones(H, N) * scale, torch.pi * n * scale).to(dtype)
    B = torch.randn(H, N, dtype=dtype)
    C = torch.randn(H, N, dtype=dtype) / N**0.5
    dt = torch.exp(torch.rand(H) * (np.log(0.1) - np.log(1e-3)) + np.log(1e-3)).to(REAL[dtype])
    D = torch.randn(H).to(REAL[dtype])
    return dt, A, B, C, D


def up(*ts):
    return [None if t is None else t.to(C128 if t.is_complex() else torch.float64) for t in ts]


# ---- discretize ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["zoh", "bilinear"])
@pytest.mark.parametrize("H,N", [(1, 1), (3, 17), (97, 32)])
def test_discretize_2x(method, H, N):
    dt, A, B, _, _ = params(H, N)
    A = A + torch.randn(H, N, dtype=C64)  # away from the S4D grid, |dt A| spans small and large
    out = ops.discretize(dt, A, B, method=method)
    truth = ref.discretize(*up(dt, A, B), method)
    low = ref.discretize(dt, A, B, method)
    for name, o, t, lo in zip(("dA", "dB"), out, truth, low):
        assert_close_2x(f"{method} {name}", o, t, lo)
    # gradients, same rule: random upstream gradients through each implementation
    g = [torch.randn(H, N, dtype=C64) for _ in range(2)]

    def grads(fn, dt, A, B, g):
        dt, A, B = (t.detach().clone().requires_grad_() for t in (dt, A, B))
        outs = fn(dt, A, B)
        return torch.autograd.grad(outs, (dt, A, B), g)

    gk = grads(lambda *a: ops.discretize(*a, method=method), dt, A, B, g)
    gt = grads(lambda *a: ref.discretize(*a, method), *up(dt, A, B), up(*g))
    gl = grads(lambda *a: ref.discretize(*a, method), dt, A, B, g)
    for name, k, t, lo in zip(("dt", "A", "B"), gk, gt, gl):
        assert_close_2x(f"{method} grad {name}", k, t, lo)


def test_discretize_zoh_limit():
    """ZOH's dB -> dt B as A -> 0, with no cancellation near 0 (the naive formula is NaN at 0)."""
    H, N = 4, 6
    dt = torch.tensor([1e-3, 1e-2, 0.1, 1.0], dtype=torch.float64)
    B = torch.randn(H, N, dtype=C128)
    for mag in [0.0, 1e-30, 1e-12, 1e-6, 1e-3]:
        A = mag * torch.randn(H, N, dtype=C128)
        _, dB = ops.discretize(dt, A, B, method="zoh")
        z = dt[:, None] * A
        exact = dt[:, None] * B * sum(z**k / math.factorial(k + 1) for k in range(8))  # |z| < 1e-2
        assert torch.allclose(dB, exact, rtol=1e-14, atol=0), mag
        _, dB32 = ops.discretize(dt.float(), A.to(C64), B.to(C64), method="zoh")
        assert rel_error(dB32, exact)[0] < 1e-6
    # the switch between series and closed form at |dt A| = 1/2 is seamless
    A = torch.full((1, 3), 1.0, dtype=C128) * torch.tensor([0.4999999, 0.5, 0.5000001], dtype=C128)
    _, dB = ops.discretize(torch.ones(1, dtype=torch.float64), A, torch.ones(1, 3, dtype=C128), method="zoh")
    truth = torch.expm1(A.real) / A.real
    assert torch.allclose(dB.real, truth, rtol=1e-15)


@pytest.mark.parametrize("method", ["zoh", "bilinear"])
def test_discretize_gradcheck(method):
    dt, A, B, _, _ = params(2, 5, C128)
    A = A * torch.tensor([[1.0], [40.0]])  # row 0 in the series range, row 1 in the closed form
    ins = [t.requires_grad_() for t in (dt, A, B)]
    assert torch.autograd.gradcheck(lambda *a: ops.discretize(*a, method=method), ins)


# ---- ssm_step ------------------------------------------------------------------------


def stable(H, N, dtype=C64):
    dt, A, B, C, D = params(H, N, dtype)
    dA, dB = ref.discretize(*up(dt, A, B), "zoh")
    return dA.to(dtype), dB.to(dtype), C, D


@pytest.mark.parametrize("batch,H,N", [(1, 1, 1), (3, 17, 5), (16, 256, 32), (2, 33, 64), (5, 37, 13), (9, 70, 3)])
def test_ssm_step_2x(batch, H, N):
    dA, dB, dC, D = stable(H, N)
    x = torch.randn(batch, H, N, dtype=C64)
    u = torch.randn(batch, H)
    for d in (D, None):
        y, new = ops.ssm_step(x, u, dA, dB, dC, d)
        ty, tn = ref.ssm_step(*up(x, u, dA, dB, dC, d))
        ly, ln = ref.ssm_step(x, u, dA, dB, dC, d)
        assert_close_2x("y", y, ty, ly)
        assert_close_2x("state", new, tn, ln)


def test_ssm_step_in_place_and_out():
    """out=state updates the state in place (the same tensor comes back); out=other
    writes there; both equal the functional result bit for bit."""
    dA, dB, dC, D = stable(9, 7)
    x = torch.randn(4, 9, 7, dtype=C64)
    u = torch.randn(4, 9)
    y0, n0 = ops.ssm_step(x, u, dA, dB, dC, D)
    x1 = x.clone()
    y1, n1 = ops.ssm_step(x1, u, dA, dB, dC, D, out=x1)
    assert n1 is x1 and torch.equal(n1, n0) and torch.equal(y1, y0)
    o = torch.empty_like(x)
    y2, n2 = ops.ssm_step(x, u, dA, dB, dC, D, out=o)
    assert n2 is o and torch.equal(o, n0) and torch.equal(y2, y0)
    # NumPy entry, in place too
    xn = x.numpy().copy()
    yn, nn = ops.ssm_step(xn, u.numpy(), dA.numpy(), dB.numpy(), dC.numpy(), D.numpy(), out=xn)
    assert nn is xn and np.array_equal(xn, n0.numpy()) and np.array_equal(yn, y0.numpy())


@pytest.mark.parametrize("dtype", [C64, C128])
@pytest.mark.parametrize("batch,H,N", [(9, 37, 13), (6, 70, 32), (1, 5, 3)])
def test_ssm_step_rows_independent_of_batch(dtype, batch, H, N):
    """The kernel steps up to 4 batch elements of one channel together (here full
    blocks and a ragged remainder); each row's result must not depend on that:
    stepping each batch element alone gives the batched result bit for bit, and so
    does stepping in place."""
    dA, dB, dC, D = (t.to(dtype) if t.is_complex() else t.to(REAL[dtype]) for t in stable(H, N))
    x = torch.randn(batch, H, N, dtype=dtype)
    u = torch.randn(batch, H, dtype=REAL[dtype])
    with torch.no_grad():
        y, new = ops.ssm_step(x, u, dA, dB, dC, D)
        for b in range(batch):
            yb, nb = ops.ssm_step(x[b : b + 1], u[b : b + 1], dA, dB, dC, D)
            assert torch.equal(yb[0], y[b]) and torch.equal(nb[0], new[b]), f"batch element {b}"
        xi = x.clone()
        yi, _ = ops.ssm_step(xi, u, dA, dB, dC, D, out=xi)
        assert torch.equal(xi, new) and torch.equal(yi, y)


def test_ssm_step_direct_path_equals_op():
    """Eager no-grad calls skip torch.ops (ops._common.direct_call_ok); they must give
    the custom op's results bit for bit, bump the version of a state updated in place,
    and leave inputs that need a copy (conjugate views, non-contiguous) to the op."""
    dA, dB, dC, D = stable(9, 7)
    x = torch.randn(4, 9, 7, dtype=C64)
    u = torch.randn(4, 9)
    y_op, n_op = torch.ops.ssmkit.ssm_step(x, u, dA, dB, dC, D)
    with torch.no_grad():
        y, n = ops.ssm_step(x, u, dA, dB, dC, D)
        assert torch.equal(y, y_op) and torch.equal(n, n_op)
        x1 = x.clone()
        version = x1._version
        ops.ssm_step(x1, u, dA, dB, dC, D, out=x1)
        assert torch.equal(x1, n_op) and x1._version > version
        # a conjugate view and a transposed (non-contiguous) copy of the same values
        dC_conj = dC.conj().clone().conj()
        x_t = x.transpose(0, 1).contiguous().transpose(0, 1)
        assert dC_conj.is_conj() and not x_t.is_contiguous()
        y2, n2 = ops.ssm_step(x_t, u, dA, dB, dC_conj, D)
        assert torch.equal(y2, y_op) and torch.equal(n2, n_op)


def test_ssm_step_is_inference_only():
    dA, dB, dC, D = stable(3, 4)
    dA.requires_grad_()
    y, _ = ops.ssm_step(torch.randn(2, 3, 4, dtype=C64), torch.randn(2, 3), dA, dB, dC, D)
    with pytest.raises(RuntimeError, match="inference only"):
        y.sum().backward()
    x = torch.randn(2, 3, 4, dtype=C64)
    with pytest.raises(RuntimeError, match="inference only"):
        ops.ssm_step(x, torch.randn(2, 3), dA, dB, dC, D, out=x)


# ---- ssm_scan ------------------------------------------------------------------------


@pytest.mark.parametrize("batch,L,H,N", [(1, 1, 1, 1), (2, 97, 17, 5), (3, 300, 33, 32), (1, 0, 4, 3)])
def test_ssm_scan_2x_and_steps(batch, L, H, N):
    dA, dB, dC, D = stable(H, N)
    u = torch.randn(batch, L, H)
    x0 = torch.randn(batch, H, N, dtype=C64)
    for d, s in ((D, x0), (None, None)):
        y, xf = ops.ssm_scan(u, dA, dB, dC, d, s)
        ty, tx = ref.ssm_scan(*up(u, dA, dB, dC, d, s))
        ly, lx = ref.ssm_scan(u, dA, dB, dC, d, s)
        assert_close_2x("y", y, ty, ly)
        assert_close_2x("final state", xf, tx, lx)
    # equals L calls of ssm_step (the kernel), within the same rule
    x = x0.clone()
    ys = []
    for l in range(L):
        yl, _ = ops.ssm_step(x, u[:, l], dA, dB, dC, D, out=x)
        ys.append(yl)
    y, xf = ops.ssm_scan(u, dA, dB, dC, D, x0)
    if L:
        ty, tx = ref.ssm_scan(*up(u, dA, dB, dC, D, x0))
        ly, _ = ref.ssm_scan(u, dA, dB, dC, D, x0)
        _, ref_err = assert_close_2x("stepped y", torch.stack(ys, 1), ty, ly)
        assert rel_error(y, torch.stack(ys, 1).double())[0] <= 4 * ref_err + 2e-6
    # in double precision the two agree to rounding
    y64, x64 = ops.ssm_scan(*up(u, dA, dB, dC, D, x0))
    x = up(x0)[0].clone()
    for l in range(L):
        yl, _ = ops.ssm_step(x, u[:, l].double(), *up(dA, dB, dC, D), out=x)
        assert rel_error(yl, y64[:, l])[0] < 1e-12
    assert rel_error(x, x64)[0] < 1e-12


@pytest.mark.parametrize("L", [1, 97, 4096, 16384])
def test_ssm_scan_equals_convolution(L):
    """y = causal_conv(u, K) + D u with K_l = 2 Re(sum_n dC dA^l dB), from a zero state.
    K is a plain torch expression here (reference.ssm_kernel); it can switch to
    ops.vandermonde once that op is merged."""
    H, N = 3, 8
    dA, dB, dC, D = stable(H, N)
    u = torch.randn(2, L, H)
    y, _ = ops.ssm_scan(u, dA, dB, dC, D)

    def conv(u, dA, dB, dC, D):
        K = ref.ssm_kernel(dA, dB, dC, L)  # (H, L)
        n = 2 * L
        yk = torch.fft.irfft(torch.fft.rfft(u.transpose(1, 2), n) * torch.fft.rfft(K, n), n)[..., :L]
        return yk.transpose(1, 2) + D * u

    assert_close_2x(f"scan vs conv L={L}", y, conv(*up(u, dA, dB, dC, D)), conv(u, dA, dB, dC, D))


def test_ssm_scan_gradcheck():
    # L = 70 crosses the backward's checkpoint interval (64)
    dA, dB, dC, D = (t.to(C128) if t.is_complex() else t.double() for t in stable(3, 2))
    u = torch.randn(2, 70, 3, dtype=torch.float64)
    x0 = torch.randn(2, 3, 2, dtype=C128)
    ins = [t.clone().requires_grad_() for t in (u, dA, dB, dC, D, x0)]
    assert torch.autograd.gradcheck(lambda *a: ops.ssm_scan(*a), ins, fast_mode=True)
    ins = [t.clone().requires_grad_() for t in (u, dA, dB, dC)]
    assert torch.autograd.gradcheck(lambda *a: ops.ssm_scan(*a)[0], ins, fast_mode=True)


def test_ssm_scan_grad_2x():
    batch, L, H, N = 2, 300, 17, 5
    dA, dB, dC, D = stable(H, N)
    u = torch.randn(batch, L, H)
    x0 = torch.randn(batch, H, N, dtype=C64)
    gy, gx = torch.randn(batch, L, H), torch.randn(batch, H, N, dtype=C64)

    def grads(fn, ins, gy, gx):
        ins = [t.detach().clone().requires_grad_() for t in ins]
        return torch.autograd.grad(fn(*ins), ins, (gy, gx))

    ins = (u, dA, dB, dC, D, x0)
    gk = grads(ops.ssm_scan, ins, gy, gx)
    gt = grads(ref.ssm_scan, up(*ins), *up(gy, gx))
    gl = grads(ref.ssm_scan, ins, gy, gx)
    for name, k, t, lo in zip(("u", "dA", "dB", "dC", "D", "state"), gk, gt, gl):
        assert_close_2x(f"grad {name}", k, t, lo)


def chunked_scan(u, dA, dB, dC, D, K=1000):
    """Vectorised (not stepped) evaluation of a long scan, one channel per (h, n), zero
    state: within chunks of K steps a Toeplitz matrix of powers, across chunks a carry."""
    L, H = u.shape
    N = dA.shape[1]
    j = torch.arange(K, dtype=u.dtype)
    logA = torch.log(dA).reshape(-1, 1)  # (HN, 1)
    pw = torch.exp(logA * j)  # dA^j, (HN, K)
    diff = j[:, None] - j[None, :]
    T = torch.where(diff >= 0, torch.exp(logA[:, :, None] * diff.clamp(min=0)), 0)  # (HN, K, K)
    ub = (dB.reshape(-1, 1) * u.T.repeat_interleave(N, 0).to(dA.dtype)).reshape(H * N, L // K, K)
    Z = torch.matmul(T, ub.transpose(1, 2))  # (HN, K, chunks), zero-start responses
    ends = Z[:, -1, :]
    carry = torch.zeros(H * N, L // K + 1, dtype=dA.dtype)
    aK = torch.exp(logA[:, 0] * K)
    for c in range(L // K):
        carry[:, c + 1] = aK * carry[:, c] + ends[:, c]
    S = Z + pw[:, :, None] * dA.reshape(-1, 1, 1) * carry[:, None, :-1]  # states (HN, K, chunks)
    y = 2 * (dC.reshape(H, N, 1, 1) * S.reshape(H, N, K, -1)).sum(1).real  # (H, K, chunks)
    return y.permute(2, 1, 0).reshape(L, H) + D * u, S[:, -1, -1].reshape(H, N)


def test_long_horizon_no_drift():
    """10^6 steps of a stable system (|dA| in [0.97, 0.9995]) in float32 against complex128:
    within the 2x rule at the end and over each decade of steps (no drift)."""
    L, H, N = 10**6, 2, 2
    dt, A, B, C, D = params(H, N)
    A = torch.complex(-torch.tensor([[0.5, 0.03], [0.2, 0.005]]), A.imag)
    dt = torch.tensor([0.02, 0.1])
    dA, dB = ops.discretize(dt, A, B, method="zoh")
    assert (dA.abs() < 1).all()
    u = torch.randn(1, L, H)
    y, xf = ops.ssm_scan(u, dA, dB, C, D)
    ty, tx = chunked_scan(*up(u[0], dA, dB, C, D))
    ly, lx = chunked_scan(u[0], dA, dB, C, D)
    errs = []
    for lo, hi in [(0, 10**3), (10**3, 10**4), (10**4, 10**5), (10**5, 10**6)]:
        err, ref_err = assert_close_2x(f"y[{lo}:{hi}]", y[0, lo:hi], ty[lo:hi], ly[lo:hi])
        errs.append((err, ref_err))
    assert_close_2x("final state", xf[0], tx, lx)
    print("long-horizon (kernel, float32 reference) max rel errors per decade:",
          ["%.2e/%.2e" % e for e in errs])
    assert errs[-1][0] <= 4 * errs[0][0] + 1e-6  # no growth with the step count


# ---- bad input, opcheck, compile -----------------------------------------------------


def test_bad_input():
    dA, dB, dC, D = stable(4, 3)
    x, u = torch.randn(2, 4, 3, dtype=C64), torch.randn(2, 4)
    dt, A, B, _, _ = params(4, 3)
    with pytest.raises(TypeError, match="^u: expected a real float32"):
        ops.ssm_step(x, u.double(), dA, dB, dC, D)
    with pytest.raises(TypeError, match="^dB: expected complex64 like dA"):
        ops.ssm_step(x, u, dA, dB.to(C128), dC, D)
    with pytest.raises(ValueError, match="^dC: expected shape"):
        ops.ssm_step(x, u, dA, dB, dC[:, :2], D)
    with pytest.raises(ValueError, match="^state: expected shape .*batch"):
        ops.ssm_step(torch.randn(3, 4, 3, dtype=C64), u, dA, dB, dC, D)
    with pytest.raises(ValueError, match="^state: expected shape"):
        ops.ssm_scan(torch.randn(2, 5, 4), dA, dB, dC, D, torch.randn(1, 4, 3, dtype=C64))
    with pytest.raises(ValueError, match="^u: expected shape \\(batch, L, H\\)"):
        ops.ssm_scan(torch.randn(2, 5, 3), dA, dB, dC, D)
    with pytest.raises(ValueError, match="^D: expected shape"):
        ops.ssm_scan(torch.randn(2, 5, 4), dA, dB, dC, D[:3])
    with pytest.raises(ValueError, match="^dt: expected positive"):
        ops.discretize(torch.tensor([0.1, 0.0, 0.1, 0.1]), A, B, method="zoh")
    with pytest.raises(ValueError, match="^dt: expected positive"):
        ops.discretize(-dt, A, B, method="bilinear")
    with pytest.raises(ValueError, match="^dt: expected shape"):
        ops.discretize(dt[:3], A, B, method="zoh")
    with pytest.raises(TypeError, match="^A: expected a complex64 or complex128"):
        ops.discretize(dt, A.real, B, method="zoh")
    with pytest.raises(ValueError, match="^method"):
        ops.discretize(dt, A, B, method="euler")
    with pytest.raises(TypeError, match="all inputs to be torch tensors"):
        ops.ssm_step(x.numpy(), u, dA, dB, dC, D)
    with pytest.raises(TypeError, match="^u: expected a real float32"):  # NumPy path, same checks
        ops.ssm_scan(np.zeros((2, 5, 4)), dA.numpy(), dB.numpy(), dC.numpy())


def test_numpy_entry():
    dt, A, B, C, D = params(5, 4)
    dA, dB = ops.discretize(dt.numpy(), A.numpy(), B.numpy(), method="bilinear")
    tA, tB = ops.discretize(dt, A, B, method="bilinear")
    assert isinstance(dA, np.ndarray) and np.array_equal(dA, tA.numpy()) and np.array_equal(dB, tB.numpy())
    u = torch.randn(2, 9, 5)
    y, x = ops.ssm_scan(u.numpy(), dA, dB, C.numpy(), D.numpy())
    ty, tx = ops.ssm_scan(u, tA, tB, C, D)
    assert np.array_equal(y, ty.numpy()) and np.array_equal(x, tx.numpy())


def test_opcheck():
    dt, A, B, C, D = params(5, 4)
    dA, dB, dC, _ = stable(5, 4)
    x, u = torch.randn(2, 5, 4, dtype=C64), torch.randn(2, 5)
    opcheck = torch.library.opcheck
    opcheck(torch.ops.ssmkit.discretize, (dt.requires_grad_(), A.requires_grad_(), B, "zoh"))
    opcheck(torch.ops.ssmkit.discretize, (dt, A, B, "bilinear"))
    opcheck(torch.ops.ssmkit.discretize_backward, (dt.detach(), A.detach(), B, dA, None, "zoh"))
    opcheck(torch.ops.ssmkit.ssm_step, (x, u, dA, dB, dC, D))
    opcheck(torch.ops.ssmkit.ssm_step, (x, u, dA, dB, dC, None))
    opcheck(torch.ops.ssmkit.ssm_step_, (x.clone(), u, dA, dB, dC, D))
    opcheck(torch.ops.ssmkit.ssm_step_out, (x, u, dA, dB, dC, D, torch.empty_like(x)))
    U = torch.randn(2, 7, 5)
    opcheck(torch.ops.ssmkit.ssm_scan, (U.requires_grad_(), dA.requires_grad_(), dB, dC, D, x))
    opcheck(torch.ops.ssmkit.ssm_scan, (U, dA, dB, dC, None, None))
    opcheck(
        torch.ops.ssmkit.ssm_scan_backward,
        (U.detach(), dA.detach(), dB, dC, D, x, torch.randn(2, 7, 5), None, [True] * 6),
    )


def test_compile_fullgraph():
    dt, A, B, C, D = params(6, 4)
    u = torch.randn(2, 10, 6)

    def f(dt, A, B, C, D, u):
        dA, dB = ops.discretize(dt, A, B, method="zoh")
        y, x = ops.ssm_scan(u[:, :-1], dA, dB, C, D)
        y1, x = ops.ssm_step(x, u[:, -1], dA, dB, C, D)
        return torch.cat([y, y1[:, None]], 1), x

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    y, x = compiled(dt, A, B, C, D, u)
    ty, tx = f(dt, A, B, C, D, u)
    assert torch.equal(y, ty) and torch.equal(x, tx)
