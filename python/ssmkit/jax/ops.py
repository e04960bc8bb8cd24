"""The primitives of :mod:`ssmkit.ops` for JAX, each a ``jax.custom_vjp`` function whose
forward and backward kernels are XLA custom calls to the compiled core (``_ffi.py``).

Every call follows from the op's one description (``ssmkit/ops/_spec.py``): the results'
shapes and dtypes, the order of the arrays the handler takes, and, while JAX traces the
call, the core's own argument checks (``_C.ffi_check``, the messages of the torch and
NumPy paths), so a bad argument raises at the call. The kernels see the same arrays as
through torch, so results are the torch path's bit for bit. Under ``vmap`` one batched
call is one custom call (see csrc/ffi/handlers.cpp).

Gradients follow JAX's convention for complex inputs, which agrees with ``jax.grad`` of
:mod:`ssmkit.jax.reference`: the vjp of f at x is the conjugate of PyTorch's backward at x
applied to the conjugate cotangent. Each op has real coefficients, f(conj x) = conj f(x),
so that equals PyTorch's backward at conj(x) applied to the cotangent as it is: the
backward kernels run on the conjugate inputs (parameters, mostly small) instead of
conjugating the cotangents and gradients (as large as the output). The CPU kernels'
arithmetic is symmetric under negation, so the gradients are still the conjugates of the
torch path's bit for bit (tests/test_jax_ops.py).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .. import _C
from ..ops._spec import _REAL, Flag, Size
from ..ops.cauchy import CAUCHY, CAUCHY_BACKWARD
from ..ops.dplr import DPLR_STEP, DPLR_UNTRUNCATED_C
from ..ops.fft_conv import FFT_CONV, FFT_CONV_BACKWARD
from ..ops.step import DISCRETIZE, DISCRETIZE_BACKWARD, SSM_SCAN, SSM_SCAN_BACKWARD, SSM_STEP
from ..ops.vandermonde import (
    VANDERMONDE,
    VANDERMONDE_BACKWARD,
    VANDERMONDE_TRANSPOSE,
    VANDERMONDE_TRANSPOSE_BACKWARD,
)
from ._ffi import target

__all__ = [
    "cauchy", "vandermonde", "vandermonde_transpose", "discretize", "ssm_step", "ssm_scan", "dplr_step",
    "dplr_untruncated_C", "fft_conv",
]


def _run(op, args) -> list:
    """The op's kernel on args (its parameters in schema order; None for an absent
    optional tensor). Returns its results, None for those a backward does not need."""
    args = list(args)
    for i in op._tensors:
        if args[i] is not None:
            args[i] = jnp.asarray(args[i])
    for i in op._scalars:
        args[i] = op.params[i].normalize(args[i])
    options = {op.params[i].name: args[i] for i in op._scalars}
    needs = [True] * len(op.results) if op._needs is None else list(args[op._needs])
    cplx = np.dtype(args[op._ref].dtype)

    def spec(shape, dtype):
        return jax.ShapeDtypeStruct(tuple(shape), dtype)

    def allocate():  # the results' shapes and dtypes, from the description
        return op._allocate(args, spec, lambda a, dtype: spec(a.shape, dtype), cplx, _REAL.get(cplx, cplx))

    try:
        results = allocate()
    except ValueError:  # a shape the core's checks below name first
        results = None
    arrays = [None if args[i] is None else (tuple(args[i].shape), str(args[i].dtype)) for i in op._tensors]
    outs = [None] * len(op.results) if results is None else [
        (r.shape, str(r.dtype)) if need else None for r, need in zip(results, needs)]  # fmt: skip
    _C.ffi_check(
        op.name, arrays + outs, conj_pairs=options.get("conj_pairs", True), L=options.get("L", 0),
        method=options.get("method", ""),
    )  # fmt: skip
    if results is None:
        allocate()  # raises
    # Operands with broadcasting leading dimensions get the same rank, so that the
    # dimensions vmap puts in front line up.
    batched = [i for i in op._tensors if args[i] is not None and op.params[i].batched]
    if batched:
        lead = max(args[i].ndim - len(op.params[i].sizes) for i in batched)
        for i in batched:
            args[i] = args[i].reshape((1,) * (lead + len(op.params[i].sizes) - args[i].ndim) + args[i].shape)
    present = [args[i] is not None for i in op._tensors] + needs
    wanted = [r for r, need in zip(results, needs) if need]
    if not wanted:
        return [None] * len(results)
    attrs = {"present": np.int64(sum(1 << j for j, p in enumerate(present) if p))}
    for i in op._scalars:
        p = op.params[i]
        attrs[p.name] = np.int64(args[i]) if isinstance(p, Size) else bool(args[i]) if isinstance(p, Flag) else args[i]
    call = jax.ffi.ffi_call(target(op.name), wanted, vmap_method="expand_dims")
    got = iter(call(*(args[i] for i in op._tensors if args[i] is not None), **attrs))
    return [next(got) if need else None for need in needs]


def _conj(x):
    return x if x is None or not jnp.iscomplexobj(x) else jnp.conj(x)


def _sum_to(g, shape):
    """g summed over the dimensions that broadcasting added to an input of this shape."""
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(tuple(range(lead)))
    axes = tuple(d for d, (n, m) in enumerate(zip(g.shape, shape)) if m == 1 and n != 1)
    return g.sum(axes, keepdims=True) if axes else g


def _vjp(backward, inputs):
    """JAX's vjp from a backward kernel's gradients at the conjugate inputs (see the module
    doc): each summed back to its input's shape."""
    return tuple(None if x is None else _sum_to(g, jnp.shape(x)) for g, x in zip(backward, inputs))


# ---- Cauchy ---------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _cauchy(v, z, w, conj_pairs):
    return _run(CAUCHY, (v, z, w, conj_pairs))[0]


def _cauchy_fwd(v, z, w, conj_pairs):
    return _cauchy(v, z, w, conj_pairs), (v, z, w)


def _cauchy_bwd(conj_pairs, inputs, g):
    return _vjp(_run(CAUCHY_BACKWARD, (g, *map(_conj, inputs), conj_pairs, [True] * 3)), inputs)


_cauchy.defvjp(_cauchy_fwd, _cauchy_bwd)


def cauchy(v, z, w, *, conj_pairs: bool = True):
    """Cauchy product of v, w (..., N) with the points z (..., L); returns (..., L), as
    :func:`ssmkit.ops.cauchy`. Differentiable in v, z and w."""
    return _cauchy(jnp.asarray(v), jnp.asarray(z), jnp.asarray(w), bool(conj_pairs))


# ---- log-Vandermonde ------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _vandermonde(v, x, L, conj_pairs):
    return _run(VANDERMONDE, (v, x, L, conj_pairs))[0]


def _vandermonde_fwd(v, x, L, conj_pairs):
    return _vandermonde(v, x, L, conj_pairs), (v, x)


def _vandermonde_bwd(L, conj_pairs, inputs, g):
    return _vjp(_run(VANDERMONDE_BACKWARD, (g, *map(_conj, inputs), conj_pairs, [True] * 2)), inputs)


_vandermonde.defvjp(_vandermonde_fwd, _vandermonde_bwd)


def vandermonde(v, x, L, *, conj_pairs: bool = True):
    """Log-Vandermonde product of v, x (..., N) over l = 0..L-1, as
    :func:`ssmkit.ops.vandermonde`: real ``2 Re(...)`` with ``conj_pairs``, else complex.
    Differentiable in v and x; L is static under jit."""
    return _vandermonde(jnp.asarray(v), jnp.asarray(x), VANDERMONDE.params[2].normalize(L), bool(conj_pairs))


@jax.custom_vjp
def _vandermonde_transpose(u, v, x):
    return _run(VANDERMONDE_TRANSPOSE, (u, v, x))[0]


def _vandermonde_transpose_fwd(u, v, x):
    return _vandermonde_transpose(u, v, x), (u, v, x)


def _vandermonde_transpose_bwd(inputs, g):
    return _vjp(_run(VANDERMONDE_TRANSPOSE_BACKWARD, (g, *map(_conj, inputs), [True] * 3)), inputs)


_vandermonde_transpose.defvjp(_vandermonde_transpose_fwd, _vandermonde_transpose_bwd)


def vandermonde_transpose(u, v, x):
    """Transposed log-Vandermonde product, ``v[..., n] sum_l u[..., l] exp(x[..., n] l)``, as
    :func:`ssmkit.ops.vandermonde_transpose`. Differentiable in u, v and x."""
    return _vandermonde_transpose(jnp.asarray(u), jnp.asarray(v), jnp.asarray(x))


# ---- discretization and stepping ------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _discretize(dt, A, B, method):
    return tuple(_run(DISCRETIZE, (dt, A, B, method)))


def _discretize_fwd(dt, A, B, method):
    return _discretize(dt, A, B, method), (dt, A, B)


def _discretize_bwd(method, inputs, g):
    gdA, gdB = g
    return _vjp(_run(DISCRETIZE_BACKWARD, (*map(_conj, inputs), gdA, gdB, method)), inputs)


_discretize.defvjp(_discretize_fwd, _discretize_bwd)


def discretize(dt, A, B, *, method: str = "zoh"):
    """Discretize the diagonal system (A, B) with per-channel steps dt; returns (dA, dB), as
    :func:`ssmkit.ops.discretize`. Differentiable in dt, A and B. A dt that is not positive
    and finite raises when the kernel runs (it reads the values)."""
    return _discretize(jnp.asarray(dt), jnp.asarray(A), jnp.asarray(B), DISCRETIZE.params[3].normalize(method))


@jax.custom_vjp
def _ssm_scan(u, dA, dB, dC, D, state):
    return tuple(_run(SSM_SCAN, (u, dA, dB, dC, D, state)))


def _ssm_scan_fwd(u, dA, dB, dC, D, state):
    return _ssm_scan(u, dA, dB, dC, D, state), (u, dA, dB, dC, D, state)


def _ssm_scan_bwd(inputs, g):
    u, dA, dB, dC, D, state = inputs
    gy, gstate = g
    needs = [True] * 4 + [D is not None, state is not None]
    gu, gA, gB, gC, gD, gs = _run(SSM_SCAN_BACKWARD, (*map(_conj, inputs), gy, gstate, needs))
    # the channel parameters' gradients come per batch element
    per_channel = [g if g is None else g.sum(0) for g in (gA, gB, gC, gD)]
    return _vjp((gu, *per_channel, gs), inputs)


_ssm_scan.defvjp(_ssm_scan_fwd, _ssm_scan_bwd)


def ssm_scan(u, dA, dB, dC, D=None, state=None):
    """The diagonal SSM over a sequence: u (batch, L, H) -> (y (batch, L, H), final state), as
    :func:`ssmkit.ops.ssm_scan`. Differentiable in every array input."""
    opt = (lambda a: None if a is None else jnp.asarray(a))  # noqa: E731
    return _ssm_scan(jnp.asarray(u), jnp.asarray(dA), jnp.asarray(dB), jnp.asarray(dC), opt(D), opt(state))


# ---- the long convolution -------------------------------------------------------------


@jax.custom_vjp
def _fft_conv(u, k):
    return _run(FFT_CONV, (u, k))[0]


def _fft_conv_fwd(u, k):
    return _fft_conv(u, k), (u, k)


def _fft_conv_bwd(inputs, g):
    return tuple(_run(FFT_CONV_BACKWARD, (*inputs, g, [True, True])))


_fft_conv.defvjp(_fft_conv_fwd, _fft_conv_bwd)


def fft_conv(u, k):
    """Causal convolution of u (batch, L, H) with the per-channel kernels k (c, H, L), as
    :func:`ssmkit.ops.fft_conv` (c = 2 adds an anticausal kernel). Differentiable in u and k."""
    return _fft_conv(jnp.asarray(u), jnp.asarray(k))


def _inference_only(op, train, nondiff_argnums=()):
    """The op as a function whose gradient raises, naming what to train with."""

    @functools.partial(jax.custom_vjp, nondiff_argnums=nondiff_argnums)
    def f(*args):
        results = _run(op, args)
        return results[0] if len(results) == 1 else tuple(results)

    def fwd(*args):
        return f(*args), None

    def bwd(*args):
        raise RuntimeError(f"ssmkit.jax.{op.name} is inference only (no gradient); train with {train} "
                           f"and use {op.name} to generate")  # fmt: skip

    f.defvjp(fwd, bwd)
    return f


_ssm_step = _inference_only(SSM_STEP, "ssmkit.jax.ssm_scan")
_dplr_step = _inference_only(DPLR_STEP, "the convolution mode")
_dplr_untruncated_C = _inference_only(
    DPLR_UNTRUNCATED_C, "ssmkit.jax.reference.dplr_untruncated_C (the dense definition)", nondiff_argnums=(4,)
)


def ssm_step(state, u, dA, dB, dC, D=None):
    """One step of the diagonal SSM: returns (y (batch, H), new state), as
    :func:`ssmkit.ops.ssm_step` (JAX arrays are immutable: no ``out=``). Inference only."""
    return _ssm_step(*(None if a is None else jnp.asarray(a) for a in (state, u, dA, dB, dC, D)))


def dplr_step(state, u, factors, C, D=None):
    """One bilinear step of a DPLR system from the factors (dA, dB, Pd, Q) of
    :func:`ssmkit.ops.dplr_setup`: returns (y, new state), as :func:`ssmkit.ops.dplr_step`.
    Inference only."""
    return _dplr_step(*(None if t is None else jnp.asarray(t) for t in (state, u, *factors, C, D)))


def dplr_untruncated_C(dt, Lambda, P, C, L):
    """The C that :func:`dplr_step` needs from the C~ of kernel length L, as
    :func:`ssmkit.ops.dplr_untruncated_C`: complex (H, N). Inference only."""
    return _dplr_untruncated_C(*(jnp.asarray(t) for t in (dt, Lambda, P, C)), Size("L").normalize(L))
