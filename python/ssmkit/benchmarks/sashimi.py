"""Benchmark cases of SaShiMi generation: samples per second of the recurrent mode.

At batch 1 and 16. ssmkit: ``generate``'s path, the compiled step engine
(models/sashimi_engine.py), one call = one chunk of 256 samples per stream, sampled
(top_p 0.95) in the loop. Baselines, one call = one full cycle of the pooling rates
(prod(pool) samples per stream, so every stage steps): "step", the per-token
``SaShiMi.step`` on the compiled kernels (no sampling), and "reference", the same model
stepped with ``backend="reference"`` (dense (2N x 2N) DPLR steps in PyTorch). The
default model in full runs, a small one in quick runs.
"""

from __future__ import annotations

import copy
import math

import torch

from .. import _C
from . import Case, Impl

UNIT = "k samples/s"
SCALE = 1e6  # run() reports work / seconds / 1e9: work in millionths of a sample gives k samples/s


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


def _engine(model, batch):
    from ..models.sashimi_engine import Engine

    engine = Engine(model, model.default_state(batch))  # built (step caches included) outside the timing
    token = torch.full((batch,), 128, dtype=torch.int64)
    uniforms = torch.rand(CHUNK, batch, dtype=torch.float64)

    def run():
        return engine.run(CHUNK, token=token, uniforms=uniforms, top_p=0.95)

    return run, CHUNK * batch * SCALE


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
        fn, work = _engine(model, batch)
        step_fn, step_work = _stepper(model, batch)
        ref_fn, ref_work = _stepper(reference, batch)
        out.append(Case("sashimi", "generate (recurrent steps)", f"{shape} batch={batch}", UNIT, {
            "ssmkit": Impl(fn, work),
            "step": Impl(step_fn, step_work),
            "reference": Impl(ref_fn, ref_work),
        }, note=f"torch threads: {torch.get_num_threads()}, ssmkit threads: {_C.get_num_threads()}"))  # fmt: skip
    return out


def SaShiMi_eval(**kwargs):
    from ..models import SaShiMi

    return SaShiMi(**kwargs).eval()
