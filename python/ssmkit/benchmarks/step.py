"""Benchmark cases of the step family: discretize, ssm_step, ssm_scan, dplr_step.

Work unit: one complex state update (one (batch, h, n) element advanced one step; a
stored conjugate pair counts once). Baselines are the same computation written as
PyTorch ops, as the reference implementations do it. Each case is checked first against
``ssmkit.ops.reference`` in double precision (the 2x rule, with its float32 error).
"""

from __future__ import annotations

import torch

from .. import ops
from .._accuracy import judge_all
from ..ops import reference
from . import Case, Cost, Impl

UNIT = "G state updates/s"


def _diag(batch, H, N, dtype=torch.complex64):
    n = torch.arange(N).repeat(H, 1)
    A = torch.complex(-0.5 * torch.ones(H, N), torch.pi * n).to(dtype)
    B = torch.randn(H, N, dtype=dtype)
    C = torch.randn(H, N, dtype=dtype)
    dt = torch.exp(torch.rand(H) * 4.6 - 6.9)
    D = torch.randn(H)
    return dt, A, B, C, D


def _torch_step(x, u, dA, dB, dC, D):
    # the step as a chain of PyTorch ops (what S4's recurrent mode does per step)
    x = dA * x + dB * u.unsqueeze(-1)
    return 2 * torch.einsum("hn,bhn->bh", dC, x).real + D * u, x


def _up(*ts):
    return [t.to(torch.complex128 if t.is_complex() else torch.float64) for t in ts]


def _check(names, ssmkit_fn, reference_fn, *inputs):
    """ssmkit_fn(*inputs) against reference_fn on the inputs in double precision (the
    ground truth), by the 2x rule with reference_fn's error in single precision."""
    return lambda: judge_all(zip(names, ssmkit_fn(*inputs), reference_fn(*_up(*inputs)), reference_fn(*inputs)))


def _grads(fn, inputs, grad):
    """The gradients of fn's first output at inputs (all of them), given its gradient."""
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    return torch.autograd.grad(fn(*inputs)[0], inputs, grad)


def _in_place(step):
    """A step with out=state on a copy of the state: (y, new state) as the in-place call leaves them."""

    def call(x, *args):
        x = x.clone()
        with torch.no_grad():
            y, _ = step(x, *args, out=x)
        return y, x

    return call


# What one state update costs (csrc/cpu/step.h, dplr.h), an FMA counting 2 and a division
# or a transcendental function 1, and the bytes it must move (complex64 state and
# parameters, float32 u and y).
# discretize (zoh): dt A, exp, cos, sin, their product, (dA - 1) / A, times B; reads A, B
# and writes dA, dB.
DISCRETIZE = Cost(flops=24, bytes=32)


def step_cost(batch: int, params: int, flops: float) -> Cost:
    """A step reads and writes the state (8 + 8 bytes) and reads `params` complex
    parameters per (h, n) once per call, shared by the batch."""
    return Cost(flops, 16 + 8 * params / batch)


# ssm_step and ssm_scan: dA x (6) + dB u (4) and 2 Re(dC x) (4) per update.
STEP_FLOPS = 14
# dplr_step, rank 1: 2 Re(Q^* x) (4), a x + dB u - Pd sigma (14) and 2 Re(C x') (4); its
# parameters a, dB, Pd, Q, C.
DPLR_FLOPS, DPLR_PARAMS = 22, 5
# ssm_scan forward and backward: the forward (14); the backward's checkpoint pass and its
# recomputation of each segment (10 each: the state step), and the reverse step (30:
# lambda 4, g_u 4, the dA sum 8, dB 4, dC 4, the carry conj(dA) lambda 6). The scan keeps
# the state on chip: its traffic is u and y (forward), u, the output gradient and g_u
# (backward), 20 bytes per (batch, l, h).
SCAN_FLOPS, SCAN_FWD_BWD_FLOPS = 14, 64


def _graph_steps(step, steps):
    """A CUDA graph of `steps` calls of step (warmed up on a side stream first)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(steps):
            step()
    return graph


def cases(quick: bool, device: str = "cpu") -> list[Case]:
    batch, H, N = (2, 64, 16) if quick else (16, 256, 32)
    L = 256 if quick else 4096
    loop_L = 64 if quick else 256  # steps of the PyTorch loop actually timed
    dt, A, B, C, D = (t.to(device) for t in _diag(batch, H, N))
    with torch.no_grad():
        dA, dB = ops.discretize(dt, A, B, method="zoh")
    x = torch.randn(batch, H, N, dtype=torch.complex64, device=device)
    u = torch.randn(batch, H, device=device)
    us = torch.randn(batch, L, H, device=device)
    shape = f"batch={batch} H={H} N={N}"
    out = []

    def disc_torch():
        z = dt.unsqueeze(-1) * A
        e = torch.exp(z)
        return e, (e - 1) / A * B

    out.append(Case("step", "discretize zoh", f"H={H} N={N}", UNIT, {
        "ssmkit": Impl(lambda: ops.discretize(dt, A, B, method="zoh"), H * N),
        "torch ops": Impl(disc_torch, H * N),
    }, _check(("dA", "dB"), lambda *a: ops.discretize(*a, method="zoh"), lambda *a: reference.discretize(*a, "zoh"), dt, A, B),
       cost=DISCRETIZE))  # fmt: skip

    xs = x.clone()

    def step_inplace():
        with torch.no_grad():
            return ops.ssm_step(xs, u, dA, dB, C, D, out=xs)

    x_copy = torch.empty_like(x)
    # the functional and the in-place call against the same truth: the reference's (y, state) twice
    step_check = _check(("y", "state", "y (out=state)", "state (out=state)"),
                        lambda *a: (*ops.ssm_step(*a), *_in_place(ops.ssm_step)(*a)),
                        lambda *a: 2 * reference.ssm_step(*a), x, u, dA, dB, C, D)  # fmt: skip
    out.append(Case("step", "ssm_step", shape, UNIT, {
        "ssmkit": Impl(step_inplace, batch * H * N),
        "ssmkit (functional)": Impl(lambda: ops.ssm_step(x, u, dA, dB, C, D), batch * H * N),
        "torch step": Impl(lambda: _torch_step(x, u, dA, dB, C, D), batch * H * N),
        "state copy (floor)": Impl(lambda: x_copy.copy_(x), batch * H * N),
    }, step_check, note="in place (out=state), eager, no grad, call overhead included; 'state copy' reads and "
            "writes the state once, as any step must: the memory-traffic floor",
       cost=step_cost(batch, 3, STEP_FLOPS)))  # fmt: skip

    if device != "cpu":  # the step as generation runs it: replayed from a CUDA graph
        steps = 100
        graph = _graph_steps(step_inplace, steps)
        out.append(Case("step", "ssm_step (CUDA graph)", shape, UNIT, {
            "ssmkit": Impl(graph.replay, steps * batch * H * N),
        }, step_check, note=f"{steps} in-place steps captured in one CUDA graph; time per replay / {steps} = time per step",
           cost=step_cost(batch, 3, STEP_FLOPS)))  # fmt: skip

    def torch_loop():
        xx = torch.zeros_like(x)
        ys = []
        for l in range(loop_L):
            y, xx = _torch_step(xx, us[:, l], dA, dB, C, D)
            ys.append(y)
        return torch.stack(ys, 1), xx

    out.append(Case("step", "ssm_scan", f"{shape} L={L}", UNIT, {
        "ssmkit": Impl(lambda: ops.ssm_scan(us, dA, dB, C, D), batch * L * H * N),
        "torch step loop": Impl(torch_loop, batch * loop_L * H * N),
    }, _check(("y", "final state"), ops.ssm_scan, reference.ssm_scan, us[:, :loop_L], dA, dB, C, D),
       note=f"the PyTorch loop is timed over {loop_L} of the {L} steps; throughput scales linearly; "
            f"checked over the first {loop_L} steps",
       cost=Cost(SCAN_FLOPS, 8 / N)))  # fmt: skip

    usg = us.clone().requires_grad_()
    dAg, dBg, Cg = (t.clone().requires_grad_() for t in (dA, dB, C))

    def scan_fwd_bwd():
        y, s = ops.ssm_scan(usg, dAg, dBg, Cg, D)
        y.sum().backward()

    # the gradients checked over the first loop_L steps of at most 2 sequences: the
    # reference's autograd graph keeps every step's state
    grad_u = us[:2, :loop_L]
    grad_y = torch.randn(grad_u.shape, generator=torch.Generator().manual_seed(1)).to(device)

    def scan_grads(scan):
        return lambda u, dA, dB, dC, D, gy: _grads(lambda *a: scan(*a, D), (u, dA, dB, dC), gy)

    out.append(Case("step", "ssm_scan fwd+bwd", f"{shape} L={L}", UNIT, {
        "ssmkit": Impl(scan_fwd_bwd, batch * L * H * N),
    }, _check(("du", "ddA", "ddB", "ddC"), scan_grads(ops.ssm_scan), scan_grads(reference.ssm_scan),
              grad_u, dA, dB, C, D, grad_y),
       note="forward plus the reverse-scan backward (grads of u, dA, dB, dC); gradients checked over the first "
            f"{loop_L} steps of {grad_u.shape[0]} sequences",
       cost=Cost(SCAN_FWD_BWD_FLOPS, 20 / N)))  # fmt: skip

    # DPLR (S4) step: rank 1, against S4's dense step (an (H, N, N) complex matvec)
    r = 1
    P = torch.randn(H, r, N, dtype=torch.complex64, device=device) / N**0.5
    f = ops.dplr_setup(dt, A, P, B)
    dense = torch.randn(H, N, N, dtype=torch.complex64, device=device) / N

    def dplr_pair(xs, us):
        """(ssmkit in place on its own copy of the state, S4's dense step) at xs, us."""
        xd = xs.clone()

        def dplr_inplace():
            with torch.no_grad():
                return ops.dplr_step(xd, us, f, C, D, out=xd)

        def dense_step():
            xn = torch.einsum("hmn,bhn->bhm", dense, xs) + f.dB * us.unsqueeze(-1)
            return 2 * torch.einsum("hn,bhn->bh", C, xn).real + D * us, xn

        work = xs.shape[0] * H * N
        return {"ssmkit": Impl(dplr_inplace, work), "dense S4 step": Impl(dense_step, work)}

    def dplr_check(xs, us):
        """ops.dplr_step (functional and out=state) against the reference's dense step (twice)."""
        return _check(("y", "state", "y (out=state)", "state (out=state)"),
                      lambda x, u, *_: (*ops.dplr_step(x, u, f, C, D), *_in_place(ops.dplr_step)(x, u, f, C, D)),
                      lambda *a: 2 * reference.dplr_step(*a), xs, us, dt, A, P, B, C, D)  # fmt: skip

    out.append(Case("step", "dplr_step r=1", shape, UNIT, dplr_pair(x, u), dplr_check(x, u),
                    note="S4's dense step: (H, N, N) complex matrix times the state, per batch element",
                    cost=step_cost(batch, DPLR_PARAMS, DPLR_FLOPS)))
    # the same at batch 1, as autoregressive generation (SaShiMi) steps one sample
    out.append(Case("step", "dplr_step r=1 (generation)", f"batch=1 H={H} N={N}", UNIT, dplr_pair(x[:1], u[:1]),
                    dplr_check(x[:1], u[:1]),
                    note="one sample per step, as generation runs it; at this size the Python call overhead "
                    "(~15 us) is most of the time", cost=step_cost(1, DPLR_PARAMS, DPLR_FLOPS)))
    out.append(_untruncated_C_case(H, N, r, L, device))
    return out


def untruncated_C_inputs(H: int, N: int, r: int) -> list[torch.Tensor]:
    """dt, Lambda, P (H, r, N), C~ in double precision for dplr_untruncated_C (benchmarks.jax
    times the same)."""
    dt, Lam, _, C, _ = _up(*_diag(1, H, N))
    return [dt, Lam, torch.randn(H, r, N, dtype=torch.complex128) / N**0.5, C]


def untruncated_C_terms(H: int, N: int, r: int, L: int) -> int:
    """dplr_untruncated_C's work in Cauchy terms (see _untruncated_C_case)."""
    return H * 2 * N * ((L + 1) // 2) * ((1 + r) * r + 1 + r)


def _untruncated_C_case(H: int, N: int, r: int, L: int, device: str) -> Case:
    """The step's C from the C~ of kernel length L (what a first generation computes per
    DPLR layer), complex128 as the layers call it: the kernel against the same sums
    composed of ssmkit's Cauchy product and torch ops (nn.ssm_kernel, the differentiable
    path) and the dense definition (reference: dA^L by repeated squaring, then a solve).
    Work: Cauchy terms as in the cauchy family (a conjugate pair counts two), per channel
    (1 + r) r rows over N at the (L + 1)/2 frequencies, then 1 + r rows back. Not rated
    against the roofline: it is float64 work with rows sharing denominators."""
    from ..nn import backend, ssm_kernel  # imported here, as in layer.py: only this case needs ssmkit.nn

    dt, Lam, P, C = (t.to(device) for t in untruncated_C_inputs(H, N, r))
    terms = untruncated_C_terms(H, N, r, L)
    impls = {
        "ssmkit": Impl(lambda: ops.dplr_untruncated_C(dt, Lam, P, C, L), terms),
        "ssmkit Cauchy + torch": Impl(lambda: ssm_kernel.dplr_untruncated_C(backend.COMPILED, dt, Lam, P, C, L), terms),
        "dense reference": Impl(lambda: reference.dplr_untruncated_C(dt, Lam, P, C, L), terms),
    }

    def check():
        return judge_all([("C", ops.dplr_untruncated_C(dt, Lam, P, C, L), reference.dplr_untruncated_C(dt, Lam, P, C, L),
                           None)])  # fmt: skip

    return Case("step", f"dplr_untruncated_C r={r}", f"H={H} N={N} L={L}", "G terms/s", impls, check,
                note="complex128; checked against the dense definition, whose own error (up to ~1e-13) "
                "is within the float64 floor")

