"""SaShiMi generation on the compiled step engine (``_C.StepEngine``, see ssmkit.h).

:class:`Recorder` is an executor of the one definition of the step
(:func:`ssmkit.models.sashimi_step.step`) that writes each operation as primitive
instructions (embedding, layer norm, linear, layer norm and linear in one, GELU, GLU,
add, copy, S4 step) over float32 arrays. Which stages step and which pooling slot is used
depend only on the phase ``t mod prod(pool)``, so :class:`Engine` records one
straight-line program per phase and runs many steps per call in C++, with no Python
per sample, sampling each token from uniforms drawn in torch. The recurrent state is
the model's own :class:`~ssmkit.models.sashimi_step.SaShiMiState`, updated in place, so
``prime``, the engine and ``step`` interoperate. In the program of the step where every
stage steps, the centre stage and its up-pooling form a section (the same instructions,
marked) that a second thread may run while the first goes on with the next samples.

Covers float32 CPU models whose S4 layers run on the compiled kernels with the GELU or
identity activation; :func:`supported` says whether a model qualifies.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import nn

from .. import _C
from ..engine import Program, huge_page_copies, pack_linear
from ..nn import S4
from ..nn.backend import COMPILED, primitives
from . import sashimi_step
from .sashimi_step import SaShiMiState


def supported(model) -> bool:
    """True when the engine can run this model (CPU, float32, compiled S4 kernels,
    GELU or identity activations, affine layer norms)."""
    if model.decoder.weight.dtype != torch.float32 or model.decoder.weight.device.type != "cpu":
        return False
    for blocks, _ in model.stages():
        for block in blocks:
            if block.norm.weight is None or block.norm.bias is None:
                return False
            layer = block.layer
            if isinstance(layer, S4):
                if primitives(layer.backend, layer.log_dt.device) is not COMPILED:
                    return False
                if not isinstance(layer.activation, (nn.GELU, nn.Identity)) or getattr(layer.activation, "approximate", "none") != "none":
                    return False
    return model.norm.weight is not None


class Rows(NamedTuple):
    """A recorded value: the view of its rows and its width in floats."""

    view: int
    width: int


class Recorder:
    """The executor of :func:`~ssmkit.models.sashimi_step.step` that appends instructions
    to one :class:`~ssmkit.engine.Program`: values live in work arrays (scratch rows,
    updated in place) and in the state's own arrays."""

    def __init__(self, batch: int):
        self.p = Program(batch)
        self.weights: dict[int, tuple[int, int]] = {}  # id(linear) -> (Wt view, bias view), transposed once
        self.steps: dict[int, tuple] = {}  # id(S4 layer) -> its step tensors, asked once for all programs
        self.tag = None  # set while writing the section: its work arrays are its own
        self.span = None  # (first, end) code offsets of the section of the last program

    def program(self, model, state: SaShiMiState, t: int):
        """Records the step that makes the full-rate step count t: (logits view, section span or None)."""
        self.span = None
        logits = sashimi_step.step(model, state, t, self)
        return logits.view, self.span

    @contextmanager
    def section(self):
        begin, self.tag = len(self.p.code), "section"
        yield
        self.span, self.tag = (begin, len(self.p.code)), None

    def work(self, name, width: int) -> Rows:
        return Rows(self.p.scratch(name if self.tag is None else (self.tag, name), width), width)

    def rows(self, t: torch.Tensor, slot=None) -> Rows:
        if slot is None:
            return Rows(self.p.rows(t), t[0].numel())
        return Rows(self.p.rows(t, slot * t.shape[-1]), t.shape[-1])

    def _weights(self, lin: nn.Linear):
        if id(lin) not in self.weights:
            self.weights[id(lin)] = (self.p.param(pack_linear(lin.weight)), self.p.param(lin.bias))
        return self.weights[id(lin)]

    def embed(self, encoder: nn.Embedding, out: Rows) -> Rows:
        self.p.emit("embed", out=out.view, table=self.p.param(encoder.weight), width=out.width, vocab=encoder.num_embeddings)
        return out

    def layer_norm(self, norm: nn.LayerNorm, x: Rows, out: Rows) -> Rows:
        p = self.p
        p.emit("layer_norm", x=x.view, out=out.view, weight=p.param(norm.weight), bias=p.param(norm.bias), width=out.width, eps=norm.eps)
        return out

    def linear(self, lin: nn.Linear, x: Rows, out: Rows) -> Rows:
        Wt, bias = self._weights(lin)
        self.p.emit("linear", x=x.view, out=out.view, Wt=Wt, bias=bias, n_in=lin.in_features, n_out=lin.out_features)
        return out

    def norm_linear(self, norm: nn.LayerNorm, lin: nn.Linear, x: Rows, out: Rows) -> Rows:
        """lin(norm(x)) as one instruction (split over threads, it needs no barrier inside)."""
        p = self.p
        Wt, bias = self._weights(lin)
        p.emit("norm_linear", x=x.view, out=out.view, Wt=Wt, bias=bias, n_in=lin.in_features, n_out=lin.out_features,
               norm_weight=p.param(norm.weight), norm_bias=p.param(norm.bias), eps=norm.eps)  # fmt: skip
        return out

    def add(self, a: Rows, b: Rows, out: Rows) -> Rows:
        self.p.emit("add", a=a.view, b=b.view, out=out.view, width=out.width)
        return out

    def copy(self, x: Rows, out: Rows) -> Rows:
        self.p.emit("copy", x=x.view, out=out.view, width=out.width)
        return out

    def gelu(self, x: Rows) -> Rows:
        """GELU in place."""
        self.p.emit("gelu", x=x.view, width=x.width)
        return x

    def s4_step(self, layer: S4, state: torch.Tensor, u: Rows):
        """The S4 step, the activation (GELU in place), the output linear and GLU; the
        state is written in place."""
        p, width = self.p, u.width
        y = self.work("y", width)
        if id(layer) not in self.steps:
            self.steps[id(layer)] = layer.step_tensors(COMPILED)
        tensors = self.steps[id(layer)]
        N = layer.d_state // 2
        if layer.mode == "diag":
            dA, dB, C = tensors
            p.emit("diag_step", state=p.rows(state), u=u.view, y=y.view, dA=p.param(dA), dB=p.param(dB), dC=p.param(C), D=p.param(layer.D), H=width, N=N)
        else:
            f, C = tensors
            p.emit("dplr_step", state=p.rows(state), u=u.view, y=y.view, a=p.param(f.dA), b=p.param(f.dB), Pd=p.param(f.Pd),
                   Q=p.param(f.Q), C=p.param(C), D=p.param(layer.D), H=width, N=N, r=f.Pd.shape[1])  # fmt: skip
        if isinstance(layer.activation, nn.GELU):
            self.gelu(y)
        v = self.linear(layer.output_linear, y, self.work("v", 2 * width))
        g = self.work("g", width)
        p.emit("glu", x=v.view, out=g.view, width=width)
        return g, state

    def feed_forward(self, norm: nn.LayerNorm, layer, x: Rows) -> Rows:
        """(norm and) linear, GELU in place, linear."""
        first, second = layer.net[0], layer.net[3]
        a = self.gelu(self.norm_linear(norm, first, x, self.work("a", first.out_features)))
        return self.linear(second, a, self.work("g", x.width))


class Engine:
    """The compiled step engine for one model and one state (updated in place).

    Build once per generation (the model's parameters are read then); :meth:`run`
    steps chunks of tokens. When something else replaced arrays of the state in
    between (``SaShiMi.step`` returns new S4 states), the next run rebinds to them.
    """

    def __init__(self, model, state: SaShiMiState):
        self.model, self.state = model, state
        self.batch: int = state.batch  # type: ignore[assignment] # None only for a state that holds no array
        self.cycle, self.n_classes = math.prod(model.pool), model.n_classes
        self._bind()

    def _bind(self):
        self.state.make_contiguous()
        e = Recorder(self.batch)
        starts, sections = [0], []
        for phase in range(self.cycle):  # program k runs when state.t % cycle == k
            logits, section = e.program(self.model, self.state, phase + 1)
            starts.append(len(e.p.code))
            sections += section or (-1, -1)
        views = [list(v) for v in e.p.views]
        # the parameters, read by every step, on huge pages (the state keeps its own arrays)
        buffers = list(e.p.buffers)
        params = sorted(e.p.params)
        for i, copy in zip(params, huge_page_copies([buffers[i] for i in params])):
            buffers[i] = copy
        self._engine = _C.StepEngine(buffers, e.p.code, starts, views, self.batch, logits, self.n_classes, sections)
        self.program = (e.p.code, starts, views, buffers, logits)  # for inspection (benchmarks.sashimi.breakdown)
        self._keep = buffers  # the arrays the engine points into
        self._bound = _identities(self.state)
        self.instructions = len(e.p.code)

    def run(self, steps: int, token=None, tokens_in=None, uniforms=None, temperature=1.0, top_p=1.0, logits=False):
        """Step `steps` times from the state; returns (samples (steps, batch) or None,
        logits (steps, batch, n_classes) or None). token: (batch,) int64, the first
        input when not teacher forced; updated to the last sample. tokens_in: (steps,
        batch) int64, teacher forcing. uniforms: (steps, batch) float64 in [0, 1), one
        draw per token (None: no sampling)."""
        if _identities(self.state) != self._bound:
            self._bind()
        B = self.batch
        if token is None:
            token = torch.zeros(B, dtype=torch.int64)
        samples = torch.empty(steps, B, dtype=torch.int64) if uniforms is not None else None
        out = torch.empty(steps, B, self.n_classes) if logits else None
        bad = self._engine.run(self.state.t % self.cycle, steps, token, tokens_in, uniforms, samples, out, float(temperature), float(top_p))
        if bad >= 0:
            self.state.t += bad
            raise FloatingPointError(f"generation: the logits at step {self.state.t} are not finite (NaN or Inf); nothing to sample")
        self.state.t += steps
        return samples, out


def _identities(state: SaShiMiState):
    """The identity of every array of a state (the engine's pointers)."""
    return [(s.data_ptr(), s.shape) for s in state.arrays()]
