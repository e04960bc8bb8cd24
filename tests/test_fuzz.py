"""Property-based tests (hypothesis) of every op in ssmkit.ops, forward and backward,
through the torch and the NumPy entry points.

Each example draws sizes (0, 1 and odd ones included), broadcast leading dimensions,
a layout for every input (contiguous, strided, transposed, a lazy conjugate or
negative view, a NumPy array), the dtype, and possibly one NaN or Inf. The call
must then either match the complex128 reference by docs/architecture.md's 2x rule
(tests/accuracy.py) or, for input that is not valid, raise a TypeError or ValueError
whose message names the argument. Nothing may crash.

With a NaN or Inf in the input, the outputs it reaches are found by running the
reference with a NaN in its place (NaN reaches everything the value does); there the
output must be NaN or Inf wherever the truth is, and correct wherever it is finite.
Outputs it does not reach follow the 2x rule as usual.

Budget: the hypothesis profile (tests/conftest.py) sets the examples per test;
`pytest --hypothesis-profile=ci` is what .ci/run uses.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from accuracy import FLOOR, assert_nonfinite_match, rel_error
from hypothesis import assume, given, note
from hypothesis import strategies as st

from ssmkit import ops
from ssmkit.ops import reference as ref

C64, C128 = torch.complex64, torch.complex128
REAL = {C64: torch.float32, C128: torch.float64}
SIZES = [0, 1, 2, 3, 5, 8, 17]  # 0 and 1, odd sizes, a power of two
LENGTHS = [0, 1, 2, 7, 33, 100]
SPECIALS = [complex(math.nan, 0), complex(math.inf, 0), complex(-math.inf, 0), complex(0, math.inf), complex(math.nan, math.nan)]


# ---------------------------------------------------------------------------------
# Inputs: values in double precision from a seed, rounded to the dtype under test,
# then presented in a drawn layout. The reference always sees the same values.
# ---------------------------------------------------------------------------------


def up(t):
    return None if t is None else t.to(C128 if t.is_complex() else torch.float64)


def low_dtype(t, dtype):
    """t rounded to the precision under test (complex stays complex, real stays real)."""
    return t.to(dtype if t.is_complex() else REAL[dtype])


LAYOUTS = ["contiguous", "strided", "transposed", "conj", "neg", "numpy", "numpy strided"]


def present(t, layout):
    """The same values as t in another memory layout (or a NumPy array)."""
    if layout == "strided" and t.dim() >= 1:
        big = t.new_zeros(t.shape[:-1] + (2 * t.shape[-1] + 1,))
        big[..., 1::2] = t
        return big[..., 1::2]
    if layout == "transposed" and t.dim() >= 2:
        return t.mT.contiguous().mT
    if layout == "conj" and t.is_complex():
        return torch.conj_physical(t).conj()  # lazy conjugate bit over conjugated data
    if layout == "neg":
        return torch._neg_view(-t)  # lazy negative bit over negated data
    if layout == "numpy":
        return t.numpy()
    if layout == "numpy strided" and t.dim() >= 1:
        return present(t, "strided").numpy()
    return t


def is_numpy(layouts):
    return [lay.startswith("numpy") for lay in layouts]


@st.composite
def layouts_for(draw, names):
    """One layout per input; the torch and NumPy entry points are never mixed."""
    api = draw(st.sampled_from(["torch", "numpy"]))
    pool = [lay for lay in LAYOUTS if lay.startswith("numpy") == (api == "numpy")]
    return {n: draw(st.sampled_from(pool)) for n in names}


@st.composite
def special(draw, names):
    """None, or (input name, flat index fraction, value): one NaN or Inf somewhere."""
    if not draw(st.booleans()):
        return None
    return draw(st.sampled_from(names)), draw(st.floats(0, 1, exclude_max=True)), draw(st.sampled_from(SPECIALS))


def inject(inputs, spec, value=None):
    """A copy of inputs with the special value (or `value`) at the drawn place; None if that input is empty."""
    name, frac, v = spec
    t = inputs[name]
    if t is None or t.numel() == 0:
        return None
    v = v if value is None else value
    t = t.clone()
    flat = t.view(-1)
    flat[int(frac * flat.numel())] = v if t.is_complex() else _real_special(v)
    return dict(inputs, **{name: t})


def _real_special(v):
    """The special value for a real input: NaN if any part is NaN, else the infinite part."""
    if math.isnan(v.real) or math.isnan(v.imag):
        return math.nan
    return v.real if v.real != 0 else v.imag


@st.composite
def batch_shapes(draw, names, max_dims=2):
    """Leading dimensions for each operand that broadcast together (some set to 1 or dropped)."""
    full = draw(st.lists(st.sampled_from([1, 2, 3]), max_size=max_dims))
    shapes = {}
    for n in names:
        keep = draw(st.integers(0, len(full)))
        shapes[n] = tuple(s if draw(st.booleans()) else 1 for s in full[len(full) - keep :])
    return shapes


# ---------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------


def check_outputs(name, outs, truths, lows, reach=None):
    """Each output against the truth by the 2x rule; `reach`: where a NaN/Inf input reaches."""
    for i, (o, t) in enumerate(zip(outs, truths)):
        if t is None:
            continue
        o = torch.as_tensor(o)
        lo = None if lows is None else lows[i]
        assert o.shape == t.shape, f"{name}[{i}]: shape {tuple(o.shape)} != {tuple(t.shape)}"
        assert o.dtype == (lo.dtype if lo is not None else t.dtype), f"{name}[{i}]: dtype {o.dtype}"
        touched = torch.zeros(t.shape, dtype=torch.bool) if reach is None else reach[i]
        if touched.any():
            bad = ~torch.isfinite(t) & touched & torch.isfinite(o)
            assert not bad.any(), f"{name}[{i}]: finite output where the truth is NaN/Inf: {o[bad][:4]}"
            # where both are finite the value must still be right
            touched = touched & ~(torch.isfinite(t) & torch.isfinite(o))
        keep = ~touched
        o_k, t_k = o[keep], t[keep]
        assert_nonfinite_match(f"{name}[{i}]", o_k.to(t.dtype), t_k)
        err, mean = rel_error(o_k, t_k)
        ref_err = 0.0 if lo is None else rel_error(lo[keep], t_k)[0]
        bound = 2 * ref_err + FLOOR[o.dtype]
        note(f"{name}[{i}]: error {err:.3g}, reference {ref_err:.3g}")
        assert err <= bound, f"{name}[{i}]: max error {err:.3g} (mean {mean:.3g}) > 2 x {ref_err:.3g} + floor"


def reached(ref_fn, inputs, spec):
    """Where the drawn NaN/Inf reaches: NaN outputs of the reference with a NaN in its place."""
    if spec is None:
        return None
    nan_in = inject(inputs, spec, complex(math.nan, math.nan))
    if nan_in is None:
        return None
    return [None if o is None else _nan_mask(o) for o in ref_fn(**{k: up(v) for k, v in nan_in.items()})]


def _nan_mask(t):
    return torch.isnan(t) if not t.is_complex() else torch.isnan(t.real) | torch.isnan(t.imag)


def run(name, kernel_fn, ref_fn, inputs, dtype, spec, layouts, grads=None):
    """Call the kernel on the drawn layouts and check it (and its gradients) against the reference.

    inputs: name -> double-precision tensor (or None); kernel_fn, ref_fn take them by
    name and return a tuple of outputs. grads: upstream gradients (one per output) to
    also compare the backward, on torch inputs without NaN/Inf."""
    if spec is not None:
        injected = inject(inputs, spec)
        if injected is not None:
            inputs = injected
        else:
            spec = None
    lo_in = {k: None if v is None else low_dtype(v, dtype) for k, v in inputs.items()}
    presented = {k: None if v is None else present(v, layouts.get(k, "contiguous")) for k, v in lo_in.items()}
    note(f"{name}: dtype {dtype}, layouts {layouts}, special {spec}, shapes "
         f"{ {k: None if v is None else tuple(v.shape) for k, v in lo_in.items()} }")  # fmt: skip
    outs = kernel_fn(**presented)
    truth = ref_fn(**{k: up(v) for k, v in lo_in.items()})
    low = ref_fn(**lo_in) if dtype == C64 else None
    check_outputs(name, outs, truth, low, reached(ref_fn, lo_in, spec))
    if grads is None or spec is not None or any(is_numpy(layouts.values())):
        return
    diff = [k for k, v in lo_in.items() if v is not None and v.numel() > 0]
    if not diff:
        return
    g = [None if t is None else low_dtype(t, dtype) for t in grads]

    def grad_of(fn, ins, g, layouts=None):
        # leaves in ins' precision; the function sees them through the drawn layouts
        leaves = {k: ins[k].detach().clone().requires_grad_() for k in diff}
        args = {k: leaves.get(k, v) for k, v in ins.items()}
        if layouts:
            args = {k: None if v is None else present(v, layouts.get(k, "contiguous")) for k, v in args.items()}
        pairs = [(o, gi) for o, gi in zip(fn(**args), g) if gi is not None and o.requires_grad]
        if not pairs:  # e.g. empty outputs that the reference never connects to its inputs
            return [None] * len(leaves)
        outs, gs = zip(*pairs)
        return torch.autograd.grad(outs, list(leaves.values()), gs, allow_unused=True)

    gk = grad_of(kernel_fn, lo_in, g, layouts)
    gt = grad_of(ref_fn, {k: up(v) for k, v in lo_in.items()}, [up(t) for t in g])
    gl = grad_of(ref_fn, lo_in, g) if dtype == C64 else None
    like = gt if gl is None else gl
    gk = [torch.zeros_like(c) if k is None and c is not None else k for k, c in zip(gk, like)]
    check_outputs(name + " grad " + ",".join(diff), gk, gt, gl)


def expect_clear_error(call, names):
    """call() must raise TypeError or ValueError naming one of the arguments."""
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    msg = str(info.value)
    assert any(n in msg for n in names), f"error does not name an argument ({names}): {msg}"


DTYPES = st.sampled_from([C64, C128])
SEEDS = st.integers(0, 2**32 - 1)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def crandn(g, shape, scale=1.0):
    return torch.complex(torch.randn(shape, generator=g, dtype=torch.float64),
                         torch.randn(shape, generator=g, dtype=torch.float64)) * scale  # fmt: skip


def poles(g, shape):
    """S4-like poles / exponents: Re in [-2, -1e-3] log-uniform, Im spread over [-10, 10]."""
    re = -torch.exp(torch.empty(shape, dtype=torch.float64).uniform_(math.log(1e-3), math.log(2), generator=g))
    im = torch.empty(shape, dtype=torch.float64).uniform_(-10, 10, generator=g)
    return torch.complex(re, im)


# ---------------------------------------------------------------------------------
# cauchy
# ---------------------------------------------------------------------------------


@given(N=st.sampled_from(SIZES), L=st.sampled_from(LENGTHS), batch=batch_shapes(["v", "z", "w"]),
       conj_pairs=st.booleans(), dtype=DTYPES, seed=SEEDS, layouts=layouts_for(["v", "z", "w"]),
       spec=special(["v", "z", "w"]))  # fmt: skip
def test_cauchy(N, L, batch, conj_pairs, dtype, seed, layouts, spec):
    g = gen(seed)
    inputs = {"v": crandn(g, batch["v"] + (N,)),
              "z": torch.exp(1j * torch.rand(batch["z"] + (L,), generator=g, dtype=torch.float64) * 2 * math.pi),
              "w": poles(g, batch["w"] + (N,))}  # fmt: skip
    out_shape = torch.broadcast_shapes(batch["v"], batch["z"], batch["w"]) + (L,)
    run("cauchy", lambda v, z, w: (ops.cauchy(v, z, w, conj_pairs=conj_pairs),),
        lambda v, z, w: (ref.cauchy(v, z, w, conj_pairs),), inputs, dtype, spec, layouts,
        grads=[crandn(g, out_shape)])  # fmt: skip


# ---------------------------------------------------------------------------------
# vandermonde and its transpose
# ---------------------------------------------------------------------------------


def ref_vandermonde(v, x, L, conj_pairs):
    return ref.vandermonde(v, x, L, conj_pairs, exact_exponent=x.dtype == C128)


@given(N=st.sampled_from(SIZES), L=st.sampled_from(LENGTHS), batch=batch_shapes(["v", "x"]),
       conj_pairs=st.booleans(), dtype=DTYPES, seed=SEEDS, layouts=layouts_for(["v", "x"]),
       spec=special(["v", "x"]))  # fmt: skip
def test_vandermonde(N, L, batch, conj_pairs, dtype, seed, layouts, spec):
    g = gen(seed)
    inputs = {"v": crandn(g, batch["v"] + (N,)), "x": poles(g, batch["x"] + (N,))}
    out_shape = torch.broadcast_shapes(batch["v"], batch["x"]) + (L,)
    grad = torch.randn(out_shape, generator=g, dtype=torch.float64) if conj_pairs else crandn(g, out_shape)
    run("vandermonde", lambda v, x: (ops.vandermonde(v, x, L, conj_pairs=conj_pairs),),
        lambda v, x: (ref_vandermonde(v, x, L, conj_pairs),), inputs, dtype, spec, layouts, grads=[grad])  # fmt: skip


@given(N=st.sampled_from(SIZES), L=st.sampled_from(LENGTHS), batch=batch_shapes(["u", "v", "x"]),
       real_u=st.booleans(), dtype=DTYPES, seed=SEEDS, layouts=layouts_for(["u", "v", "x"]),
       spec=special(["u", "v", "x"]))  # fmt: skip
def test_vandermonde_transpose(N, L, batch, real_u, dtype, seed, layouts, spec):
    g = gen(seed)
    u = torch.randn(batch["u"] + (L,), generator=g, dtype=torch.float64) if real_u else crandn(g, batch["u"] + (L,))
    inputs = {"u": u, "v": crandn(g, batch["v"] + (N,)), "x": poles(g, batch["x"] + (N,))}
    out_shape = torch.broadcast_shapes(batch["u"], batch["v"], batch["x"]) + (N,)
    run("vandermonde_transpose", lambda u, v, x: (ops.vandermonde_transpose(u, v, x),),
        lambda u, v, x: (ref.vandermonde_transpose(u, v, x, exact_exponent=x.dtype == C128),),
        inputs, dtype, spec, layouts, grads=[crandn(g, out_shape)])  # fmt: skip


# ---------------------------------------------------------------------------------
# discretize, ssm_step, ssm_scan, dplr_step (exact shapes, no broadcasting)
# ---------------------------------------------------------------------------------


def ssm_params(g, H, N):
    """A stable diagonal system: dA inside the unit disc, S4D-like magnitudes."""
    dA = torch.exp(poles(g, (H, N)) * 0.1)
    return {"dA": dA, "dB": crandn(g, (H, N)), "dC": crandn(g, (H, N), N**-0.5 if N else 1.0),
            "D": torch.randn(H, generator=g, dtype=torch.float64)}  # fmt: skip


@given(H=st.sampled_from(SIZES), N=st.sampled_from(SIZES), method=st.sampled_from(["zoh", "bilinear"]),
       dtype=DTYPES, seed=SEEDS, layouts=layouts_for(["dt", "A", "B"]), spec=special(["dt", "A", "B"]))  # fmt: skip
def test_discretize(H, N, method, dtype, seed, layouts, spec):
    g = gen(seed)
    dt = torch.exp(torch.empty(H, dtype=torch.float64).uniform_(math.log(1e-3), math.log(0.5), generator=g))
    inputs = {"dt": dt, "A": poles(g, (H, N)) * 10, "B": crandn(g, (H, N))}
    if spec is not None and spec[0] == "dt":  # a non-finite step is invalid input
        bad = inject(inputs, spec)
        if bad is not None:
            with pytest.raises(ValueError, match=r"^dt: expected positive, finite step sizes"):
                ops.discretize(*(low_dtype(bad[k], dtype) for k in ("dt", "A", "B")), method=method)
            return
    run("discretize", lambda dt, A, B: ops.discretize(dt, A, B, method=method),
        lambda dt, A, B: ref.discretize(dt, A, B, method), inputs, dtype, spec, layouts,
        grads=[crandn(g, (H, N)), crandn(g, (H, N))])  # fmt: skip


@given(batch=st.sampled_from([0, 1, 2, 3]), H=st.sampled_from(SIZES), N=st.sampled_from(SIZES),
       with_D=st.booleans(), in_place=st.booleans(), dtype=DTYPES, seed=SEEDS,
       layouts=layouts_for(["state", "u", "dA", "dB", "dC", "D"]), spec=special(["state", "u", "dA", "dB", "dC", "D"]))  # fmt: skip
def test_ssm_step(batch, H, N, with_D, in_place, dtype, seed, layouts, spec):
    g = gen(seed)
    inputs = dict(ssm_params(g, H, N), state=crandn(g, (batch, H, N)), u=torch.randn(batch, H, generator=g, dtype=torch.float64))
    if not with_D:
        inputs["D"] = None
        spec = None if spec is not None and spec[0] == "D" else spec

    def kernel(state, u, dA, dB, dC, D):
        if not in_place:
            return ops.ssm_step(state, u, dA, dB, dC, D)
        x = state.copy() if isinstance(state, np.ndarray) else state.resolve_conj().resolve_neg().clone()
        if isinstance(x, torch.Tensor) and not x.is_contiguous():  # in place needs a contiguous state
            expect_clear_error(lambda: ops.ssm_step(x, u, dA, dB, dC, D, out=x), ["state"])
            x = x.contiguous()
        y, new = ops.ssm_step(x, u, dA, dB, dC, D, out=x)
        assert new is x
        return y, x

    run("ssm_step", kernel, lambda state, u, dA, dB, dC, D: ref.ssm_step(state, u, dA, dB, dC, D),
        inputs, dtype, spec, layouts)  # fmt: skip


@given(batch=st.sampled_from([0, 1, 2]), L=st.sampled_from([0, 1, 2, 7, 70]), H=st.sampled_from([0, 1, 2, 3, 5]),
       N=st.sampled_from([0, 1, 2, 3, 5]), with_D=st.booleans(), with_state=st.booleans(), dtype=DTYPES, seed=SEEDS,
       layouts=layouts_for(["u", "dA", "dB", "dC", "D", "state"]), spec=special(["u", "dA", "dB", "dC", "D", "state"]))  # fmt: skip
def test_ssm_scan(batch, L, H, N, with_D, with_state, dtype, seed, layouts, spec):
    g = gen(seed)
    inputs = dict(ssm_params(g, H, N), u=torch.randn(batch, L, H, generator=g, dtype=torch.float64),
                  state=crandn(g, (batch, H, N)))  # fmt: skip
    for name, keep in (("D", with_D), ("state", with_state)):
        if not keep:
            inputs[name] = None
            spec = None if spec is not None and spec[0] == name else spec
    run("ssm_scan", lambda u, dA, dB, dC, D, state: ops.ssm_scan(u, dA, dB, dC, D, state),
        lambda u, dA, dB, dC, D, state: ref.ssm_scan(u, dA, dB, dC, D, state), inputs, dtype, spec, layouts,
        grads=[torch.randn(batch, L, H, generator=g, dtype=torch.float64), crandn(g, (batch, H, N))])  # fmt: skip


@given(batch=st.sampled_from([0, 1, 2, 3, 5]), L=st.sampled_from(LENGTHS), H=st.sampled_from([0, 1, 2, 3, 5, 17]),
       c=st.sampled_from([1, 2]), dtype=DTYPES, seed=SEEDS, layouts=layouts_for(["u", "k"]), spec=special(["u", "k"]))  # fmt: skip
def test_fft_conv(batch, L, H, c, dtype, seed, layouts, spec):
    g = gen(seed)
    inputs = {"u": torch.randn(batch, L, H, generator=g, dtype=torch.float64),
              "k": torch.randn(c, H, L, generator=g, dtype=torch.float64)}  # fmt: skip

    def paired_reference(u, k):
        # batch elements 2i and 2i+1 share the kernel's transforms, so a NaN or Inf of one
        # reaches the other: + 0 * (the other's output) adds exactly 0 where that is finite
        y = ref.fft_conv(u, k)
        other = torch.clamp(torch.arange(y.shape[0]) ^ 1, max=max(y.shape[0] - 1, 0))
        return (y + 0 * y[other],)

    run("fft_conv", lambda u, k: (ops.fft_conv(u, k),), paired_reference, inputs, dtype, spec, layouts,
        grads=[torch.randn(batch, L, H, generator=g, dtype=torch.float64)])  # fmt: skip


@given(batch=st.sampled_from([0, 1, 2, 3]), H=st.sampled_from([0, 1, 2, 3, 5]), N=st.sampled_from([0, 1, 2, 3, 5, 8]),
       r=st.sampled_from([0, 1, 2, 3]), with_D=st.booleans(), dtype=DTYPES, seed=SEEDS,
       layouts=layouts_for(["state", "u", "C"]), spec=special(["state", "u", "C"]))  # fmt: skip
def test_dplr_step(batch, H, N, r, with_D, dtype, seed, layouts, spec):
    g = gen(seed)
    if r == 0:  # diagonal: the dense reference's 0 * NaN spreads a NaN further than it really reaches
        spec = None
    system = {"dt": torch.exp(torch.empty(H, dtype=torch.float64).uniform_(-7, -3, generator=g)),
              "Lambda": poles(g, (H, N)) * 3, "P": crandn(g, (H, r, N), max(N, 1) ** -0.5),
              "B": crandn(g, (H, N))}  # fmt: skip
    D = torch.randn(H, generator=g, dtype=torch.float64) if with_D else None
    # the factors from the system in the precision under test (dplr_setup is plain torch)
    lo_sys = {k: low_dtype(v, dtype) for k, v in system.items()}
    factors = ops.dplr_setup(**lo_sys)
    if "numpy" in "".join(layouts.values()):
        factors = ops.DPLRFactors(*(f.numpy() for f in factors))
    inputs = {"state": crandn(g, (batch, H, N)), "u": torch.randn(batch, H, generator=g, dtype=torch.float64),
              "C": crandn(g, (H, N), max(N, 1) ** -0.5)}  # fmt: skip
    d_lo = None if D is None else low_dtype(D, dtype)

    def kernel(state, u, C):
        return ops.dplr_step(state, u, factors, C, d_lo if not isinstance(u, np.ndarray) or d_lo is None else d_lo.numpy())

    def reference(state, u, C):
        cast = (lambda t: t.to(C.dtype) if t.is_complex() else t.to(u.dtype))
        return ref.dplr_step(state, u, *(cast(lo_sys[k]) for k in ("dt", "Lambda", "P", "B")), C,
                             None if d_lo is None else d_lo.to(u.dtype))  # fmt: skip

    run("dplr_step", kernel, reference, inputs, dtype, spec, layouts)


# ---------------------------------------------------------------------------------
# Invalid input: a clear TypeError or ValueError naming the argument, never a crash
# ---------------------------------------------------------------------------------

BAD_DTYPES = [torch.float32, torch.float64, torch.int64, torch.float16, torch.bool]


def corrupt(draw, t, name):
    """t made invalid in one drawn way: another dtype, a wrong last dimension, no dimensions."""
    how = draw(st.sampled_from(["dtype", "other complex", "last dim", "0-d", "not an array"]))
    if how == "dtype":
        return t.real.to(draw(st.sampled_from(BAD_DTYPES))) if t.is_complex() else t.to(draw(st.sampled_from([C64, torch.int32, torch.float16])))
    if how == "other complex":
        return t.to(C128 if t.dtype in (C64, torch.float32) else C64)
    if how == "last dim":
        return torch.cat([t, t[..., :1]], -1) if t.dim() and t.shape[-1] else t.new_zeros(t.shape[:-1] + (2,))
    if how == "0-d":
        return t.reshape(-1)[:1].reshape(()) if t.numel() else t.new_zeros(())
    return object()


@given(data=st.data(), N=st.sampled_from([1, 3]), L=st.sampled_from([1, 4]), numpy_api=st.booleans())
def test_bad_input_is_a_clear_error(data, N, L, numpy_api):
    g = gen(data.draw(SEEDS))
    H, batch = 2, 1
    dA, dB, dC, D = (low_dtype(t, C64) for t in ssm_params(g, H, N).values())
    valid = {
        "cauchy": ({"v": crandn(g, (2, N)), "z": crandn(g, (L,)), "w": poles(g, (N,))}, lambda **a: ops.cauchy(**a)),
        "vandermonde": ({"v": crandn(g, (2, N)), "x": poles(g, (N,))}, lambda **a: ops.vandermonde(**a, L=L)),
        "vandermonde_transpose": ({"u": torch.randn(2, L, dtype=torch.float64), "v": crandn(g, (N,)), "x": poles(g, (N,))},
                                  lambda **a: ops.vandermonde_transpose(**a)),
        "discretize": ({"dt": torch.rand(H, dtype=torch.float64) + 0.1, "A": poles(g, (H, N)), "B": crandn(g, (H, N))},
                       lambda **a: ops.discretize(**a)),
        "ssm_step": ({"state": crandn(g, (batch, H, N)), "u": torch.randn(batch, H, dtype=torch.float64),
                      "dA": dA, "dB": dB, "dC": dC, "D": D}, lambda **a: ops.ssm_step(**a)),
        "ssm_scan": ({"u": torch.randn(batch, L, H, dtype=torch.float64), "dA": dA, "dB": dB, "dC": dC, "D": D,
                      "state": crandn(g, (batch, H, N))}, lambda **a: ops.ssm_scan(**a)),
        "dplr_untruncated_C": ({"dt": torch.rand(H, dtype=torch.float64) + 0.1, "Lambda": poles(g, (H, N)),
                                "P": crandn(g, (H, 1, N)), "C": crandn(g, (H, N))},
                               lambda **a: ops.dplr_untruncated_C(**a, L=L)),
    }  # fmt: skip
    op = data.draw(st.sampled_from(sorted(valid)))
    inputs, call = valid[op]
    inputs = {k: low_dtype(v, C64) for k, v in inputs.items()}
    victim = data.draw(st.sampled_from(sorted(inputs)))
    bad = corrupt(data.draw, inputs[victim], victim)
    if isinstance(bad, torch.Tensor) and op in ("cauchy", "vandermonde", "vandermonde_transpose"):
        # a wrong last dimension of z or u is a valid, longer input; 0-d / leading shapes may broadcast
        assume(not (victim in ("z", "u") and bad.dim() >= 1 and bad.dtype == inputs[victim].dtype))
        # a complex u of v's dtype is valid too
        assume(not (victim == "u" and bad.dim() >= 1 and bad.dtype == C64))
    note(f"{op}: {victim} -> {bad if not isinstance(bad, torch.Tensor) else (bad.dtype, tuple(bad.shape))}")
    args = dict(inputs, **{victim: bad})
    if numpy_api:
        args = {k: v.numpy() if isinstance(v, torch.Tensor) and v.dtype != torch.bfloat16 else v for k, v in args.items()}
    expect_clear_error(lambda: call(**args), sorted(inputs))
