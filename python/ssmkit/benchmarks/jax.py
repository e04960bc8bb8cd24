"""Benchmark cases of ``ssmkit bench --framework jax``: ssmkit's kernels through JAX.

Each case times one primitive of :mod:`ssmkit.jax` under ``jit`` ("ssmkit.jax") against
its ``jnp`` reference (:mod:`ssmkit.jax.reference`) under ``jit`` and against the same
kernel through the torch path ("torch ssmkit", :mod:`ssmkit.ops`), side by side, at the
shapes of the torch families; and the S4D layer (:mod:`ssmkit.jax.s4`) forward+backward
against the same layer on the ``jnp`` primitives and the torch layer. ``x ssmkit`` is
ssmkit.jax's throughput over each row's. Every jitted call blocks until its result is
ready. Backward cases time ``jit(vjp)``, where XLA drops the forward kernel (the backward
does not read its result), against torch's backward on a graph built beforehand. Before timing, ssmkit.jax's results are checked by the
2x rule against the ``jnp`` reference in complex128 on the same inputs, with the
complex64 ``jnp`` reference's error as the yardstick. CPU only: no cases for a GPU.
"""

from __future__ import annotations

import copy
import functools

import numpy as np

from . import Case, Impl, cauchy as torch_cauchy, step as torch_step, vandermonde as torch_vandermonde

try:
    import jax
    import jax.numpy as jnp
except ImportError:  # cases() gives none; ssmkit bench --framework jax says why
    jax = None

FAMILIES = ("cauchy", "vandermonde", "step", "layer")


def available() -> bool:
    return jax is not None


def _np(t):
    return t.detach().cpu().resolve_conj().numpy()


def _blocking(fn, *args):
    """fn jitted on args, one call per invocation, returning once the result is ready."""
    jitted = jax.jit(fn)
    return lambda: jax.block_until_ready(jitted(*args))


def _vjp(fn):
    """(inputs..., cotangent) -> the inputs' gradients of fn (JAX's convention)."""
    return lambda *args: jax.vjp(fn, *args[:-1])[1](args[-1])


def _torch_backward(fn, inputs, grad):
    """The torch path's backward alone: the inputs' gradients on a graph built beforehand
    (as jit(vjp), whose forward XLA drops)."""
    import torch

    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*inputs)
    return lambda: torch.autograd.grad(out, inputs, grad, retain_graph=True)


def _outputs(x) -> list:
    return list(x) if isinstance(x, (tuple, list)) else [x]


def _check(names, fn, ref, args):
    """ssmkit.jax's fn(*args) against ref on the arrays upcast to double precision (the ground
    truth, with x64), by the 2x rule with ref's own single-precision error."""

    def check():
        import torch

        from .._accuracy import judge_all

        out, low = _outputs(fn(*args)), _outputs(ref(*args))
        with jax.enable_x64(True):
            up = [jnp.asarray(np.asarray(a).astype(np.complex128 if jnp.iscomplexobj(a) else np.float64)) for a in args]
            truth = [np.asarray(t) for t in _outputs(ref(*up))]
        as_torch = lambda xs: [torch.from_numpy(np.array(x)) for x in xs]  # noqa: E731
        return judge_all(zip(names, as_torch(out), as_torch(truth), as_torch(low)))

    return check


def _cauchy_cases(quick):
    import torch

    from .. import jax as sj
    from ..jax import reference as ref
    from ..ops import cauchy

    out = []
    for rows, N, L in torch_cauchy.QUICK_SHAPES if quick else torch_cauchy.STANDARD_SHAPES:
        v, z, w = torch_cauchy.s4_inputs(rows, N, L)
        jv, jz, jw = (jnp.asarray(_np(t)) for t in (v, z, w))
        rng = np.random.default_rng(1)
        g = jnp.asarray(rng.standard_normal((rows, L)) + 1j * rng.standard_normal((rows, L)), jnp.complex64)
        torch_grad = torch.from_numpy(np.conj(np.asarray(g)))  # the same cotangent in torch's convention
        terms = 2 * N * L
        for direction in ("forward", "backward"):
            sub = torch_cauchy._reference_rows(rows, N, L, direction)
            checked = torch_cauchy._reference_rows(rows, N, L, direction, torch.complex128)
            if direction == "forward":
                impls = {
                    "ssmkit.jax": Impl(_blocking(sj.cauchy, jv, jz, jw), rows * terms),
                    "jnp reference": Impl(_blocking(ref.cauchy, jv[:sub], jz, jw[:sub]), sub * terms),
                    "torch ssmkit": Impl(lambda: cauchy(v, z, w), rows * terms),
                }
                check = _check(["product"], sj.cauchy, ref.cauchy, (jv[:checked], jz, jw[:checked]))
            else:
                impls = {
                    "ssmkit.jax": Impl(_blocking(_vjp(sj.cauchy), jv, jz, jw, g), rows * terms),
                    "jnp reference": Impl(_blocking(_vjp(ref.cauchy), jv[:sub], jz, jw[:sub], g[:sub]), sub * terms),
                    "torch ssmkit": Impl(_torch_backward(cauchy, (v, z, w), torch_grad), rows * terms),
                }
                check = _check(["dv", "dz", "dw"], _vjp(sj.cauchy), _vjp(ref.cauchy),
                               (jv[:checked], jz, jw[:checked], g[:checked]))  # fmt: skip
            note = f"jnp reference timed on {sub} of {rows} rows (its memory)" if sub < rows else ""
            if checked < rows:
                note += ("; " if note else "") + f"checked on {checked} rows"
            out.append(Case("cauchy", direction, f"rows={rows} N={N} L={L}", "G terms/s", impls, check, note))
    return out


def _vandermonde_cases(quick):
    import torch

    from .. import jax as sj
    from ..jax import reference as ref
    from ..ops import vandermonde, vandermonde_transpose

    rows, N, L, sub = (16, 32, 512, 4) if quick else (1024, 32, 4096, 32)
    v, x, u, gr = torch_vandermonde._inputs(rows, N, L, torch)
    jv, jx, ju, jg = (jnp.asarray(_np(t)) for t in (v, x, u, gr))
    shape = f"rows={rows} N={N} L={L}"
    note = f"jnp reference on {sub} of {rows} rows (it materialises rows x N x L); checked on those rows"
    fwd, fwd_sub = 2 * rows * N * L, 2 * sub * N * L
    # the ground truth forms x l without rounding (exact_exponent); ssmkit.jax is called without it
    exact = lambda fn: lambda *a: fn(*a, exact_exponent=a[-1].dtype == jnp.complex128)  # noqa: E731
    forward = lambda fn: lambda v, x, **kw: fn(v, x, L, **kw)  # noqa: E731
    return [
        Case("vandermonde", "forward", shape, "G terms/s", {
            "ssmkit.jax": Impl(_blocking(forward(sj.vandermonde), jv, jx), fwd),
            "jnp reference": Impl(_blocking(forward(ref.vandermonde), jv[:sub], jx[:sub]), fwd_sub),
            "torch ssmkit": Impl(lambda: vandermonde(v, x, L), fwd),
        }, _check(["out"], forward(sj.vandermonde), exact(forward(ref.vandermonde)), (jv[:sub], jx[:sub])), note),
        Case("vandermonde", "backward", shape, "G terms/s", {
            "ssmkit.jax": Impl(_blocking(_vjp(forward(sj.vandermonde)), jv, jx, jg), fwd),
            "jnp reference": Impl(_blocking(_vjp(forward(ref.vandermonde)), jv[:sub], jx[:sub], jg[:sub]), fwd_sub),
            "torch ssmkit": Impl(_torch_backward(lambda v, x: vandermonde(v, x, L), (v, x), gr), fwd),
        }, _check(["dv", "dx"], _vjp(forward(sj.vandermonde)), _vjp(exact(forward(ref.vandermonde))),
                  (jv[:sub], jx[:sub], jg[:sub])), note + "; gradients of v and x"),
        Case("vandermonde", "transpose", shape + " (u real)", "G terms/s", {
            "ssmkit.jax": Impl(_blocking(sj.vandermonde_transpose, ju, jv, jx), rows * N * L),
            "jnp reference": Impl(_blocking(ref.vandermonde_transpose, ju[:sub], jv[:sub], jx[:sub]), sub * N * L),
            "torch ssmkit": Impl(lambda: vandermonde_transpose(u, v, x), rows * N * L),
        }, _check(["out"], sj.vandermonde_transpose, exact(ref.vandermonde_transpose), (ju[:sub], jv[:sub], jx[:sub])),
           note),
    ]  # fmt: skip


def _step_cases(quick):
    import torch

    from .. import jax as sj, ops
    from ..jax import reference as ref
    from ..jax.s4 import _dense_step, dplr_setup

    batch, H, N = (2, 64, 16) if quick else (16, 256, 32)
    L = 256 if quick else 4096
    short = 64 if quick else 256  # steps (of 2 sequences for gradients) where the jnp scan's residuals must fit
    unit = "G state updates/s"
    dt, A, B, C, D = torch_step._diag(batch, H, N)
    dA, dB = ops.discretize(dt, A, B, method="zoh")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, H, N, dtype=torch.complex64, generator=g)
    u, us = torch.randn(batch, H, generator=g), torch.randn(batch, L, H, generator=g)
    gy = torch.randn(batch, L, H, generator=g)
    P = torch.randn(H, 1, N, dtype=torch.complex64, generator=g) / N**0.5
    j = {k: jnp.asarray(_np(t)) for k, t in dict(dt=dt, A=A, B=B, C=C, D=D, dA=dA, dB=dB, x=x, u=u, us=us, gy=gy, P=P).items()}
    shape = f"batch={batch} H={H} N={N}"
    zoh = lambda fn: functools.partial(fn, method="zoh")  # noqa: E731
    out = [Case("step", "discretize zoh", f"H={H} N={N}", unit, {
        "ssmkit.jax": Impl(_blocking(zoh(sj.discretize), j["dt"], j["A"], j["B"]), H * N),
        "jnp reference": Impl(_blocking(zoh(ref.discretize), j["dt"], j["A"], j["B"]), H * N),
        "torch ssmkit": Impl(lambda: ops.discretize(dt, A, B, method="zoh"), H * N),
    }, _check(["dA", "dB"], zoh(sj.discretize), zoh(ref.discretize), (j["dt"], j["A"], j["B"])))]  # fmt: skip

    step_args = (j["x"], j["u"], j["dA"], j["dB"], j["C"], j["D"])
    out.append(Case("step", "ssm_step", shape, unit, {
        "ssmkit.jax": Impl(_blocking(sj.ssm_step, *step_args), batch * H * N),
        "jnp reference": Impl(_blocking(ref.ssm_step, *step_args), batch * H * N),
        "torch ssmkit": Impl(lambda: ops.ssm_step(x, u, dA, dB, C, D), batch * H * N),
    }, _check(["y", "state"], sj.ssm_step, ref.ssm_step, step_args), note="functional step, jitted, call overhead included"))  # fmt: skip

    scan_args = (j["us"], j["dA"], j["dB"], j["C"], j["D"])
    out.append(Case("step", "ssm_scan", f"{shape} L={L}", unit, {
        "ssmkit.jax": Impl(_blocking(sj.ssm_scan, *scan_args), batch * L * H * N),
        "jnp reference": Impl(_blocking(ref.ssm_scan, *scan_args), batch * L * H * N),
        "torch ssmkit": Impl(lambda: ops.ssm_scan(us, dA, dB, C, D), batch * L * H * N),
    }, _check(["y", "final state"], sj.ssm_scan, ref.ssm_scan, (j["us"][:, :short],) + scan_args[1:]),
       note=f"the jnp reference is a lax.scan of its step; checked over the first {short} steps"))  # fmt: skip

    def scan_loss(scan):
        return lambda u, dA, dB, dC, D, gy: jnp.sum(scan(u, dA, dB, dC, D)[0] * gy)

    grads = lambda scan: jax.grad(scan_loss(scan), argnums=(0, 1, 2, 3))  # noqa: E731
    usg, dAg, dBg, Cg = (t.clone().requires_grad_() for t in (us, dA, dB, C))

    def torch_scan_grads():
        y, _ = ops.ssm_scan(usg, dAg, dBg, Cg, D)
        return torch.autograd.grad(y, (usg, dAg, dBg, Cg), gy)

    grad_args = scan_args + (j["gy"],)
    # the jnp scan's gradient keeps every step's state: it runs on the first steps of 2 sequences
    few = (j["us"][:2, :short],) + scan_args[1:] + (j["gy"][:2, :short],)
    out.append(Case("step", "ssm_scan fwd+bwd", f"{shape} L={L}", unit, {
        "ssmkit.jax": Impl(_blocking(grads(sj.ssm_scan), *grad_args), batch * L * H * N),
        "jnp reference": Impl(_blocking(grads(ref.ssm_scan), *few), 2 * short * H * N),
        "torch ssmkit": Impl(torch_scan_grads, batch * L * H * N),
    }, _check(["du", "ddA", "ddB", "ddC"], grads(sj.ssm_scan), grads(ref.ssm_scan), few),
       note=f"forward plus the gradients of u, dA, dB, dC; the jnp reference timed and the gradients checked "
            f"over the first {short} steps of 2 sequences (it keeps every step's state)"))  # fmt: skip

    factors = dplr_setup(j["dt"], j["A"], j["P"], j["B"])
    dense = jax.jit(ref.dplr_dense)(j["dt"], j["A"], j["P"], j["B"])  # the jnp baseline's step matrices, made once
    torch_factors = ops.dplr_setup(dt, A, P, B)
    out.append(Case("step", "dplr_step r=1", shape, unit, {
        "ssmkit.jax": Impl(_blocking(sj.dplr_step, j["x"], j["u"], factors, j["C"], j["D"]), batch * H * N),
        "jnp dense step": Impl(_blocking(_dense_step, j["x"], j["u"], dense, j["C"], j["D"]), batch * H * N),
        "torch ssmkit": Impl(lambda: ops.dplr_step(x, u, torch_factors, C, D), batch * H * N),
    }, _check(["y", "state"], lambda *a: sj.dplr_step(*a[:2], dplr_setup(*a[2:6]), *a[6:]),
              ref.dplr_step,
              (j["x"], j["u"], j["dt"], j["A"], j["P"], j["B"], j["C"], j["D"])),
       note="the jnp baseline steps with the dense (H, 2N, 2N) matrices of reference.dplr_dense"))  # fmt: skip
    out.append(_untruncated_C_case(H, N, 1, L))
    return out


def _untruncated_C_case(H, N, r, L):
    """dplr_untruncated_C in complex128 (x64), as the layers call it, against the jnp dense
    definition (dA^L by repeated squaring, then a solve) and the torch path; checked against
    the torch dense definition, as the torch case is."""
    import torch

    from .. import jax as sj, ops
    from .._accuracy import judge_all
    from ..jax import reference as ref
    from ..ops import reference as torch_ref

    inputs = torch_step.untruncated_C_inputs(H, N, r)
    terms = torch_step.untruncated_C_terms(H, N, r, L)

    def x64(fn):
        """fn(dt, Lambda, P, C, L) jitted on the inputs, run with x64 on (complex128 stays)."""
        with jax.enable_x64(True):
            args = [jnp.asarray(_np(t)) for t in inputs]
            jitted = jax.jit(functools.partial(fn, L=L))

        def run():
            with jax.enable_x64(True):
                return jax.block_until_ready(jitted(*args))

        return run

    kernel = x64(sj.dplr_untruncated_C)

    def check():
        truth = torch_ref.dplr_untruncated_C(*inputs, L)
        return judge_all([("C", torch.from_numpy(np.array(kernel())), truth, None)])

    return Case("step", f"dplr_untruncated_C r={r}", f"H={H} N={N} L={L}", "G terms/s", {
        "ssmkit.jax": Impl(kernel, terms),
        "jnp dense reference": Impl(x64(ref.dplr_untruncated_C), terms),
        "torch ssmkit": Impl(lambda: ops.dplr_untruncated_C(*inputs, L), terms),
    }, check, note="complex128 (x64); checked against the torch dense definition, whose own error (up to ~1e-13) "
       "is within the float64 floor")  # fmt: skip


def _layer_cases(quick):
    import torch

    from ..jax import s4
    from ..nn import S4

    batch, L, H = (2, 256, 32) if quick else (8, 4096, 256)
    d_state = 64
    torch.manual_seed(0)
    layer = S4(H, d_state, mode="diag", backend="compiled")
    params, config = s4.from_torch(layer)
    ref_config = s4.S4Config(**{**config.__dict__, "backend": "reference"})
    g = torch.Generator().manual_seed(1)
    x, gy = torch.randn(batch, L, H, generator=g), torch.randn(batch, L, H, generator=g)
    jx, jgy = jnp.asarray(_np(x)), jnp.asarray(_np(gy))

    def fwd_bwd(config):
        """The parameters' gradients of sum(y * gy)."""
        return jax.grad(lambda p, x, gy: jnp.sum(s4.apply(p, x, config) * gy))

    def torch_fwd_bwd():
        layer.zero_grad(set_to_none=True)
        y, _ = layer(x)
        y.backward(gy)

    def y_and_dx(config):
        def fn(p, x, gy):
            y, vjp = jax.vjp(lambda x: s4.apply(p, x, config), x)
            return y, vjp(gy)[0]

        return fn

    def check():
        from .._accuracy import judge_all

        truth = copy.deepcopy(layer).double()
        xd = x.double().requires_grad_()
        y, _ = truth(xd)
        want = [y.detach(), torch.autograd.grad(y, xd, gy.double())[0]]
        got = [torch.from_numpy(np.array(a)) for a in jax.jit(y_and_dx(config))(params, jx, jgy)]
        low = [torch.from_numpy(np.array(a)) for a in jax.jit(y_and_dx(ref_config))(params, jx, jgy)]
        return judge_all(zip(("y", "dx"), got, want, low))

    work = batch * L * H * d_state // 2
    return [Case("layer", "S4D fwd+bwd", f"batch={batch} L={L} H={H}", "G state updates/s", {
        "ssmkit.jax": Impl(_blocking(fwd_bwd(config), params, jx, jgy), work),
        "jnp layer": Impl(_blocking(fwd_bwd(ref_config), params, jx, jgy), work),
        "torch ssmkit": Impl(torch_fwd_bwd, work),
    }, check, note=f"S4D layer (d_state={d_state}) forward + the parameters' gradients; the same parameters in "
                   "the three; the jnp layer runs ssmkit.jax.s4 on the jnp reference primitives")]  # fmt: skip


_BUILDERS = {"cauchy": _cauchy_cases, "vandermonde": _vandermonde_cases, "step": _step_cases, "layer": _layer_cases}


def cases(quick: bool, device: str = "cpu", families=None) -> list[Case]:
    """The cases of the named families (all of FAMILIES when None); none without jax or on a GPU."""
    if jax is None or device != "cpu":
        return []
    return [case for name in FAMILIES if not families or name in families for case in _BUILDERS[name](quick)]
