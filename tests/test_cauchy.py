"""Tests of ssmkit.ops.cauchy: accuracy (docs/architecture.md's 2x rule), gradients, the torch
custom-op contract, input layouts, bad input, non-finite values, ISAs, determinism.

Ground truth is ssmkit.ops.reference.cauchy in complex128 on the complex64 inputs
upcast, so input rounding is never counted as error (tests/accuracy.py).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from accuracy import assert_close_2x

import ssmkit
from ssmkit.ops import cauchy, reference

C64, C128 = torch.complex64, torch.complex128
CUDA_COMPILED = bool(ssmkit._C.build_info()["cuda_compiled"])

# ---------------------------------------------------------------------------------
# Input generation
# ---------------------------------------------------------------------------------


def rand_v(shape, dtype=C64):
    return torch.randn(shape, dtype=dtype)


def make_w(shape, dtype=C64):
    """S4-like poles: Re(w) log-uniform in [-1, -1e-6], Im(w) uniform in [0, pi*N].

    The first pole of every row is pinned to -1e-6 + 1j: within 1e-6 of the imaginary
    axis (where the bilinear nodes lie) and of z = i on the unit circle, so both node
    sets meet near-singular denominators."""
    N = shape[-1]
    re = -torch.exp(torch.empty(shape, dtype=torch.float64).uniform_(math.log(1e-6), 0.0))
    im = torch.rand(shape, dtype=torch.float64) * math.pi * max(N, 1)
    if N > 0:
        re[..., 0] = -1e-6
        im[..., 0] = 1.0
    return torch.complex(re, im).to(dtype)


def unit_circle(L):
    """z_l = exp(2 pi i l / L): the roots of unity of S4's generating function."""
    l = torch.arange(L, dtype=torch.float64)
    return torch.exp(2j * math.pi * l / max(L, 1))


def bilinear(L):
    """S4's bilinear nodes z = 2 (1 - omega) / (1 + omega), on the imaginary axis.

    omega_l = exp(-2 pi i l / (2L)), l < L: S4 evaluates an FFT of twice the kernel
    length; the node l = L (omega = -1) is the pole of the transform, which S4 only
    meets as a huge rounded value and which is left out here."""
    omega = torch.exp(-2j * math.pi * torch.arange(L, dtype=torch.float64) / (2 * max(L, 1)))
    return 2 * (1 - omega) / (1 + omega)


Z_KINDS = {"circle": unit_circle, "bilinear": bilinear}


def make_z(kind, batch, L, dtype=C64):
    """Nodes of the given kind, rolled differently in each batch row (so a row mix-up shows)."""
    nodes = Z_KINDS[kind](L)
    rows = math.prod(batch)
    if rows <= 1 or L == 0:
        return nodes.reshape((1,) * len(batch) + (L,)).expand(tuple(batch) + (L,)).to(dtype).clone()
    return torch.stack([nodes.roll(r) for r in range(rows)]).reshape(tuple(batch) + (L,)).to(dtype)


# Leading-dimension layouts: (v batch, z batch, w batch); broadcasting in each.
LAYOUTS = {
    "0d": ((), (), ()),
    "H,z shared": ((2,), (), (2,)),  # S4: one set of poles per channel, shared nodes
    "B1,BH,1H": ((2, 1), (2, 3), (1, 3)),
    "A1H,AB1,BH": ((2, 1, 3), (2, 2, 1), (2, 3)),
    "v,w shared,z batched": ((), (3,), ()),
    "1s": ((1, 1), (1,), (1, 1, 1)),
    "z,w shared by rows": ((2, 3), (), (2, 1)),  # S4's kernel: 3 rows of a channel share z and w
}


def make_inputs(N, L, layout="0d", z_kind="bilinear", dtype=C64):
    vb, zb, wb = LAYOUTS[layout]
    return rand_v(vb + (N,), dtype), make_z(z_kind, zb, L, dtype), make_w(wb + (N,), dtype)


def ref_chunked(v, z, w, conj_pairs, dtype, max_terms=1 << 22):
    """reference.cauchy at dtype, over chunks of L so the (..., L, N) matrix stays small."""
    v, z, w = v.to(dtype), z.to(dtype), w.to(dtype)
    rows = math.prod(torch.broadcast_shapes(v.shape[:-1], z.shape[:-1], w.shape[:-1]))
    L, N = z.shape[-1], v.shape[-1]
    step = max(1, max_terms // max(1, rows * N * (2 if conj_pairs else 1)))
    if L <= step:
        return reference.cauchy(v, z, w, conj_pairs)
    return torch.cat([reference.cauchy(v, z[..., i : i + step], w, conj_pairs) for i in range(0, L, step)], -1)


def check_forward(name, v, z, w, conj_pairs):
    """complex64 kernel by the 2x rule and complex128 kernel by the floor, same truth."""
    truth = ref_chunked(v, z, w, conj_pairs, C128)
    low = ref_chunked(v, z, w, conj_pairs, C64)
    assert_close_2x(name + " complex64", cauchy(v, z, w, conj_pairs=conj_pairs), truth, low)
    v2, z2, w2 = v.to(C128), z.to(C128), w.to(C128)
    assert_close_2x(name + " complex128", cauchy(v2, z2, w2, conj_pairs=conj_pairs), truth)


def ref_grads(v, z, w, g, conj_pairs, dtype):
    """(dv, dz, dw) of <reference.cauchy, g> by torch.autograd at dtype."""
    ins = [t.detach().to(dtype).requires_grad_() for t in (v, z, w)]
    out = reference.cauchy(*ins, conj_pairs)
    return torch.autograd.grad(out, ins, g.to(dtype))


def kernel_grads(v, z, w, g, conj_pairs):
    ins = [t.detach().clone().requires_grad_() for t in (v, z, w)]
    out = cauchy(*ins, conj_pairs=conj_pairs)
    return torch.autograd.grad(out, ins, g)


# ---------------------------------------------------------------------------------
# Forward accuracy
# ---------------------------------------------------------------------------------

GRID_N = [1, 2, 3, 17, 32, 64, 100, 1024]
GRID_L = [1, 2, 97, 1025, 4096, 65536]
GRID_LAYOUTS = ["0d", "H,z shared", "B1,BH,1H", "A1H,AB1,BH"]


def grid_cases():
    for i, N in enumerate(GRID_N):
        for j, L in enumerate(GRID_L):
            # Each (N, L) gets a leading-dim layout in turn; large products get one row.
            layout = GRID_LAYOUTS[(i + j) % 4] if N * L <= (1 << 20) else "0d"
            for z_kind in Z_KINDS:
                for conj_pairs in (True, False):
                    # Only the S4 case of the largest point (about 20 s) runs by default.
                    huge = N * L > (1 << 24) and (z_kind, conj_pairs) != ("bilinear", True)
                    marks = [pytest.mark.slow] if huge else []
                    yield pytest.param(N, L, layout, z_kind, conj_pairs, marks=marks,
                                       id=f"N{N}-L{L}-{layout}-{z_kind}-{'conj' if conj_pairs else 'noconj'}")


@pytest.mark.parametrize("N, L, layout, z_kind, conj_pairs", list(grid_cases()))
def test_forward_grid(N, L, layout, z_kind, conj_pairs):
    v, z, w = make_inputs(N, L, layout, z_kind)
    check_forward(f"N={N} L={L} {layout} {z_kind} conj_pairs={conj_pairs}", v, z, w, conj_pairs)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("z_kind", list(Z_KINDS))
@pytest.mark.parametrize("conj_pairs", [True, False])
def test_forward_layouts(layout, z_kind, conj_pairs):
    v, z, w = make_inputs(17, 1025, layout, z_kind)
    out = cauchy(v, z, w, conj_pairs=conj_pairs)
    vb, zb, wb = LAYOUTS[layout]
    assert out.shape == torch.broadcast_shapes(vb, zb, wb) + (1025,)
    check_forward(f"{layout} {z_kind} conj_pairs={conj_pairs}", v, z, w, conj_pairs)


def test_forward_small_exact():
    # One hand-computable value, independent of the reference: v=1, w=-1, z=1, plus the
    # conjugate term 1/(1 - (-1)) again: 1/2 + 1/2.
    one = torch.ones(1, dtype=C128)
    assert cauchy(one, one, -one).item() == 1.0
    assert cauchy(one, one, -one, conj_pairs=False).item() == 0.5
    # v = i, w = i (conj pair: -i, w* = -i), z = 0: i/(-i) + (-i)/(i) = -2
    i = torch.tensor([1j], dtype=C128)
    assert cauchy(i, torch.zeros(1, dtype=C128), i).item() == -2.0


# ---------------------------------------------------------------------------------
# Rows that share z and w (the kernel computes their denominators once per group)
# ---------------------------------------------------------------------------------

# (v batch, z batch, w batch) with the number of rows that share z and w
GROUPED = {
    "1 (w per row)": ((3,), (), (3,)),
    "2": ((2,), (), ()),
    "3 per channel": ((2, 3), (2, 1), (2, 1)),
    "4 per channel (S4 kernel)": ((3, 4), (1, 1), (3, 1)),
    "5": ((5,), (1,), ()),
    "6 over two dims around H": ((2, 3, 3), (1, 3, 1), (3, 1)),
    "8 over three dims": ((2, 2, 2), (), (1,)),
}


@pytest.mark.parametrize("conj_pairs", [True, False])
@pytest.mark.parametrize("layout", list(GROUPED))
@pytest.mark.parametrize("N, L", [(3, 37), (19, 600)])  # not multiples of the SIMD width; 600: two l-blocks
def test_grouped_rows(N, L, layout, conj_pairs):
    vb, zb, wb = GROUPED[layout]
    v, z, w = rand_v(vb + (N,)), make_z("bilinear", zb, L), make_w(wb + (N,))
    check_forward(f"group {layout} N={N} L={L} conj_pairs={conj_pairs}", v, z, w, conj_pairs)


@pytest.mark.parametrize("dtype", [C64, C128])
@pytest.mark.parametrize("conj_pairs", [True, False])
def test_grouped_rows_equal_rows_alone(conj_pairs, dtype):
    # A row's bits do not depend on the rows it is grouped with (a vmap over v alone equals
    # a loop of single calls), forward and backward (the backward op's per-row gradients).
    N, L = 19, 600
    v, z, w = rand_v((2, 5, N), dtype), make_z("bilinear", (2, 1), L, dtype), make_w((2, 1, N), dtype)
    g = rand_v((2, 5, L), dtype)

    def fwd_bwd(v, z, w, g):
        return (cauchy(v, z, w, conj_pairs=conj_pairs),) + tuple(
            torch.ops.ssmkit.cauchy_backward(g, v, z, w, conj_pairs, [True, True, True]))  # fmt: skip

    together = fwd_bwd(v, z, w, g)
    for h in range(2):
        for k in range(5):
            alone = fwd_bwd(v[h, k], z[h, 0], w[h, 0], g[h, k])
            for name, a, b in zip(["out", "dv", "dz", "dw"], together, alone):
                assert torch.equal(a[h, k], b), f"{name} of row ({h}, {k})"


@pytest.mark.parametrize("conj_pairs", [True, False])
@pytest.mark.parametrize("layout", list(GROUPED))
def test_grouped_rows_backward(layout, conj_pairs):
    vb, zb, wb = GROUPED[layout]
    N, L = 19, 600
    v, z, w = rand_v(vb + (N,)), make_z("bilinear", zb, L), make_w(wb + (N,))
    g = rand_v(torch.broadcast_shapes(vb, zb, wb) + (L,))
    got = kernel_grads(v, z, w, g, conj_pairs)
    truth = ref_grads(v, z, w, g, conj_pairs, C128)
    low = ref_grads(v, z, w, g, conj_pairs, C64)
    got2 = kernel_grads(v.to(C128), z.to(C128), w.to(C128), g.to(C128), conj_pairs)
    for arg, d, d2, t, lo in zip("vzw", got, got2, truth, low):
        assert_close_2x(f"d{arg} group {layout} conj_pairs={conj_pairs}", d, t, lo)
        assert_close_2x(f"d{arg} complex128 group {layout} conj_pairs={conj_pairs}", d2, t)


@pytest.mark.parametrize("dtype", [C64, C128])
@pytest.mark.parametrize("rows", [1, 2, 3, 5])
def test_grouped_rows_outside_the_fused_range(rows, dtype):
    # Points where |(z - w)(z - conj w)|^2 overflows (z far out) or underflows (z at a
    # pole near 0): their blocks of terms are redone exactly, for every row of the group.
    huge, tiny = (1e10, 1e-12) if dtype == C64 else (1e80, 1e-100)
    N, L = 19, 37
    v, z, w = rand_v((rows, N), dtype), make_z("bilinear", (), L, dtype), make_w((N,), dtype)
    w[5] = complex(-tiny, tiny)
    z[3], z[20], z[21] = complex(0, huge), complex(huge, -huge), 0
    truth = reference.cauchy(v.to(C128), z.to(C128), w.to(C128))
    low = reference.cauchy(v, z, w) if dtype == C64 else None
    out = cauchy(v, z, w)
    for cols in ([3], [20], [21], [l for l in range(L) if l not in (3, 20, 21)]):
        low_cols = None if low is None else low[:, cols]
        assert_close_2x(f"rows={rows} l={cols[:3]}", out[:, cols], truth[:, cols], low_cols)


def test_grouped_rows_thread_count_independent(restore_threads):
    v, z, w = rand_v((2, 5, 37)), make_z("bilinear", (2, 1), 9000), make_w((2, 1, 37))
    g = rand_v((2, 5, 9000))
    ssmkit.set_num_threads(1)
    one = (cauchy(v, z, w),) + tuple(kernel_grads(v, z, w, g, True))
    for n in (2, 3):
        ssmkit.set_num_threads(n)
        many = (cauchy(v, z, w),) + tuple(kernel_grads(v, z, w, g, True))
        for name, a, b in zip(["out", "dv", "dz", "dw"], one, many):
            assert torch.equal(a, b), f"{name}: 1 and {n} threads differ bitwise"


# ---------------------------------------------------------------------------------
# Empty sizes
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [C64, C128])
@pytest.mark.parametrize("conj_pairs", [True, False])
@pytest.mark.parametrize(
    "v_shape, z_shape, w_shape, out_shape",
    [
        ((3, 0), (5,), (3, 0), (3, 5)),  # N = 0: empty sums, zeros
        ((0,), (2, 7), (0,), (2, 7)),
        ((3, 4), (0,), (3, 4), (3, 0)),  # L = 0
        ((0, 4), (5,), (4,), (0, 5)),  # rows = 0
        ((0, 1, 4), (2, 5), (4,), (0, 2, 5)),  # rows = 0 by broadcasting
        ((0, 0), (0,), (0,), (0, 0)),
    ],
    ids=["N=0", "N=0 z batched", "L=0", "rows=0", "rows=0 broadcast", "all 0"],
)
def test_empty(v_shape, z_shape, w_shape, out_shape, dtype, conj_pairs):
    v, z, w = rand_v(v_shape, dtype), rand_v(z_shape, dtype), make_w(w_shape, dtype)
    v.requires_grad_(), z.requires_grad_(), w.requires_grad_()
    out = cauchy(v, z, w, conj_pairs=conj_pairs)
    assert out.shape == out_shape and out.dtype == dtype
    assert torch.equal(out.detach(), torch.zeros(out_shape, dtype=dtype))
    # Gradients of empty sums are zeros of each input's shape.
    g = rand_v(out_shape, dtype)
    dv, dz, dw = torch.autograd.grad(out, (v, z, w), g)
    for d, x in ((dv, v), (dz, z), (dw, w)):
        assert d.shape == x.shape and torch.equal(d, torch.zeros_like(x))
    # NumPy entry point too.
    o = cauchy(v.detach().numpy(), z.detach().numpy(), w.detach().numpy(), conj_pairs=conj_pairs)
    assert isinstance(o, np.ndarray) and o.shape == out_shape and not o.any()


# ---------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("conj_pairs", [True, False])
@pytest.mark.parametrize(
    "shapes",
    [
        ((3,), (5,), (3,)),
        ((2, 3), (5,), (2, 3)),  # z broadcast over rows: dz sums over them
        ((2, 1, 3), (1, 2, 4), (2, 3)),  # every input broadcast somewhere
        ((1, 2), (3, 2, 4), (2,)),
        ((3, 2, 3), (1, 1, 4), (2, 3)),  # z and w shared by the 3 rows of each group
    ],
    ids=["0d", "z shared", "all broadcast", "v,w shared", "z,w shared"],
)
def test_gradcheck(shapes, conj_pairs):
    vs, zs, ws = shapes
    v = rand_v(vs, C128).requires_grad_()
    z = torch.exp(1j * torch.rand(zs, dtype=torch.float64) * 2 * math.pi).requires_grad_()
    w = torch.complex(-0.5 - torch.rand(ws, dtype=torch.float64), 3 * torch.randn(ws, dtype=torch.float64))
    w.requires_grad_()
    assert torch.autograd.gradcheck(lambda v, z, w: cauchy(v, z, w, conj_pairs=conj_pairs), (v, z, w))


def test_gradcheck_views():
    # Conjugate and negative views of leaves differentiate through the op correctly.
    v = rand_v((2, 3), C128).requires_grad_()
    z = torch.exp(1j * torch.rand(4, dtype=torch.float64) * 6).requires_grad_()
    w = make_w((2, 3), C128).requires_grad_()
    fn = lambda v, z, w: cauchy(v.conj(), torch._neg_view(z), w.conj(), conj_pairs=False)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (v, z, w))


@pytest.mark.parametrize(
    "N, L, layout, z_kind, conj_pairs",
    [
        (1, 1, "0d", "circle", True),
        (3, 97, "H,z shared", "bilinear", True),
        (17, 1025, "B1,BH,1H", "circle", True),
        (17, 1025, "B1,BH,1H", "bilinear", False),
        (32, 4096, "H,z shared", "bilinear", True),
        (64, 1025, "A1H,AB1,BH", "bilinear", True),
        (100, 97, "v,w shared,z batched", "circle", False),
        (2, 65536, "H,z shared", "bilinear", True),  # several backward chunks of L
        (1024, 2, "0d", "circle", True),
        (1024, 4096, "0d", "bilinear", True),
    ],
)
def test_backward_2x(N, L, layout, z_kind, conj_pairs):
    v, z, w = make_inputs(N, L, layout, z_kind)
    g = rand_v(cauchy(v, z, w).shape, C64)
    got = kernel_grads(v, z, w, g, conj_pairs)
    truth = ref_grads(v, z, w, g, conj_pairs, C128)
    low = ref_grads(v, z, w, g, conj_pairs, C64)
    name = f"N={N} L={L} {layout} {z_kind} conj_pairs={conj_pairs}"
    for arg, d, t, lo, x in zip("vzw", got, truth, low, (v, z, w)):
        assert d.shape == x.shape
        assert_close_2x(f"d{arg} {name}", d, t, lo)
    # complex128 kernel backward against the same truth, at the double floor.
    got2 = kernel_grads(v.to(C128), z.to(C128), w.to(C128), g.to(C128), conj_pairs)
    for arg, d, t in zip("vzw", got2, truth):
        assert_close_2x(f"d{arg} complex128 {name}", d, t)


def test_backward_partial_needs():
    # Only some inputs require grad: the others get None and the rest are unchanged.
    v, z, w = make_inputs(5, 33, "H,z shared", "circle", C128)
    g = rand_v((2, 33), C128)
    full = ref_grads(v, z, w, g, True, C128)
    for needs in ([True, False, False], [False, True, False], [False, False, True], [True, False, True]):
        ins = [t.clone().requires_grad_(n) for t, n in zip((v, z, w), needs)]
        out = cauchy(*ins)
        out.backward(g)
        for x, n, t in zip(ins, needs, full):
            if n:
                assert_close_2x("partial", x.grad, t)
            else:
                assert x.grad is None


# ---------------------------------------------------------------------------------
# torch custom-op contract
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [C64, C128])
@pytest.mark.parametrize(
    "shapes, conj_pairs",
    [
        (((4,), (7,), (4,)), True),
        (((2, 1, 3), (1, 2, 5), (2, 3)), False),
        (((2, 0), (3,), (2, 0)), True),
        (((3, 2, 3), (5,), (1, 3)), True),  # z and w shared by groups of 6 rows
    ],
)
def test_opcheck(shapes, conj_pairs, dtype):
    vs, zs, ws = shapes
    v, z, w = rand_v(vs, dtype).requires_grad_(), rand_v(zs, dtype).requires_grad_(), make_w(ws, dtype)
    torch.library.opcheck(torch.ops.ssmkit.cauchy.default, (v, z, w.requires_grad_(), conj_pairs))
    out_shape = torch.broadcast_shapes(vs[:-1], zs[:-1], ws[:-1]) + (zs[-1],)
    for needs in ([True, True, True], [False, True, False]):
        args = (rand_v(out_shape, dtype), v.detach(), z.detach(), w.detach(), conj_pairs, needs)
        torch.library.opcheck(torch.ops.ssmkit.cauchy_backward.default, args)


def test_torch_compile_fullgraph():
    def f(v, z, w):
        return (cauchy(v * 1.5, z, w) * z).sum(-1)

    v, z, w = make_inputs(6, 33, "H,z shared", "circle", C128)
    ins = [t.requires_grad_() for t in (v, z, w)]
    compiled = torch.compile(f, fullgraph=True)
    out = compiled(*ins)
    grads = torch.autograd.grad(out.abs().sum(), ins)
    ref_ins = [t.detach().clone().requires_grad_() for t in ins]
    ref_out = (reference.cauchy(ref_ins[0] * 1.5, ref_ins[1], ref_ins[2]) * ref_ins[1]).sum(-1)
    ref = torch.autograd.grad(ref_out.abs().sum(), ref_ins)
    assert_close_2x("compiled forward", out.detach(), ref_out.detach())
    for arg, a, b in zip("vzw", grads, ref):
        assert_close_2x(f"compiled d{arg}", a, b)


# ---------------------------------------------------------------------------------
# Input layouts that must be read correctly
# ---------------------------------------------------------------------------------


def _base(dtype=C64):
    v, z, w = make_inputs(8, 40, "H,z shared", "circle", dtype)  # v, w (2, 8); z (40,)
    return v, z, w


def _views():
    """(name, make (v, z, w) from contiguous base tensors) for strided and lazy views."""
    return {
        "transposed": lambda v, z, w: (v.T.contiguous().T, z, w.T.contiguous().T),
        "step slices": lambda v, z, w: (
            torch.stack([v, v], -1).flatten(-2)[..., ::2],
            torch.stack([z, 2 * z, z], -1).flatten()[::3],
            torch.cat([w, w], 0).reshape(2, 2, 8)[0, :, :],
        ),
        "reversed copy, flipped back": lambda v, z, w: (v.flip(-1).flip(-1), z, w),
        "expanded rows": lambda v, z, w: (v[:1].expand(2, 8), z[None].expand(2, 40), w[:1].expand(2, 8)),
        "stride 0 in N": lambda v, z, w: (v[:, :1].expand(2, 8), z, w[:, :1].expand(2, 8)),
        "conj views": lambda v, z, w: (v.conj(), z.conj(), w.conj()),
        "neg views": lambda v, z, w: (torch._neg_view(v), torch._neg_view(z), torch._neg_view(w)),
    }


@pytest.mark.parametrize("view", list(_views()))
@pytest.mark.parametrize("dtype", [C64, C128])
def test_strided_and_lazy_views(view, dtype):
    vc, zc, wc = _base(dtype)
    v, z, w = _views()[view](vc, zc, wc)
    out = cauchy(v, z, w)
    # The same values, materialised: identical bits, and correct against the reference.
    plain = [t.resolve_conj().resolve_neg().contiguous() for t in (v, z, w)]
    assert torch.equal(out, cauchy(*plain)), f"{view}: differs from the same values made contiguous"
    truth = reference.cauchy(*[t.to(C128) for t in plain])
    assert_close_2x(view, out, truth, reference.cauchy(*plain) if dtype == C64 else None)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_numpy_inputs(dtype):
    v, z, w = (t.numpy().astype(dtype) for t in _base(C128))
    expected = cauchy(*(torch.from_numpy(np.ascontiguousarray(a)) for a in (v, z, w))).numpy()
    out = cauchy(v, z, w)
    assert isinstance(out, np.ndarray) and out.dtype == dtype and out.shape == (2, 40)
    np.testing.assert_array_equal(out, expected)

    # Negative strides: reversed arrays give the reversed-input result.
    zr, vr, wr = z[::-1], v[:, ::-1], w[:, ::-1]
    want = cauchy(*(torch.from_numpy(np.ascontiguousarray(a)) for a in (vr, zr, wr))).numpy()
    np.testing.assert_array_equal(cauchy(vr, zr, wr), want)
    # Each l is computed on its own, so reversing z only reverses the output.
    np.testing.assert_array_equal(cauchy(v, zr, w), expected[..., ::-1])
    # Read-only broadcast views (stride 0), transposed and stepped arrays.
    vb = np.broadcast_to(v[:1], (3, 2, 8))
    assert not vb.flags.writeable
    out_b = cauchy(vb, z, w)
    assert out_b.shape == (3, 2, 40)
    np.testing.assert_array_equal(out_b, np.broadcast_to(cauchy(v[:1], z, w), (3, 2, 40)))
    wt = np.ascontiguousarray(w.T).T
    zs = np.repeat(z, 2)[::2]
    np.testing.assert_array_equal(cauchy(v, zs, wt), expected)
    # NumPy returns the broadcast shape.
    assert cauchy(v[0], z[None, None].repeat(3, 0), w[1]).shape == (3, 1, 40)


def test_numpy_reversed_against_reference():
    # The reversed-l result against the reference directly (not only self-consistency).
    v, z, w = _base(C128)
    zr = z.numpy()[::-1]
    out = cauchy(v.numpy(), zr, w.numpy())
    truth = reference.cauchy(v, torch.from_numpy(zr.copy()), w)
    assert_close_2x("numpy reversed", torch.from_numpy(out), truth)


# ---------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------


class FakeCudaArray:
    """A CUDA array as DLPack describes one; reading its data must never be attempted."""

    shape = (5,)
    dtype = np.complex64

    def __dlpack_device__(self):
        return (2, 0)  # kDLCUDA, device 0

    def __dlpack__(self, *args, **kwargs):
        raise AssertionError("__dlpack__ of a CUDA array was called before the device check")


def _c(shape, dtype=C64):
    return rand_v(shape, dtype)


BAD = {
    "real v": (lambda: (_c(4).real, _c(5), _c(4)), TypeError, "v: expected a complex64 or complex128"),
    "real w (numpy)": (lambda: (_c(4).numpy(), _c(5).numpy(), _c(4).real.numpy()), TypeError, "w: expected complex64"),
    "int v": (lambda: (torch.ones(4, dtype=torch.int32), _c(5), _c(4)), TypeError, "v: expected a complex64"),
    "mixed dtypes z": (lambda: (_c(4), _c(5, C128), _c(4)), TypeError, "z: expected complex64 like v, got complex128"),
    "mixed dtypes w (numpy)": (
        lambda: (_c(4).numpy(), _c(5).numpy(), _c(4, C128).numpy()),
        TypeError,
        "w: expected complex64 like v",
    ),
    "N mismatch": (lambda: (_c((2, 4)), _c(5), _c((2, 3))), ValueError, "w: expected the last dimension to be N = 4"),
    "N mismatch (numpy)": (lambda: (_c(4).numpy(), _c(5).numpy(), _c(6).numpy()), ValueError, "w: expected the last"),
    "leading dims": (lambda: (_c((3, 4)), _c((2, 5)), _c((3, 4))), ValueError, "must broadcast together"),
    "leading dims (numpy)": (lambda: (_c((3, 4)).numpy(), _c(5).numpy(), _c((2, 4)).numpy()), ValueError, "must broadcast"),
    "0-d v": (lambda: (_c(()), _c(5), _c(4)), ValueError, "v: expected an array of shape (..., N)"),
    "0-d z (numpy)": (lambda: (_c(4).numpy(), _c(()).numpy(), _c(4).numpy()), ValueError, "z: expected an array of shape (..., L)"),
    "mixed torch/numpy": (lambda: (_c(4), _c(5).numpy(), _c(4)), TypeError, "z (ndarray)"),
    "too many dims": (lambda: (_c((1,) * 9 + (4,)), _c(5), _c(4)), ValueError, "leading dimensions are supported"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(case):
    make, exc, fragment = BAD[case]
    v, z, w = make()
    with pytest.raises(exc) as info:
        cauchy(v, z, w)
    assert fragment in str(info.value)


def test_mixed_devices():
    # The only second device here is 'meta'. A CPU/meta mix must be refused (torch's own
    # ops raise), never answered with an uninitialised CPU tensor.
    v, z, w = _c((3, 4)), _c(5).to("meta"), _c((3, 4))
    with pytest.raises((ValueError, RuntimeError, TypeError)) as info:
        cauchy(v, z, w)
    assert "z" in str(info.value) or "device" in str(info.value)


CUDA_FIX = "SSMKIT_CUDA=ON"
# A CUDA build reads CUDA arrays (FakeCudaArray has no data to read); its device
# checks are tested with real tensors in test_cuda.py.
cpu_only_build = pytest.mark.skipif(CUDA_COMPILED, reason="a CUDA build reads CUDA arrays; see test_cuda.py")


def _cuda_message_fragment():
    return CUDA_FIX


@cpu_only_build
@pytest.mark.parametrize("arg", ["v", "z", "w"])
def test_cuda_array_on_cpu_kernels_via_C(arg):
    args = {"v": _c((3, 4)).numpy(), "z": _c(5).numpy(), "w": _c((3, 4)).numpy()}
    args[arg] = FakeCudaArray()
    with pytest.raises(ValueError) as info:
        ssmkit._C.cauchy(args["v"], args["z"], args["w"], np.empty((3, 5), np.complex64), True)
    msg = str(info.value)
    assert f"{arg} is on cuda:0" in msg
    assert _cuda_message_fragment() in msg


@cpu_only_build
def test_cuda_array_via_ops():
    with pytest.raises(ValueError) as info:
        cauchy(_c((3, 4)).numpy(), FakeCudaArray(), _c((3, 4)).numpy())
    assert "z is on cuda:0" in str(info.value) and _cuda_message_fragment() in str(info.value)


def test_backward_bad_input_via_C():
    v, z, w, g = _c(4).numpy(), _c(5).numpy(), _c(4).numpy(), _c(6).numpy()
    dv = np.empty(4, np.complex64)
    with pytest.raises(ValueError, match="grad: expected the last dimension to be L = 5"):
        ssmkit._C.cauchy_backward(g, v, z, w, dv, None, None, True)
    with pytest.raises(ValueError, match="dv: expected an output of shape"):
        ssmkit._C.cauchy_backward(g[:5], v, z, w, np.empty(3, np.complex64), None, None, True)
    read_only = np.empty(5, np.complex64)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out: expected a writable output"):
        ssmkit._C.cauchy(v, z, w, read_only, True)


# ---------------------------------------------------------------------------------
# NaN and Inf
# ---------------------------------------------------------------------------------

INF = float("inf")
SPECIAL = {"nan": complex(float("nan"), 0), "inf": complex(INF, 0), "-inf": complex(-INF, 0), "inf j": complex(0, INF)}


@pytest.mark.parametrize("dtype", [C64, C128])
@pytest.mark.parametrize("value", list(SPECIAL))
@pytest.mark.parametrize("arg", ["v", "z", "w"])
def test_nonfinite_inputs(arg, value, dtype):
    v, z, w = make_inputs(6, 50, "H,z shared", "circle", dtype)  # v, w (2, 6); z (50,)
    touched = torch.zeros(2, 50, dtype=torch.bool)
    if arg == "z":
        z[7] = SPECIAL[value]
        touched[:, 7] = True
    else:
        (v if arg == "v" else w)[0, 3] = SPECIAL[value]
        touched[0, :] = True
    out = cauchy(v, z, w)
    truth = reference.cauchy(v.to(C128), z.to(C128), w.to(C128))
    # NaN/Inf in, NaN/Inf out, in every output the bad value reaches.
    assert not torch.isfinite(out[touched]).any(), f"finite output from a {value} input: {out[touched]}"
    # Wherever the reference is not finite, neither is the kernel.
    assert not torch.isfinite(out[~torch.isfinite(truth)]).any()
    # Outputs the bad value does not reach are unaffected.
    low = reference.cauchy(v, z, w) if dtype == C64 else None
    assert_close_2x(f"{arg}={value} untouched", out[~touched], truth[~touched], None if low is None else low[~touched])


# ---------------------------------------------------------------------------------
# Instruction sets
# ---------------------------------------------------------------------------------


def _cpu_can_run(isa):
    if isa == "baseline":
        return True
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    need = {"avx2": ["avx2", "fma"], "avx512": ["avx512f", "avx512dq", "avx512vl"]}[isa]
    return all(x in flags for x in need)


ISA_CHECK = """
import sys, torch, ssmkit
sys.path.insert(0, {tests!r})
from accuracy import assert_close_2x
from test_cauchy import check_forward, make_inputs, kernel_grads, ref_grads, rand_v
assert ssmkit._C.build_info()["cpu_isa"] == {isa!r}, ssmkit._C.build_info()
torch.manual_seed(0)
for N, L, layout, kind, conj in [(17, 97, "B1,BH,1H", "bilinear", True), (33, 1025, "0d", "circle", False),
                                 (3, 4097, "H,z shared", "bilinear", True),
                                 (19, 600, "z,w shared by rows", "bilinear", True)]:
    v, z, w = make_inputs(N, L, layout, kind)
    check_forward(f"{isa} N={{N}} L={{L}}", v, z, w, conj)
    g = rand_v(torch.broadcast_shapes(v.shape[:-1], z.shape[:-1], w.shape[:-1]) + (L,))
    for d, t, lo in zip(kernel_grads(v, z, w, g, conj), ref_grads(v, z, w, g, conj, torch.complex128),
                        ref_grads(v, z, w, g, conj, torch.complex64)):
        assert_close_2x(f"{isa} backward N={{N}} L={{L}}", d, t, lo)
print("ok")
"""


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
def test_isa_in_subprocess(isa):
    if isa not in ssmkit._C.build_info()["cpu_isas_compiled"].split(","):
        pytest.skip(f"{isa} kernels not compiled in this build")
    if not _cpu_can_run(isa):
        pytest.skip(f"this CPU cannot run {isa}")
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, SSMKIT_CPU_ISA=isa)
    r = subprocess.run([sys.executable, "-c", ISA_CHECK.format(tests=tests, isa=isa)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


# ---------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------


@pytest.fixture
def restore_threads():
    n = ssmkit.get_num_threads()
    yield
    ssmkit.set_num_threads(n)


def _fwd_bwd(v, z, w, g):
    out = cauchy(v, z, w)
    return (out,) + tuple(kernel_grads(v, z, w, g, True))


@pytest.mark.parametrize("dtype", [C64, C128])
def test_repeatable_bitwise(dtype):
    v, z, w = make_inputs(37, 9000, "H,z shared", "bilinear", dtype)  # several tasks per row
    g = rand_v((2, 9000), dtype)
    first = _fwd_bwd(v, z, w, g)
    for _ in range(3):
        for a, b in zip(first, _fwd_bwd(v, z, w, g)):
            assert torch.equal(a, b)


def test_thread_count_independent(restore_threads):
    v, z, w = make_inputs(37, 9000, "H,z shared", "bilinear")
    g = rand_v((2, 9000))
    ssmkit.set_num_threads(1)
    assert ssmkit.get_num_threads() == 1
    one = _fwd_bwd(v, z, w, g)
    truth = (ref_chunked(v, z, w, True, C128),) + tuple(ref_grads(v, z, w, g, True, C128))
    low = (ref_chunked(v, z, w, True, C64),) + tuple(ref_grads(v, z, w, g, True, C64))
    for n in (2, 3):
        ssmkit.set_num_threads(n)
        many = _fwd_bwd(v, z, w, g)
        for name, a, b, t, lo in zip(["out", "dv", "dz", "dw"], one, many, truth, low):
            assert_close_2x(f"{name} 1 thread", a, t, lo)
            assert_close_2x(f"{name} {n} threads", b, t, lo)
            assert torch.equal(a, b), f"{name}: 1 and {n} threads differ bitwise"
