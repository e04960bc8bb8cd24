"""Benchmark cases of SaShiMi generation: samples per second of the recurrent mode.

At batch 1 and 16. ssmkit: ``generate``'s path, the compiled step engine
(models/sashimi_engine.py), one call = one chunk of 256 samples per stream, sampled
in the loop (generate's defaults). Baselines, one call = one full cycle of the pooling rates
(prod(pool) samples per stream, so every stage steps): "step", the per-token
``SaShiMi.step`` on the compiled kernels (no sampling), and "reference", the same model
stepped with ``backend="reference"`` (dense (2N x 2N) DPLR steps in PyTorch). The
default model in full runs, a small one in quick runs. Before timing, the engine's
teacher-forced logits are checked against the float64 model's (convolution mode) by the
2x rule, with the error of the reference model's eager steps as the yardstick.
"""

from __future__ import annotations

import copy
import math

import torch

from .. import _C
from .._accuracy import judge_2x
from . import Case, Cost, Impl

UNIT = "k samples/s"
SCALE = 1e6  # run() reports work / seconds / 1e9: work in millionths of a sample gives k samples/s
CHECK_STEPS = 32  # teacher-forced steps of the check: two cycles of the default pooling rates (4 x 4)


def _check_tokens(batch: int) -> torch.Tensor:
    """(batch, CHECK_STEPS) mu-law codes: a seeded random walk about silence, like audio."""
    walk = torch.randint(-3, 4, (batch, CHECK_STEPS), generator=torch.Generator().manual_seed(0)).cumsum(1) + 128
    return walk.clamp(0, 255)


def _eager_logits(model, tokens):
    """(batch, steps, n_classes) logits of model.step teacher-forced with tokens."""
    state, out = model.default_state(tokens.shape[0]), []
    with torch.no_grad():
        for t in range(tokens.shape[1]):
            logits, state = model.step(tokens[:, t], state)
            out.append(logits)
    return torch.stack(out, 1)


def _stepper(model, batch):
    state = model.default_state(batch)
    token = torch.full((batch,), 128, dtype=torch.int64)
    cycle = math.prod(model.pool)

    def run():
        nonlocal state
        for _ in range(cycle):
            logits, state = model.step(token, state)
        return logits

    run()  # builds the step caches (the dense DPLR power for C) outside the timing
    return run, cycle * batch * SCALE


CHUNK = 256


def _engine(model, reference, batch):
    from ..models.sashimi_engine import Engine

    engine = Engine(model, model.default_state(batch))  # built (step caches included) outside the timing
    token = torch.full((batch,), 128, dtype=torch.int64)
    uniforms = torch.rand(CHUNK, batch, dtype=torch.float64)

    def run():
        return engine.run(CHUNK, token=token, uniforms=uniforms)  # generate's defaults: temperature 1, top_p 1

    def check():
        """A fresh engine's teacher-forced logits against the float64 model's."""
        tokens = _check_tokens(batch)
        _, logits = Engine(model, model.default_state(batch)).run(CHECK_STEPS, tokens_in=tokens.T.contiguous(), logits=True)
        with torch.no_grad():
            truth = copy.deepcopy(model).double()(tokens)
        return judge_2x("engine logits", logits.transpose(0, 1), truth, _eager_logits(reference, tokens))

    return run, CHUNK * batch * SCALE, check


def cost(model, batch: int) -> Cost:
    """Per sample of one stream: 2 flops per weight of every linear map used (the S4
    layers' output linears, the feed-forwards, the pooling maps, the decoder) and
    benchmarks.step.DPLR_FLOPS per DPLR state update, each stage's share divided by its rate;
    bytes: those weights read once per step, shared by the batch's streams, and the S4
    states read and written (layer norms, biases and activations are not counted)."""
    from ..nn import S4
    from .step import DPLR_FLOPS

    weights, updates = 0.0, 0.0  # per full-rate step of one stream
    for blocks, rate in model.stages():
        for block in blocks:
            linears = [m for m in block.modules() if isinstance(m, torch.nn.Linear)]
            weights += sum(m.weight.numel() for m in linears) / rate
            updates += sum(m.d_model * m.d_state // 2 for m in block.modules() if isinstance(m, S4)) / rate
    for k, pools in enumerate(zip(model.down_pools, model.up_pools)):  # a pooling map steps once per block
        weights += sum(pool.linear.weight.numel() for pool in pools) / model.rates[k + 1]
    weights += model.decoder.weight.numel()
    return Cost(2 * weights + DPLR_FLOPS * updates, 4 * weights / batch + 16 * updates)


def cases(quick: bool, device: str = "cpu") -> list[Case]:
    if device != "cpu":  # CPU runs only (see FAMILIES)
        return []
    kwargs = dict(d_model=16, n_layers=2, d_state=16) if quick else {}
    torch.manual_seed(0)
    model = SaShiMi_eval(l_max=8000, backend="compiled", **kwargs)
    reference = copy.deepcopy(model)
    for layer in reference.modules():
        if hasattr(layer, "ssm_parameters"):
            layer.backend = "reference"
    shape = "default model" if not kwargs else "d_model=16 n_layers=2 d_state=16"
    out = []
    for batch in (1, 16):
        fn, work, check = _engine(model, reference, batch)
        step_fn, step_work = _stepper(model, batch)
        ref_fn, ref_work = _stepper(reference, batch)
        per_sample = cost(model, batch)
        out.append(Case("sashimi", "generate (recurrent steps)", f"{shape} batch={batch}", UNIT, {
            "ssmkit": Impl(fn, work),
            "step": Impl(step_fn, step_work),
            "reference": Impl(ref_fn, ref_work),
        }, check, note=f"torch threads: {torch.get_num_threads()}, ssmkit threads: {_C.get_num_threads()}",
           cost=Cost(per_sample.flops / SCALE, per_sample.bytes / SCALE)))  # fmt: skip
    return out


def SaShiMi_eval(**kwargs):
    from ..models import SaShiMi

    return SaShiMi(**kwargs).eval()


def breakdown(batch: int, model=None, steps: int = 64, rounds: int = 7) -> dict[str, float]:
    """Microseconds per step of the engine's full step (with sampling) and of each kind
    of instruction alone (the same programs keeping only that kind), min of `rounds`:
    where the time of a generation step goes. Default model unless one is given."""
    import time

    from ..models.sashimi_engine import Engine

    model = model or SaShiMi_eval(l_max=8000, backend="compiled")
    engine = Engine(model, model.default_state(batch))
    full = engine._engine
    code, starts, views, buffers, logits = engine.program
    names = {v: k for k, v in _C.engine_ops.items()}
    kinds = {"S4 steps": {"dplr_step", "diag_step"}, "linears": {"linear", "norm_linear"}, "GELU": {"gelu"},
             "layer norms": {"layer_norm"}, "GLU": {"glu"}, "add, copy, embed": {"add", "copy", "embed"}}  # fmt: skip

    def only(keep):
        kept, new_starts = [], [0]
        for k in range(len(starts) - 1):
            i = starts[k]
            while i < starts[k + 1]:
                n = _C.engine_op_lengths[code[i]]
                if names[code[i]] in keep:
                    kept += code[i : i + n]
                i += n
            new_starts.append(len(kept))
        return _C.StepEngine(buffers, kept, new_starts, views, batch, logits, model.n_classes)

    engines = {"full step + sampling": full} | {name: only(keep) for name, keep in kinds.items()}
    tokens = torch.full((steps, batch), 128, dtype=torch.int64)
    token = torch.full((batch,), 128, dtype=torch.int64)
    uniforms, samples = torch.rand(steps, batch, dtype=torch.float64), torch.empty(steps, batch, dtype=torch.int64)
    best = dict.fromkeys(engines, math.inf)
    for _ in range(rounds):
        for name, e in engines.items():
            start = time.perf_counter()
            if e is full:
                e.run(0, steps, token, tokens, uniforms, samples, None)
            else:
                e.run(0, steps, token, tokens, None, None, None)
            best[name] = min(best[name], (time.perf_counter() - start) / steps * 1e6)
    return best


if __name__ == "__main__":  # python -m ssmkit.benchmarks.sashimi [threads]: the step breakdown
    import sys

    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    _C.set_num_threads(threads)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = SaShiMi_eval(l_max=8000, backend="compiled")
    for batch in (1, 16):
        times = breakdown(batch, model, steps=256 if batch == 1 else 32)
        parts = ", ".join(f"{name} {t:.0f}" for name, t in times.items())
        print(f"batch {batch}, {threads} thread(s), us per step (min of 7): {parts}")
