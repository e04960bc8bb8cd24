"""SaShiMi generation on the compiled step engine (``_C.StepEngine``, see ssmkit.h).

The model's step logic stays here, in Python: :func:`build` walks the model exactly as
:meth:`SaShiMi.step` does and writes, for each phase ``t mod prod(pool)`` (which stages
step and which pooling slot is used depend only on that), a straight-line program of
primitive instructions (embedding, layer norm, linear, layer norm and linear in one,
GELU, GLU, add, copy, S4 step) over float32 arrays. The engine then runs many steps
per call in C++, with no Python per sample, and samples each token from uniforms drawn
in torch. The recurrent state is the model's own state dict, updated in place, so
``prime``, the engine and ``step`` interoperate. In the program of the step where every
stage steps, the centre stage and its up-pooling form a section (the same instructions,
marked) that a second thread may run while the first goes on with the next samples.

Covers float32 CPU models whose S4 layers run on the compiled kernels with the GELU or
identity activation; :func:`supported` says whether a model qualifies.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import _C
from ..engine import Program, huge_page_copies, pack_linear
from ..nn import S4
from ..nn.backend import COMPILED, kernels
from .sashimi import state_arrays, state_batch

def supported(model) -> bool:
    """True when the engine can run this model (CPU, float32, compiled S4 kernels,
    GELU or identity activations, affine layer norms)."""
    if model.decoder.weight.dtype != torch.float32 or model.decoder.weight.device.type != "cpu":
        return False
    for block in model._blocks():
        if block.norm.weight is None or block.norm.bias is None:
            return False
        layer = block.layer
        if isinstance(layer, S4):
            if kernels(layer.backend, layer.log_dt.device) is not COMPILED:
                return False
            if not isinstance(layer.activation, (nn.GELU, nn.Identity)) or getattr(layer.activation, "approximate", "none") != "none":
                return False
    return model.norm.weight is not None


class _Emitter:
    """Writes the instructions of one model; h values live in per-stage arrays updated in place."""

    def __init__(self, model, state, batch):
        self.m, self.state, self.p = model, state, Program(batch)
        self.weights = {}  # id(linear) -> (Wt view, bias view), transposed once
        self.tag = None  # set while writing the section: its work arrays are its own

    def scratch(self, name, width: int) -> int:
        return self.p.scratch(name if self.tag is None else (self.tag, name), width)

    def _weights(self, lin: nn.Linear):
        if id(lin) not in self.weights:
            self.weights[id(lin)] = (self.p.param(pack_linear(lin.weight)), self.p.param(lin.bias))
        return self.weights[id(lin)]

    def linear(self, lin: nn.Linear, x: int, out: int):
        Wt, bias = self._weights(lin)
        self.p.emit("linear", x=x, out=out, Wt=Wt, bias=bias, n_in=lin.in_features, n_out=lin.out_features)

    def layer_norm(self, norm: nn.LayerNorm, x: int, out: int, width: int):
        self.p.emit("layer_norm", x=x, out=out, weight=self.p.param(norm.weight), bias=self.p.param(norm.bias), width=width, eps=norm.eps)

    def norm_linear(self, norm: nn.LayerNorm, lin: nn.Linear, x: int, out: int):
        """lin(norm(x)) as one instruction (split over threads, it needs no barrier inside)."""
        p = self.p
        Wt, bias = self._weights(lin)
        p.emit("norm_linear", x=x, out=out, Wt=Wt, bias=bias, n_in=lin.in_features, n_out=lin.out_features,
               norm_weight=p.param(norm.weight), norm_bias=p.param(norm.bias), eps=norm.eps)

    def block(self, block, s4_state, h: int, width: int):
        """One residual block on h (in place)."""
        p, layer = self.p, block.layer
        if isinstance(layer, S4):
            u = self.scratch("u", width)
            self.layer_norm(block.norm, h, u, width)
            y = self.scratch("y", width)
            tensors = layer._step_tensors(COMPILED)
            N = layer.d_state // 2
            if layer.mode == "diag":
                dA, dB, C = tensors
                p.emit("diag_step", state=p.rows(s4_state), u=u, y=y, dA=p.param(dA), dB=p.param(dB), dC=p.param(C), D=p.param(layer.D), H=width, N=N)
            else:
                f, C = tensors
                r = f.P.shape[1]
                p.emit("dplr_step", state=p.rows(s4_state), u=u, y=y, a=p.param(f.dA), b=p.param(f.dB), P=p.param(f.P), Pd=p.param(f.Pd),
                       R=p.param(f.R), C=p.param(C), D=p.param(layer.D), H=width, N=N, r=r)
            if isinstance(layer.activation, nn.GELU):
                p.emit("gelu", x=y, width=width)
            v = self.scratch("v", 2 * width)
            self.linear(layer.output_linear, y, v)
            g = self.scratch("g", width)
            p.emit("glu", x=v, out=g, width=width)
        else:  # FeedForward: (norm and) linear, GELU, linear
            first, second = layer.net[0], layer.net[3]
            a = self.scratch("a", first.out_features)
            self.norm_linear(block.norm, first, h, a)
            p.emit("gelu", x=a, width=first.out_features)
            g = self.scratch("g", width)
            self.linear(second, a, g)
        p.emit("add", a=h, b=g, out=h, width=width)

    def stage(self, blocks, states, h, width, skips):
        for block, s in zip(blocks, states):
            self.block(block, s, h, width)
            if skips is not None:
                self.push(skips, h, width)

    def push(self, skips, h, width):
        keep = self.p.scratch(("skip", len(skips)), width)
        self.p.emit("copy", x=h, out=keep, width=width)
        skips.append(keep)

    def program(self, t: int):
        """The instructions of the step that makes the full-rate step count t (as SaShiMi.step)."""
        m, state, p = self.m, self.state, self.p
        P = len(m.pool)
        widths = [m.encoder.embedding_dim * 1]
        for k in range(P):
            widths.append(m.down_pools[k].linear.out_features)
        hs = [p.scratch(("h", k), widths[k]) for k in range(P + 1)]
        depth = 0
        while depth < P and t % m.rates[depth + 1] == 0:
            depth += 1
        p.emit("embed", out=hs[0], table=p.param(m.encoder.weight), width=widths[0], vocab=m.encoder.num_embeddings)
        skips = []
        for k in range(min(depth + 1, P)):
            self.push(skips, hs[k], widths[k])
            self.stage(m.down[k], state["down"][k], hs[k], widths[k], skips if m.unet else None)
            if not m.unet:
                self.push(skips, hs[k], widths[k])
            pending, slot = state["pending"][k], (t // m.rates[k] - 1) % m.pool[k]
            p.emit("copy", x=hs[k], out=p.rows(pending, slot * widths[k]), width=widths[k])
            if k < depth:
                self.linear(m.down_pools[k].linear, p.rows(pending), hs[k + 1])
        coarse, section = None, None
        if depth == P:
            if P > 0:
                # The up path's first read of upcoming[P - 1] (the last centre step's
                # output) goes first. Then the centre stage and its up-pooling are one run
                # of instructions that nothing reads before the next stage P - 1 step: the
                # section one thread runs on its own while another goes on (ssmkit.h,
                # EngineParams::section), with work arrays of its own.
                upcoming, slot = state["upcoming"][P - 1], (t // m.rates[P - 1] - 1) % m.pool[P - 1]
                p.emit("add", a=p.rows(upcoming, slot * widths[P - 1]), b=skips.pop(), out=hs[P - 1], width=widths[P - 1])
                begin, self.tag = len(p.code), "section"
            c = self.scratch("center", widths[P])
            p.emit("copy", x=hs[P], out=c, width=widths[P])
            self.stage(m.center, state["center"], c, widths[P], None)
            p.emit("add", a=c, b=hs[P], out=c, width=widths[P])
            coarse = c
            if P > 0:
                self.linear(m.up_pools[P - 1].linear, c, p.rows(upcoming))
                section, self.tag = (begin, len(p.code)), None
        for k in reversed(range(min(depth + 1, P))):
            if section is None or k < P - 1:  # (the section's stage had its first add above)
                upcoming, slot = state["upcoming"][k], (t // m.rates[k] - 1) % m.pool[k]
                p.emit("add", a=p.rows(upcoming, slot * widths[k]), b=skips.pop(), out=hs[k], width=widths[k])
                if coarse is not None:
                    self.linear(m.up_pools[k].linear, coarse, p.rows(upcoming))
            start = None
            if not m.unet:
                start = p.scratch("start", widths[k])
                p.emit("copy", x=hs[k], out=start, width=widths[k])
            for block, s in zip(m.up[k], state["up"][k]):
                self.block(block, s, hs[k], widths[k])
                if m.unet:
                    p.emit("add", a=hs[k], b=skips.pop(), out=hs[k], width=widths[k])
            if not m.unet:
                p.emit("add", a=hs[k], b=start, out=hs[k], width=widths[k])
                skips.pop()
            coarse = hs[k]
        logits = p.scratch("logits", m.n_classes)
        self.norm_linear(m.norm, m.decoder, coarse, logits)  # the full-rate stage's output, as in step
        return logits, section


class Engine:
    """The compiled step engine for one model and one state dict (updated in place).

    Build once per generation (the model's parameters are read then); :meth:`run`
    steps chunks of tokens. When something else replaced arrays of the state dict in
    between (``SaShiMi.step`` returns new S4 states), the next run rebinds to them.
    """

    def __init__(self, model, state: dict):
        self.model, self.state = model, state
        self.batch = state_batch(state)
        self.cycle, self.n_classes = math.prod(model.pool), model.n_classes
        self._bind()

    def _bind(self):
        _make_state_contiguous(self.state)
        e = _Emitter(self.model, self.state, self.batch)
        starts, sections = [0], []
        for phase in range(self.cycle):  # program k runs when state["t"] % cycle == k
            logits, section = e.program(phase + 1)
            starts.append(len(e.p.code))
            sections += section or (-1, -1)
        views = [list(v) for v in e.p.views]
        # the parameters, read by every step, on huge pages (the state stays the dict's own)
        buffers = list(e.p.buffers)
        params = sorted(e.p.params)
        for i, copy in zip(params, huge_page_copies([buffers[i] for i in params])):
            buffers[i] = copy
        self._engine = _C.StepEngine(buffers, e.p.code, starts, views, self.batch, logits, self.n_classes, sections)
        self.program = (e.p.code, starts, views, buffers, logits)  # for inspection (benchmarks.sashimi.breakdown)
        self._keep = buffers  # the arrays the engine points into
        self._bound = _state_arrays(self.state)
        self.instructions = len(e.p.code)

    def run(self, steps: int, token=None, tokens_in=None, uniforms=None, temperature=1.0, top_p=1.0, logits=False):
        """Step `steps` times from the state; returns (samples (steps, batch) or None,
        logits (steps, batch, n_classes) or None). token: (batch,) int64, the first
        input when not teacher forced; updated to the last sample. tokens_in: (steps,
        batch) int64, teacher forcing. uniforms: (steps, batch) float64 in [0, 1), one
        draw per token (None: no sampling)."""
        if _state_arrays(self.state) != self._bound:
            self._bind()
        B = self.batch
        if token is None:
            token = torch.zeros(B, dtype=torch.int64)
        samples = torch.empty(steps, B, dtype=torch.int64) if uniforms is not None else None
        out = torch.empty(steps, B, self.n_classes) if logits else None
        bad = self._engine.run(self.state["t"] % self.cycle, steps, token, tokens_in, uniforms, samples, out, float(temperature), float(top_p))
        if bad >= 0:
            self.state["t"] += bad
            raise FloatingPointError(f"generation: the logits at step {self.state['t']} are not finite (NaN or Inf); nothing to sample")
        self.state["t"] += steps
        return samples, out


def _state_arrays(state: dict):
    """The identity of every array of a state dict (the engine's pointers)."""
    return [(s.data_ptr(), s.shape) for s in state_arrays(state)]


def _make_state_contiguous(state: dict):
    """The engine writes the state's own arrays: make each one contiguous, in the dict."""
    for stage in (*state["down"], state["center"], *state["up"]):
        for i, s in enumerate(stage):
            if s is not None and not s.is_contiguous():
                stage[i] = s.contiguous()
    for key in ("pending", "upcoming"):
        for i, s in enumerate(state[key]):
            if not s.is_contiguous():
                state[key][i] = s.contiguous()
