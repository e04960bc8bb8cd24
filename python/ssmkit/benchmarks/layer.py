"""Benchmark cases of the layer family: S4 and S4D forward+backward, ssmkit vs reference,
the layer against the sum of its parts, and its long convolution.

Each layer case times the same :class:`ssmkit.nn.S4` layer (same parameters) on the
compiled kernels and with ``backend="reference"`` (the primitives as naive PyTorch),
side by side, after checking the compiled layer's output and input gradient against its
float64 copy (the 2x rule, with the reference backend's float32 error; the kernels' own
gradients are checked in their families). Beside them, "sum of parts" runs the layer's
parts one after the other, each forward+backward on its own: the SSM kernel K, the
convolution with D (``ops.fft_conv``) and the output (activation, linear, GLU); the
"parts" case times each part against the whole layer (x ssmkit: the layer's time over
the part's). Work unit: one state update of the recurrence the layer stands for (batch x
length x d_model x N, N = d_state/2 stored conjugate pairs), as in the step family.

The convolution case times ``ops.fft_conv`` forward+backward against the torch.fft
convolution (:func:`ssmkit.ops.reference.fft_conv`, the layer's convolution before
``ops.fft_conv``) on (batch, L, H) input; work unit: one output element.

Peak memory of the kernel computation (the SSM kernel K of length L, forward and
backward) is measured in a fresh Python process per implementation, as the growth of its
peak resident set (``ru_maxrss``) over its resident set just before the computation:
tracemalloc does not see torch's allocations, and a fresh process keeps the high-water
mark of earlier work out of it. It counts everything the process touches (torch's
allocations and any native scratch); the CPU kernels keep no heap scratch of their own.
"""

from __future__ import annotations

import copy
import functools
import json
import subprocess
import sys

import torch

from .._accuracy import judge_all
from . import Case, Impl

UNIT = "G state updates/s"
MODES = {"S4": "dplr", "S4D": "diag"}


def _layer(mode: str, H: int, d_state: int, L: int, backend: str):
    from ..nn import S4

    torch.manual_seed(0)  # the same parameters for every backend
    return S4(H, d_state, mode=mode, backend=backend, l_max=L if mode == "dplr" else None)


def _check(layers: dict, x: torch.Tensor, grad: torch.Tensor):
    """The compiled layer's output and input gradient against its float64 copy, by the 2x
    rule with the reference backend's error; layers: backend -> layer."""

    def outputs(layer, x, grad):
        x = x.detach().clone().requires_grad_()
        y, _ = layer(x)
        return [y.detach(), *torch.autograd.grad(y, x, grad)]

    def check():
        truth = outputs(copy.deepcopy(layers["compiled"]).double(), x.double(), grad.double())
        return judge_all(zip(("y", "dx"), outputs(layers["compiled"], x, grad), truth, outputs(layers["reference"], x, grad)))

    return check


def _fwd_bwd(fn, inputs, grad):
    """One forward+backward of fn on leaf copies of inputs, with the output gradient grad."""
    leaves = [t.detach().requires_grad_() for t in inputs]

    def call():
        out = fn(*leaves)
        torch.autograd.backward(out, grad)

    return call


def _parts(layer, x, grad) -> dict:
    """The layer's parts, each one forward+backward on its own, at the layer's inputs."""
    from ..nn.backend import primitives

    L = x.shape[1]
    prims = primitives(layer.backend, x.device)
    with torch.no_grad():
        K = layer.kernel(L)
        y = layer._convolve(prims, x, K)

    def kernel():
        layer.zero_grad(set_to_none=True)
        layer.kernel(L).backward(torch.ones_like(K))

    return {
        "kernel": kernel,
        "convolution": _fwd_bwd(prims.fft_conv, (x, K), grad),
        "output": _fwd_bwd(layer._output, (y,), grad),
    }


def _conv_case(batch: int, L: int, H: int) -> Case:
    from ..ops import fft_conv, reference

    torch.manual_seed(0)
    u, k, grad = torch.randn(batch, L, H), torch.randn(1, H, L) / L**0.5, torch.randn(batch, L, H)

    def check():
        def outputs(fn, u, k, g):
            u, k = u.detach().requires_grad_(), k.detach().requires_grad_()
            y = fn(u, k)
            return [y.detach(), *torch.autograd.grad(y, (u, k), g)]

        truth = outputs(reference.fft_conv, u.double(), k.double(), grad.double())
        return judge_all(zip(("y", "du", "dk"), outputs(fft_conv, u, k, grad), truth, outputs(reference.fft_conv, u, k, grad)))

    impls = {"ssmkit": Impl(_fwd_bwd(fft_conv, (u, k), grad), batch * L * H),
             "torch.fft": Impl(_fwd_bwd(reference.fft_conv, (u, k), grad), batch * L * H)}  # fmt: skip
    return Case("layer", "fft_conv fwd+bwd", f"batch={batch} L={L} H={H}", "G outputs/s", impls, check)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def measure_kernel_peak(mode: str, H: int, d_state: int, L: int, backend: str) -> int:
    """Run in a fresh process: peak memory growth (bytes) of the kernel's forward+backward."""
    import resource

    layer = _layer(mode, H, d_state, L, backend)
    warm = layer.kernel(min(L, 8))  # first-call costs (thread pools, lazy imports) at a tiny size
    warm.sum().backward()
    layer.zero_grad(set_to_none=True)
    grad = torch.randn(2 if layer.bidirectional else 1, H, L)
    before = _rss_bytes()
    K = layer.kernel(L)
    K.backward(grad)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return max(0, peak - before)


def kernel_peak_memory(mode: str, H: int, d_state: int, L: int, backend: str) -> float | None:
    """Peak memory (bytes) of the kernel's forward+backward, from a fresh process; None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    code = (
        "import json, sys; from ssmkit.benchmarks.layer import measure_kernel_peak; "
        f"print(json.dumps(measure_kernel_peak({mode!r}, {H}, {d_state}, {L}, {backend!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def _mb(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.1f} MB" if n >= 2**20 / 10 else "< 0.1 MB"


def cases(quick: bool, device: str = "cpu") -> list[Case]:
    if device != "cpu":  # CPU runs only (see FAMILIES)
        return []
    batch, L, H = (2, 256, 32) if quick else (8, 4096, 256)
    d_state = 64  # N = 32 stored conjugate pairs
    out = [_conv_case(batch, L, H)]
    work = batch * L * H * d_state // 2
    for name, mode in MODES.items():
        x = torch.randn(batch, L, H)
        grad = torch.randn(batch, L, H)
        impls, layers = {}, {}
        for backend in ("compiled", "reference"):
            layer = layers[backend] = _layer(mode, H, d_state, L, backend)

            def fwd_bwd(layer=layer):
                layer.zero_grad(set_to_none=True)
                y, _ = layer(x)
                y.backward(grad)

            impls["ssmkit" if backend == "compiled" else "reference backend"] = Impl(fwd_bwd, work)
        parts = _parts(layers["compiled"], x, grad)
        impls = {"ssmkit": impls["ssmkit"], "sum of parts": Impl(lambda parts=parts: [f() for f in parts.values()], work),
                 "reference backend": impls["reference backend"]}  # fmt: skip
        peaks = {b: kernel_peak_memory(mode, H, d_state, L, b) for b in ("compiled", "reference")}
        ratio = "" if None in peaks.values() or not peaks["compiled"] else f", {peaks['reference'] / peaks['compiled']:.0f}x less"
        note = (
            f"{name} layer (mode={mode!r}, d_state={d_state}) forward+backward; peak memory of its kernel "
            f"computation (forward+backward, growth of peak RSS in a fresh process): ssmkit "
            f"{_mb(peaks['compiled'])}, reference {_mb(peaks['reference'])}{ratio}"
        )
        shape, check = f"batch={batch} L={L} H={H}", functools.cache(_check(layers, x, grad))  # one check, two cases
        out.append(Case("layer", f"{name} fwd+bwd", shape, UNIT, impls, check, note=note))
        part_impls = {"layer": impls["ssmkit"], **{part: Impl(fn, work) for part, fn in parts.items()}}
        out.append(Case("layer", f"{name} parts fwd+bwd", shape, UNIT, part_impls, check))
    return out
