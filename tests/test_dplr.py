"""dplr_setup / dplr_step against the dense bilinear discretization of the full
(2N, conjugate pairs written out) system, built in complex128 with explicit matrices."""

import numpy as np
import pytest
import torch
from accuracy import assert_close_2x
from conftest import untruncated_C_long_double

from ssmkit import ops
from ssmkit.nn import backend, ssm_kernel
from ssmkit.ops import reference as ref

C64, C128 = torch.complex64, torch.complex128


def system(H, N, r, dtype=C64):
    """S4-like: Lambda with negative real parts, a rank-r P, random B, C, D."""
    Lam = torch.complex(-0.5 - torch.rand(H, N), torch.pi * torch.arange(N) * (1 + torch.rand(H, N)))
    P = torch.randn(H, r, N, dtype=C128) / N**0.5
    dt = torch.exp(torch.rand(H) * 4 - 7).double()  # [1e-3, 5e-2]
    real = torch.float32 if dtype == C64 else torch.float64
    return (dt.to(real), Lam.to(dtype), P.to(dtype), torch.randn(H, N, dtype=dtype),
            torch.randn(H, N, dtype=dtype) / N**0.5, torch.randn(H).to(real))  # fmt: skip


def up(*ts):
    return [None if t is None else t.to(C128 if t.is_complex() else torch.float64) for t in ts]


@pytest.mark.parametrize(
    "batch,H,N,r", [(1, 1, 1, 1), (3, 17, 5, 2), (16, 33, 32, 1), (2, 4, 64, 3), (5, 37, 13, 1), (9, 20, 7, 1)]
)
def test_dplr_step_matches_dense_2x(batch, H, N, r):
    dt, Lam, P, B, C, D = system(H, N, r)
    x = torch.randn(batch, H, N, dtype=C64)
    u = torch.randn(batch, H)
    f = ops.dplr_setup(dt, Lam, P, B)
    y, new = ops.dplr_step(x, u, f, C, D)
    ty, tn = ref.dplr_step(*up(x, u, dt, Lam, P, B, C, D))
    ly, ln = ref.dplr_step(x, u, dt, Lam, P, B, C, D)
    assert_close_2x("y", y, ty, ly)
    assert_close_2x("state", new, tn, ln)
    # the factors themselves: a is the diagonal part's bilinear dA, dB the system's, and
    # diag(a) - Pd Q^* the system's dA (its stored rows; sigma = 2 Re(Q^* x) sums over the
    # full [x, conj x] with [Q, conj Q])
    a, _ = ops.discretize(dt, Lam, B, method="bilinear")
    tA, tB = ref.dplr_dense(*up(dt, Lam, P, B))
    assert torch.allclose(f.dA, a, rtol=1e-5) and torch.allclose(f.dB, tB[:, :N].to(C64), rtol=1e-5, atol=1e-7)
    Pd, Q = up(f.Pd, f.Q)
    dA = torch.diag_embed(torch.cat([up(f.dA)[0], torch.zeros_like(up(f.dA)[0])], -1))[:, :N]
    dA = dA - torch.einsum("hkn,hkm->hnm", Pd, torch.cat([Q, Q.conj()], -1).conj())
    assert torch.allclose(dA, tA[:, :N], rtol=0, atol=1e-5 * tA.abs().max())


@pytest.mark.parametrize("dtype", [C64, C128])
@pytest.mark.parametrize("batch,H,N,r", [(9, 37, 13, 1), (6, 40, 32, 1), (1, 5, 3, 1), (5, 19, 9, 2)])
def test_dplr_rows_independent_of_batch(dtype, batch, H, N, r):
    """Rank 1 steps up to 4 batch elements of one channel together (here full blocks
    and a ragged remainder); each row's result must not depend on that: each batch
    element stepped alone gives the batched result bit for bit, and so does stepping
    in place."""
    dt, Lam, P, B, C, D = system(H, N, r, dtype)
    real = dt.dtype
    f = ops.dplr_setup(dt, Lam, P, B)
    x = torch.randn(batch, H, N, dtype=dtype)
    u = torch.randn(batch, H, dtype=real)
    with torch.no_grad():
        y, new = ops.dplr_step(x, u, f, C, D)
        for b in range(batch):
            yb, nb = ops.dplr_step(x[b : b + 1], u[b : b + 1], f, C, D)
            assert torch.equal(yb[0], y[b]) and torch.equal(nb[0], new[b]), f"batch element {b}"
        xi = x.clone()
        yi, _ = ops.dplr_step(xi, u, f, C, D, out=xi)
        assert torch.equal(xi, new) and torch.equal(yi, y)


def test_dplr_trajectory_matches_dense():
    """200 steps in complex128 equal the dense recurrence (no error build-up in the
    Woodbury form), and in complex64 within the 2x rule of a dense complex64 run."""
    batch, H, N, r, L = 2, 5, 16, 2, 200
    dt, Lam, P, B, C, D = system(H, N, r)
    u = torch.randn(batch, L, H)
    for dtype in (C128, C64):
        args = up(dt, Lam, P, B, C, D) if dtype == C128 else (dt, Lam, P, B, C, D)
        f = ops.dplr_setup(*args[:4])
        x = torch.zeros(batch, H, N, dtype=dtype)
        ys = []
        for l in range(L):
            yl, _ = ops.dplr_step(x, u[:, l].to(args[0].dtype), f, args[4], args[5], out=x)
            ys.append(yl)
        y = torch.stack(ys, 1)

        def dense(dt, Lam, P, B, C, D, u):
            dA, dB = ref.dplr_dense(dt, Lam, P, B)
            xf = torch.zeros(batch, H, 2 * N, dtype=dA.dtype)
            out = []
            Cf = torch.cat([C, C.conj()], -1)
            for l in range(L):
                xf = torch.einsum("hij,bhj->bhi", dA, xf) + dB * u[:, l, :, None].to(dA.dtype)
                out.append((Cf * xf).sum(-1).real + D * u[:, l])
            return torch.stack(out, 1), xf[..., :N]

        ty, tx = dense(*up(dt, Lam, P, B, C, D, u))
        if dtype == C128:
            assert torch.allclose(y, ty, rtol=0, atol=1e-11 * ty.abs().max())
            assert torch.allclose(x, tx, rtol=0, atol=1e-11 * tx.abs().max())
        else:
            ly, lx = dense(dt, Lam, P, B, C, D, u)
            assert_close_2x("y over 200 steps", y, ty, ly)
            assert_close_2x("state after 200 steps", x, tx, lx)


def test_dplr_in_place_numpy_and_inference_only():
    dt, Lam, P, B, C, D = system(6, 8, 2)
    x, u = torch.randn(3, 6, 8, dtype=C64), torch.randn(3, 6)
    f = ops.dplr_setup(dt, Lam, P, B)
    y0, n0 = ops.dplr_step(x, u, f, C, D)
    x1 = x.clone()
    y1, n1 = ops.dplr_step(x1, u, f, C, D, out=x1)
    assert n1 is x1 and torch.equal(x1, n0) and torch.equal(y1, y0)
    fn = ops.dplr_setup(dt.numpy(), Lam.numpy(), P.numpy(), B.numpy())
    assert all(isinstance(t, np.ndarray) for t in fn)
    yn, nn = ops.dplr_step(x.numpy(), u.numpy(), fn, C.numpy(), D.numpy())
    assert np.allclose(yn, y0.numpy(), rtol=1e-6, atol=1e-6) and np.allclose(nn, n0.numpy(), atol=1e-6)
    Cg = C.clone().requires_grad_()
    y, _ = ops.dplr_step(x, u, f, Cg, D)
    with pytest.raises(RuntimeError, match="inference only"):
        y.sum().backward()


def test_dplr_step_out_works_as_for_ssm_step():
    """out= is one mechanism for both step ops: out=state updates in place (dplr_step_),
    another tensor is written by dplr_step_out, a NumPy out is written by the core; all
    give the functional step's bits. Recording autograd, out= refuses."""
    dt, Lam, P, B, C, D = system(6, 8, 2)
    x, u = torch.randn(3, 6, 8, dtype=C64), torch.randn(3, 6)
    f = ops.dplr_setup(dt, Lam, P, B)
    y0, n0 = ops.dplr_step(x, u, f, C, D)
    o = torch.empty_like(x)
    y1, n1 = ops.dplr_step(x, u, f, C, D, out=o)  # the direct path
    assert n1 is o and torch.equal(o, n0) and torch.equal(y1, y0)
    x_t = x.transpose(0, 1).contiguous().transpose(0, 1)  # not contiguous: through torch.ops
    o = torch.empty_like(x)
    y2, n2 = ops.dplr_step(x_t, u, f, C, D, out=o)
    assert n2 is o and torch.equal(o, n0) and torch.equal(y2, y0)
    o = torch.empty_like(x)
    assert torch.equal(torch.ops.ssmkit.dplr_step_out(x, u, *f, C, D, o), y0) and torch.equal(o, n0)
    xi = x.clone()
    assert torch.equal(torch.ops.ssmkit.dplr_step_(xi, u, *f, C, D), y0) and torch.equal(xi, n0)
    on = np.empty((3, 6, 8), np.complex64)
    yn, nn = ops.dplr_step(x.numpy(), u.numpy(), [t.numpy() for t in f], C.numpy(), D.numpy(), out=on)
    assert nn is on and np.array_equal(on, n0.numpy()) and np.array_equal(yn, y0.numpy())
    with pytest.raises(RuntimeError, match="inference only"):
        ops.dplr_step(x, u, f, C.clone().requires_grad_(), D, out=o)
    torch.library.opcheck(torch.ops.ssmkit.dplr_step_out, (x, u, *f, C, D, torch.empty_like(x)))


def test_dplr_bad_input():
    dt, Lam, P, B, C, D = system(4, 5, 2)
    f = ops.dplr_setup(dt, Lam, P, B)
    x, u = torch.randn(2, 4, 5, dtype=C64), torch.randn(2, 4)
    with pytest.raises(ValueError, match="^dt: expected positive"):
        ops.dplr_setup(-dt, Lam, P, B)
    with pytest.raises(ValueError, match="^P: expected shape"):
        ops.dplr_setup(dt, Lam, P[:, :, :3], B)
    with pytest.raises(TypeError, match="^P: expected complex64"):
        ops.dplr_setup(dt, Lam, P.to(C128), B)
    with pytest.raises(ValueError, match="^state: expected shape .*batch"):
        ops.dplr_step(torch.randn(3, 4, 5, dtype=C64), u, f, C, D)
    with pytest.raises(TypeError, match="^u: expected a real float32"):
        ops.dplr_step(x, u.double(), f, C, D)
    with pytest.raises(ValueError, match="^C: expected shape"):
        ops.dplr_step(x, u, f, C[:3], D)
    big = ops.dplr_setup(dt, Lam, torch.zeros(4, 65, 5, dtype=C64), B)
    with pytest.raises(ValueError, match="^Pd: ranks up to 64"):
        ops.dplr_step(x, u, big, C, D)


def test_dplr_setup_gradcheck():
    """dplr_setup is differentiable in every input (through its double-precision factors)."""
    dt, Lam, P, B = (t.requires_grad_() for t in up(*system(3, 4, 2)[:4]))
    assert torch.autograd.gradcheck(lambda *a: tuple(ops.dplr_setup(*a)), (dt, Lam, P, B), fast_mode=True)


def test_dplr_opcheck_and_compile():
    dt, Lam, P, B, C, D = system(5, 4, 2)
    f = ops.dplr_setup(dt, Lam, P, B)
    x, u = torch.randn(2, 5, 4, dtype=C64), torch.randn(2, 5)
    torch.library.opcheck(torch.ops.ssmkit.dplr_step, (x, u, *f, C, D))
    torch.library.opcheck(torch.ops.ssmkit.dplr_step, (x, u, *f, C, None))
    torch.library.opcheck(torch.ops.ssmkit.dplr_step_, (x.clone(), u, *f, C, D))

    def gen(x, u, f, C, D):
        ys = []
        for l in range(3):
            y, x = ops.dplr_step(x, u, f, C, D)
            ys.append(y)
        return torch.stack(ys), x

    y, xn = torch.compile(gen, fullgraph=True, backend="aot_eager")(x, u, f, C, D)
    ty, tx = gen(x, u, f, C, D)
    assert torch.equal(y, ty) and torch.equal(xn, tx)


# ---- dplr_untruncated_C: the step's C from the C~ of kernel length L ----------------


def untruncated_inputs(H, N, r, dtype):
    dt, Lam, P, _, C, _ = system(H, N, r, dtype)
    return dt, Lam, P, C


@pytest.mark.parametrize("L", [1, 2, 7, 64, 501, 2048, 8000])
@pytest.mark.parametrize("r", [0, 1, 2, 3])
def test_dplr_untruncated_C_long_double(L, r):
    """Against a long-double dense solve (tests/conftest.py): complex128 at the double
    floor of the 2x rule; complex64 within 2x of the dense definition run in complex64.
    Odd and even L (z = -1 is a frequency only for an even L), L below and above the
    SIMD width of the frequency loop, rank 0 (diagonal) to 3 (the pivoted solve)."""
    single = untruncated_inputs(3, 8, r, C64)
    double = up(*single)
    truth = torch.from_numpy(untruncated_C_long_double(*double, L))
    assert_close_2x("complex128", ops.dplr_untruncated_C(*double, L), truth)
    assert_close_2x("complex64", ops.dplr_untruncated_C(*single, L), truth, ref.dplr_untruncated_C(*single, L))


def test_dplr_untruncated_C_is_the_composition_and_trains_through_it():
    """The op and ssmkit.nn.ssm_kernel.dplr_untruncated_C compute the same sums; the
    layers' compiled primitive takes the op for inference and the composition where a
    gradient is wanted, and that gradient is right (gradcheck)."""
    inputs = up(*untruncated_inputs(4, 6, 2, C64))
    op = ops.dplr_untruncated_C(*inputs, 300)
    composed = ssm_kernel.dplr_untruncated_C(backend.COMPILED, *inputs, 300)
    assert (op - composed).abs().max() <= 1e-13 * composed.abs().max()
    grad_inputs = [t.clone().requires_grad_() for t in up(*untruncated_inputs(2, 3, 1, C64))]
    assert torch.autograd.gradcheck(lambda *a: backend.COMPILED.untruncated_C(*a, 33), grad_inputs, fast_mode=True)
    with pytest.raises(RuntimeError, match="inference only.*ssm_kernel.dplr_untruncated_C"):
        ops.dplr_untruncated_C(*grad_inputs, 33).abs().sum().backward()


def test_dplr_untruncated_C_numpy_threads_and_opcheck():
    dt, Lam, P, C = untruncated_inputs(5, 7, 2, C64)
    want = ops.dplr_untruncated_C(dt, Lam, P, C, 64)
    got = ops.dplr_untruncated_C(dt.numpy(), Lam.numpy(), P.numpy(), C.numpy(), 64)
    assert isinstance(got, np.ndarray) and np.array_equal(got, want.numpy())
    # one channel at a time gives each channel's bits: no dependence on the split
    rows = [ops.dplr_untruncated_C(dt[h : h + 1], Lam[h : h + 1], P[h : h + 1], C[h : h + 1], 64) for h in range(5)]
    assert torch.equal(torch.cat(rows), want)
    torch.library.opcheck(torch.ops.ssmkit.dplr_untruncated_C, (dt, Lam, P, C, 64))
    torch.library.opcheck(torch.ops.ssmkit.dplr_untruncated_C, up(dt, Lam, P, C) + [7])


def test_dplr_untruncated_C_bad_input():
    dt, Lam, P, C = untruncated_inputs(4, 5, 2, C64)
    for L in (0, 2**32 + 1, 2**62):  # L sizes no array, so the core bounds it
        with pytest.raises(ValueError, match="^L: expected a kernel length from 1 to 2\\^32"):
            ops.dplr_untruncated_C(dt, Lam, P, C, L)
    with pytest.raises(ValueError, match=r"^dt: expected positive, finite step sizes, got dt\[0\]"):
        ops.dplr_untruncated_C(-dt, Lam, P, C, 8)
    with pytest.raises(ValueError, match="^P: expected shape"):
        ops.dplr_untruncated_C(dt, Lam, P[:, :, :3], C, 8)
    with pytest.raises(TypeError, match="^P: expected complex64"):
        ops.dplr_untruncated_C(dt, Lam, P.to(C128), C, 8)
    with pytest.raises(ValueError, match="^C: expected shape"):
        ops.dplr_untruncated_C(dt, Lam, P, C[:3], 8)
    with pytest.raises(ValueError, match="^P: ranks up to 64"):
        ops.dplr_untruncated_C(dt, Lam, torch.zeros(4, 65, 5, dtype=C64), C, 8)
