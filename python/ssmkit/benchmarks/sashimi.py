"""Benchmark cases of SaShiMi generation: samples per second of the recurrent mode.

One call steps one full cycle of the pooling rates (prod(pool) samples per stream, so
every stage steps), at batch 1 and 16. ssmkit: ``generate``'s step plans on the
compiled step kernels; baseline: the same model stepped with ``backend="reference"``
(dense (2N x 2N) DPLR steps in PyTorch). The default model in full runs, a small one
in quick runs.
"""

from __future__ import annotations

import copy
import math

import torch

from . import Case, Impl

UNIT = "k samples/s"
SCALE = 1e6  # run() reports work / seconds / 1e9: work in millionths of a sample gives k samples/s


def _stepper(model, batch, fast):
    state = model.default_state(batch)
    token = torch.full((batch,), 128, dtype=torch.int64)
    plan = model._step_blocks(fast)
    cycle = math.prod(model.pool)

    def run():
        nonlocal state
        for _ in range(cycle):
            logits, state = model.step(token, state, plan=plan)
        return logits

    run()  # builds the step caches (the dense DPLR power for C) outside the timing
    return run, cycle * batch * SCALE


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
        fn, work = _stepper(model, batch, fast=True)
        ref_fn, ref_work = _stepper(reference, batch, fast=False)
        out.append(Case("sashimi", "generate (recurrent steps)", f"{shape} batch={batch}", UNIT, {
            "ssmkit": Impl(fn, work),
            "reference": Impl(ref_fn, ref_work),
        }, note=f"torch threads: {torch.get_num_threads()}"))  # fmt: skip
    return out


def SaShiMi_eval(**kwargs):
    from ..models import SaShiMi

    return SaShiMi(**kwargs).eval()
