"""SaShiMi's recurrent step, written once: the state (:class:`SaShiMiState`) and
:func:`step`, which walks the model for one token.

:func:`step` is written against an executor, a handful of operations on row handles:
:class:`Eager` computes them with torch (``SaShiMi.step``), and the recorder of
:mod:`ssmkit.models.sashimi_engine` writes them as engine instructions, so the compiled
engine runs the same step. An executor provides

- ``work(name, width)``: a work array of the step (the recorder's scratch rows; eager: None);
- ``rows(t, slot=None)``: a state array t (batch, ...), or its pooling slot ``t[:, slot]``;
- ``section()``: a context that marks the centre stage and its up-pooling;
- ``embed(encoder, out)``, ``layer_norm(norm, x, out)``, ``linear(lin, x, out)``,
  ``norm_linear(norm, lin, x, out)`` (``lin(norm(x))``), ``add(a, b, out)``,
  ``copy(x, out)``: each returns its result (eager: a tensor; ``out`` matters only for
  state arrays, which are written in place);
- ``s4_step(layer, state, u)`` -> (y, next state) and ``feed_forward(norm, layer, x)``
  -> y: an S4 layer's step, and a feed-forward layer on norm(x).

On the recorder every result is written into ``out`` (work arrays are reused in
place), so :func:`step` never reads a value after its rows were written again.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..nn import S4


@dataclass(eq=False)
class SaShiMiState:
    """The recurrent state of a SaShiMi after ``t`` full-rate steps.

    down[k], up[k]: for each block of stage k on the down or up path, its S4 state
    (complex (batch, H_k, N)) or None (feed-forward blocks); center: the same for the
    centre stage. pending[k] (batch, pool[k], H_k): the outputs of stage k since its last
    down-pooling, one slot per step; upcoming[k] (batch, pool[k], H_k): the block of up-pooled
    steps that stage k reads, one slot per step.
    """

    t: int
    down: list[list[Optional[torch.Tensor]]]
    center: list[Optional[torch.Tensor]]
    up: list[list[Optional[torch.Tensor]]]
    pending: list[torch.Tensor]
    upcoming: list[torch.Tensor]

    @classmethod
    def zeros(cls, model, batch: int, device=None) -> "SaShiMiState":
        """Zero S4 states and zero pooling buffers: the state before the first token."""
        device = device or model.decoder.weight.device
        dtype = model.decoder.weight.dtype
        states = [[block.default_state(batch, device) for block in blocks] for blocks, _ in model.stages()]
        P = len(model.pool)

        def buffers():
            return [torch.zeros(batch, model.pool[k], model.widths[k], dtype=dtype, device=device) for k in range(P)]

        return cls(0, states[:P], states[P], states[P + 1 :], buffers(), buffers())

    def stages(self) -> list[list[Optional[torch.Tensor]]]:
        """The per-block states of each stage, in the order of ``SaShiMi.stages``."""
        return [*self.down, self.center, *self.up]

    def arrays(self) -> list[torch.Tensor]:
        """Every array of the state, in a fixed order."""
        stages: tuple[Sequence[Optional[torch.Tensor]], ...] = (*self.stages(), self.pending, self.upcoming)
        return [s for stage in stages for s in stage if s is not None]

    @property
    def batch(self) -> Optional[int]:
        """The batch size (None: the state holds no array to tell)."""
        return next((s.shape[0] for s in self.arrays()), None)

    def make_contiguous(self) -> None:
        """Replaces every array that is not contiguous by a contiguous copy (the engine
        writes the state's own arrays)."""
        lists: tuple[list, ...] = (*self.stages(), self.pending, self.upcoming)
        for arrays in lists:
            for i, s in enumerate(arrays):
                if s is not None and not s.is_contiguous():
                    arrays[i] = s.contiguous()

    @staticmethod
    def check(state, model, batch: int) -> None:
        """Raises ValueError unless `state` is a state of `model` for `batch` streams."""
        P = len(model.pool)
        ok = isinstance(state, SaShiMiState) and len(state.pending) == len(state.upcoming) == P
        ok = ok and [len(s) for s in state.stages()] == [len(blocks) for blocks, _ in model.stages()]
        if not ok or state.batch not in (None, batch):
            got = f"one of batch {state.batch}" if ok else type(state).__name__
            raise ValueError(f"state: expected the SaShiMiState of SaShiMi.default_state({batch}) or prime/step, got {got}")


def step(model, state: SaShiMiState, t: int, ex):
    """The step that makes the full-rate step count t, on executor `ex`; returns the logits.

    Stage k steps when ``rates[k]`` divides t. The down path stores each stage output in
    its pending slot and, when the next stage steps, down-pools the full block; the up
    path adds the skip to the upcoming slot, and a stage whose coarser stage just
    stepped up-pools that output into its next upcoming block. Writes the S4 states into
    `state`; the caller advances ``state.t``.
    """
    P, widths, unet = len(model.pool), model.widths, model.unet
    depth = 0  # the deepest stage that steps now
    while depth < P and t % model.rates[depth + 1] == 0:
        depth += 1
    slots = [(t // model.rates[k] - 1) % model.pool[k] for k in range(P)]
    hs = [ex.work(("h", k), widths[k]) for k in range(P + 1)]  # each stage's running value

    def push(skips, h, width):
        skips.append(ex.copy(h, out=ex.work(("skip", len(skips)), width)))

    def run_stage(blocks, states, h, width, skips=None):
        for i, block in enumerate(blocks):
            h, states[i] = _residual(ex, block, states[i], h, width)
            if skips is not None:
                push(skips, h, width)
        return h

    def enter(k):  # stage k's up-path input: its upcoming slot plus the skip
        return ex.add(ex.rows(state.upcoming[k], slots[k]), skips.pop(), out=hs[k])

    def refill(k, coarse):  # stage k's next upcoming block, from the coarser step just made
        ex.linear(model.up_pools[k].linear, coarse, out=ex.rows(state.upcoming[k]))

    def centre(h):
        c = ex.copy(h, out=ex.work("center", widths[P]))
        c = run_stage(model.center, state.center, c, widths[P])
        return ex.add(c, h, out=c)

    h = ex.embed(model.encoder, out=hs[0])
    skips: list[torch.Tensor] = []
    for k in range(min(depth + 1, P)):
        push(skips, h, widths[k])  # the stage input
        h = run_stage(model.down[k], state.down[k], h, widths[k], skips if unet else None)
        if not unet:
            push(skips, h, widths[k])  # what enters the down-pooling
        ex.copy(h, out=ex.rows(state.pending[k], slots[k]))
        if k < depth:
            h = ex.linear(model.down_pools[k].linear, ex.rows(state.pending[k]), out=hs[k + 1])
    coarse = entered = None  # coarse: this step's output of the stage below, if it stepped
    if depth == P and P == 0:
        coarse = centre(h)
    elif depth == P:
        # The up path's first read of upcoming[P - 1] goes first; then the centre and its
        # up-pooling are a run that nothing reads before the next stage P - 1 step: the
        # section one engine thread may run while another goes on (ssmkit.h,
        # EngineParams::section).
        entered = enter(P - 1)
        with ex.section():
            coarse = centre(h)
            refill(P - 1, coarse)
    for k in reversed(range(min(depth + 1, P))):
        if entered is not None and k == P - 1:
            h = entered
        else:
            h = enter(k)
            if coarse is not None:
                refill(k, coarse)
        start = None if unet else ex.copy(h, out=ex.work("start", widths[k]))
        for i, block in enumerate(model.up[k]):
            h, state.up[k][i] = _residual(ex, block, state.up[k][i], h, widths[k])
            if unet:
                h = ex.add(h, skips.pop(), out=h)
        if not unet:
            h = ex.add(h, start, out=h)
            skips.pop()  # the stage input: only the U-Net adds it
        coarse = h
    # the full-rate stage's output (the centre's with no pooling)
    return ex.norm_linear(model.norm, model.decoder, coarse, out=ex.work("logits", model.n_classes))


def _residual(ex, block, s, h, width: int):
    """``h + layer(norm(h))`` for a residual S4 or feed-forward block: (h, next state)."""
    if isinstance(block.layer, S4):
        u = ex.layer_norm(block.norm, h, out=ex.work("u", width))
        y, s = ex.s4_step(block.layer, s, u)
    else:
        y = ex.feed_forward(block.norm, block.layer, h)
    return ex.add(h, y, out=h), s


class Eager:
    """Runs :func:`step` with torch on the tokens x (batch,): every result is a new
    tensor, except that state arrays given as ``out`` are written in place."""

    def __init__(self, x: torch.Tensor):
        self.x = x

    def work(self, name, width: int):
        return None

    def rows(self, t: torch.Tensor, slot: Optional[int] = None) -> torch.Tensor:
        return t if slot is None else t[:, slot]

    def section(self):
        return nullcontext()

    def embed(self, encoder, out):
        return encoder(self.x)

    def layer_norm(self, norm, x, out):
        return norm(x)

    def linear(self, lin, x, out):
        y = lin(x.reshape(x.shape[0], -1))
        return y if out is None else out.copy_(y.view_as(out))

    def norm_linear(self, norm, lin, x, out):
        return lin(norm(x))

    def add(self, a, b, out):
        return a + b

    def copy(self, x, out):
        return x if out is None else out.copy_(x)

    def s4_step(self, layer, state, u):
        return layer.step(u, state)

    def feed_forward(self, norm, layer, x):
        return layer.step(norm(x))[0]
