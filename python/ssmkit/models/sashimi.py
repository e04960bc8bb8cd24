"""SaShiMi (Goel, Gu, Donahue, Re 2022): a multi-scale S4 model of raw audio.

Tokens are 8-bit mu-law codes (see :mod:`ssmkit.data.audio`). The model reads the codes
``x_0 .. x_{L-1}`` and its logits at step t predict ``x_{t+1}``; sequences start with
:data:`START` (the code of silence), so an input ``[START, s_0, .., s_{L-2}]`` predicts
the samples ``s_0 .. s_{L-1}`` and generation starts from the same token.

Stages run at rates 1, 1/p_1, 1/(p_1 p_2), ...; each holds ``n_layers`` residual S4
blocks (and as many feed-forward blocks when ``ff > 0``), pre-norm. Between stages:

- down-pooling: p consecutive steps are concatenated (reshape) and mapped to ``expand``
  times the channels by a linear layer;
- up-pooling: a linear layer maps each coarse step to p fine steps (reshape), shifted
  one coarse step to the right (zeros first) so that the fine steps of a block see only
  coarse steps of earlier, finished blocks: the model stays causal;
- U-Net skips: with ``unet=True`` each up-path layer adds the output of its mirror on
  the down path; otherwise only the value that entered a down-pooling comes back after
  the matching up-pooling.

Three ways to run the same function: ``forward(tokens)`` (convolutions; training),
``prime(tokens)`` (the same, plus the recurrent state after the sequence: each S4 layer's
state-returning forward, i.e. ``ops.ssm_scan`` for S4D) and ``step(token, state)``
(recurrent; every stage steps at its own rate through ``S4.step``, i.e.
``ops.ssm_step`` / ``ops.dplr_step``; the step is written once, in
:mod:`ssmkit.models.sashimi_step`, with the state :class:`SaShiMiState`). ``generate``
samples after ``prime`` has read the prefix (:mod:`ssmkit.models.generate`), on the
compiled step engine (the same step recorded as instructions, whole chunks of steps in
C++) or with ``step``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import positive_int
from ..nn import S4
from . import sashimi_step
from .generate import sample
from .sashimi_step import SaShiMiState

START = 128  # the 8-bit mu-law code of 0.0 (silence)


class FeedForward(nn.Module):
    """Linear to ``ff`` times the channels, GELU, dropout, linear back. No state."""

    def __init__(self, d_model: int, ff: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, ff * d_model), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff * d_model, d_model)
        )

    def forward(self, x, state=None):
        return self.net(x), None

    def step(self, x, state=None):
        return self.net(x), None

    def default_state(self, batch, device=None):
        return None


class Residual(nn.Module):
    """``x + dropout(layer(norm(x)))`` around an S4 or feed-forward layer."""

    def __init__(self, d_model: int, layer: nn.Module, dropout: float):
        super().__init__()
        self.norm, self.layer, self.dropout = nn.LayerNorm(d_model), layer, nn.Dropout(dropout)

    def forward(self, x, state=None):
        y, next_state = self.layer(self.norm(x), state)
        return x + self.dropout(y), next_state

    def default_state(self, batch, device=None):
        return self.layer.default_state(batch, device)


class DownPool(nn.Module):
    """(batch, n, H) -> (batch, n // p, expand H): p steps concatenated, then a linear map."""

    def __init__(self, d_model: int, expand: int, pool: int):
        super().__init__()
        self.pool = pool
        self.linear = nn.Linear(d_model * pool, d_model * expand)

    def forward(self, x):
        """Pooled output, and the steps of the unfinished last block zero-padded to (batch, p, H)."""
        batch, n, H = x.shape
        m = n // self.pool * self.pool
        y = self.linear(x[:, :m].reshape(batch, m // self.pool, self.pool * H))
        pending = F.pad(x[:, m:], (0, 0, 0, self.pool - (n - m)))
        return y, pending


class UpPool(nn.Module):
    """(batch, n, H) -> (batch, n_out, H / expand): a linear map to p steps, shifted one block."""

    def __init__(self, d_model: int, expand: int, pool: int):
        super().__init__()
        self.pool, self.d_out = pool, d_model // expand
        self.linear = nn.Linear(d_model, self.d_out * pool)

    def blocks(self, x):
        """The fine steps made from each coarse step: (batch, n, p, H_out)."""
        return self.linear(x).view(*x.shape[:-1], self.pool, self.d_out)

    def forward(self, x, n_out: int):
        """Fine steps 0..n_out-1 (block j comes from coarse step j-1, block 0 is zeros), and
        the whole block holding step n_out, (batch, p, H_out): what stepping continues with."""
        batch, n, _ = x.shape
        y = torch.cat([x.new_zeros(batch, 1, self.pool, self.d_out), self.blocks(x)], 1)
        y = y.reshape(batch, (n + 1) * self.pool, self.d_out)
        j = n_out // self.pool
        return y[:, :n_out], y[:, j * self.pool : (j + 1) * self.pool]


class SaShiMi(nn.Module):
    """SaShiMi on token sequences (batch, L) -> logits (batch, L, n_classes).

    Args:
        d_model: channels of the first (full-rate) stage; stage k has d_model * expand^k.
        n_layers: residual S4 blocks per stage (each followed by a feed-forward block
            when ``ff > 0``).
        pool: pooling factor of each down-pooling; ``(4, 4)`` gives stages at rates 1,
            1/4 and 1/16.
        expand: channel factor of each down-pooling.
        ff: width factor of the feed-forward blocks (0: none).
        d_state: S4 state size (even).
        n_classes: tokens (256 for 8-bit mu-law).
        unet: skip connections between every pair of mirrored layers.
        dropout: after each residual branch (and inside S4 and the feed-forward blocks).
        mode: ``"dplr"`` (S4) or ``"diag"`` (S4D).
        l_max: DPLR: the longest full-rate sequence trained on (each stage's S4 layers
            get its length at their rate); ``None`` sets it at the first forward.
        backend: the S4 layers' backend (``"auto"``, ``"compiled"``, ``"reference"``).
    """

    # Set by ssmkit.models.checkpoint.load_sashimi: what the checkpoint was trained on.
    sample_rate: int
    clip_length: int

    def __init__(
        self,
        d_model: int = 64,
        n_layers: int = 8,
        pool: Sequence[int] = (4, 4),
        expand: int = 2,
        ff: int = 2,
        d_state: int = 64,
        n_classes: int = 256,
        unet: bool = True,
        dropout: float = 0.0,
        mode: str = "dplr",
        *,
        l_max: Optional[int] = None,
        backend: str = "auto",
    ):
        super().__init__()
        positive_int("d_model", d_model)
        positive_int("n_layers", n_layers)
        positive_int("expand", expand)
        positive_int("n_classes", n_classes)
        if isinstance(ff, bool) or not isinstance(ff, int) or ff < 0:
            raise ValueError(f"ff: expected an integer >= 0 (0: no feed-forward blocks), got {ff!r}")
        pool = tuple(pool) if isinstance(pool, (list, tuple)) else pool
        if not isinstance(pool, tuple) or any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in pool):
            raise ValueError(f"pool: expected a tuple of positive integers (one per down-pooling), got {pool!r}")
        if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        if l_max is not None:
            positive_int("l_max", l_max)
        self.config = dict(
            d_model=d_model, n_layers=n_layers, pool=pool, expand=expand, ff=ff, d_state=d_state,
            n_classes=n_classes, unet=bool(unet), dropout=dropout, mode=mode, l_max=l_max, backend=backend,
        )  # fmt: skip
        self.pool, self.unet, self.n_classes = pool, bool(unet), n_classes
        self.rates = [math.prod(pool[:k]) for k in range(len(pool) + 1)]  # full-rate steps per step of stage k
        self.widths = widths = [d_model * expand**k for k in range(len(pool) + 1)]  # channels of stage k

        def stage(k):
            blocks = []
            for _ in range(n_layers):
                lk = None if l_max is None else -(-l_max // self.rates[k])
                s4 = S4(widths[k], d_state, mode=mode, dropout=dropout, backend=backend, l_max=lk)
                blocks.append(Residual(widths[k], s4, dropout))
                if ff > 0:
                    blocks.append(Residual(widths[k], FeedForward(widths[k], ff, dropout), dropout))
            return nn.ModuleList(blocks)

        P = len(pool)
        self.encoder = nn.Embedding(n_classes, d_model)
        self.down = nn.ModuleList(stage(k) for k in range(P))
        self.down_pools = nn.ModuleList(DownPool(widths[k], expand, pool[k]) for k in range(P))
        self.center = stage(P)
        self.up_pools = nn.ModuleList(UpPool(widths[k + 1], expand, pool[k]) for k in range(P))
        self.up = nn.ModuleList(stage(k) for k in range(P))
        self.norm = nn.LayerNorm(d_model)
        self.decoder = nn.Linear(d_model, n_classes)

    # ---- convolution mode -------------------------------------------------------

    def _check_tokens(self, x, dims: int, shape: str, values: bool = True):
        if not isinstance(x, torch.Tensor) or x.dim() != dims or x.dtype not in (torch.int64, torch.int32):
            got = f"{tuple(x.shape)} {str(x.dtype)[6:]}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected integer token ids of shape {shape}, got {got}")
        if values and x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.n_classes):
            raise ValueError(f"x: expected token ids in [0, {self.n_classes}), got values in [{int(x.min())}, {int(x.max())}]")

    def _stage(self, blocks, h, skips, with_state):
        """Run one stage's blocks; pushes each output onto `skips` (U-Net) and returns the states."""
        states = []
        for block in blocks:
            h, s = block(h, block.default_state(h.shape[0]) if with_state else None)
            states.append(s)
            if skips is not None:
                skips.append(h)
        return h, states

    def _run(self, x, with_state: bool):
        B = x.shape[0]
        P = len(self.pool)
        h = self.encoder(x)
        down, pending = [], []
        up: list = [None] * P  # filled from the last stage back
        upcoming: list = [None] * P
        skips, lengths = [], []
        for k in range(P):
            skips.append(h)  # the input of stage k
            lengths.append(h.shape[1])
            h, s = self._stage(self.down[k], h, skips if self.unet else None, with_state)
            if not self.unet:
                skips.append(h)  # what enters the down-pooling
            down.append(s)
            h, p = self.down_pools[k](h)
            pending.append(p)
        skip = h
        h, center = self._stage(self.center, h, None, with_state)
        h = h + skip
        for k in reversed(range(P)):
            h, upcoming[k] = self.up_pools[k](h, lengths[k])
            h = h + skips.pop()
            start, states = h, []
            for block in self.up[k]:  # type: ignore[attr-defined] # a ModuleList
                h, s = block(h, block.default_state(B) if with_state else None)
                states.append(s)
                if self.unet:
                    h = h + skips.pop()
            if not self.unet:
                h = h + start
                skips.pop()  # the stage input: only the U-Net uses it
            up[k] = states
        return self.decoder(self.norm(h)), SaShiMiState(x.shape[1], down, center, up, pending, upcoming)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: tokens (batch, L) -> logits (batch, L, n_classes); step t predicts token t+1."""
        self._check_tokens(x, 2, "(batch, length)")
        return self._run(x, with_state=False)[0]

    def prime(self, x: torch.Tensor) -> tuple[torch.Tensor, SaShiMiState]:
        """Like forward, and also the recurrent state after reading x: (logits, state).

        The S4 layers run their state-returning forward (a scan for S4D, the kernel with
        the start state's response for S4), not a step per token.
        """
        self._check_tokens(x, 2, "(batch, length)")
        return self._run(x, with_state=True)

    def nll(self, samples: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per sample in nats: codes (batch, L) -> (batch, L).

        The model reads ``[START, s_0, .., s_{L-2}]`` and is scored on ``s_0 .. s_{L-1}``.
        Divide by ln 2 for bits.
        """
        self._check_tokens(samples, 2, "(batch, length)")
        logits = self(shift_right(samples))
        return F.cross_entropy(logits.transpose(1, 2), samples, reduction="none")

    # ---- recurrent mode -----------------------------------------------------------

    def stages(self) -> list[tuple[nn.ModuleList, int]]:
        """Each stage's residual blocks and its rate (full-rate steps per step), in the
        order of the state's stages: down stages, centre, up stages."""
        P = len(self.pool)
        return [(self.down[k], self.rates[k]) for k in range(P)] + [(self.center, self.rates[P])] + [
            (self.up[k], self.rates[k]) for k in range(P)
        ]

    def default_state(self, batch: int, device=None) -> SaShiMiState:
        """The state before the first token: zero S4 states and zero pooling buffers."""
        positive_int("batch", batch)
        return SaShiMiState.zeros(self, batch, device)

    @torch.no_grad()
    def step(self, x: torch.Tensor, state: SaShiMiState) -> tuple[torch.Tensor, SaShiMiState]:
        """One token per stream: x (batch,) -> (logits (batch, n_classes), state).

        Stage k steps every ``rates[k]``-th call (:func:`ssmkit.models.sashimi_step.step`).
        ``state`` is updated in place and returned. Inference only. (The compiled engine
        of :meth:`generate` runs the same step.)
        """
        self._check_tokens(x, 1, "(batch,)", values=False)  # the embedding rejects bad ids
        SaShiMiState.check(state, self, x.shape[0])
        logits = sashimi_step.step(self, state, state.t + 1, sashimi_step.Eager(x))
        state.t += 1
        return logits, state

    def _ensure_kernel_lengths(self, length: int):
        """DPLR layers whose kernel length is unset get the one a forward of `length` would set."""
        for blocks, rate in self.stages():
            for block in blocks:
                layer = block.layer
                if isinstance(layer, S4) and layer.mode == "dplr" and layer.l_kernel is None:
                    layer.l_kernel = max(1, length // rate)

    @torch.no_grad()
    def generate(
        self,
        n: int,
        length: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        prefix: Optional[torch.Tensor] = None,
        *,
        generator: Optional[torch.Generator] = None,
        progress: bool = False,
        fast: bool = True,
    ) -> torch.Tensor:
        """Sample ``n`` streams of ``length`` new tokens: int64 (n, length).

        temperature: divides the logits (0 < temperature). top_p: nucleus sampling, the
        smallest set of tokens whose probability reaches top_p (1.0: all). prefix: codes
        (n, P) or (P,) (same for all streams) that the samples continue; read with
        :meth:`prime` in one pass, not token by token. generator: a torch.Generator for
        the draws (default: torch's global one): one uniform per token, drawn up front,
        each token taken by inverse CDF (:func:`ssmkit.models.generate.sample_logits`).
        progress: a tqdm bar over the steps. fast: run the steps on the compiled step
        engine (:mod:`ssmkit.models.sashimi_engine`) when the model qualifies (float32 on
        the CPU with compiled S4 kernels); otherwise, or with ``fast=False``, :meth:`step`.
        See :func:`ssmkit.models.generate.sample`.
        """
        positive_int("n", n)
        positive_int("length", length)
        if not (isinstance(temperature, (int, float)) and temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
        if not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
            raise ValueError(f"top_p: expected a probability in (0, 1], got {top_p!r}")
        tokens = torch.full((n, 1), START, dtype=torch.int64, device=self.decoder.weight.device)
        if prefix is not None:
            if isinstance(prefix, torch.Tensor) and prefix.dim() == 1:
                prefix = prefix.unsqueeze(0).expand(n, -1)
            self._check_tokens(prefix, 2, f"({n}, P) or (P,)")
            if prefix.shape[0] != n:
                raise ValueError(f"prefix: expected {n} rows (one per stream) or a 1-d prefix, got {tuple(prefix.shape)}")
            tokens = torch.cat([tokens, prefix.to(tokens.device, torch.int64)], 1)
        self._ensure_kernel_lengths(tokens.shape[1] + length)
        return sample(self, tokens, length, temperature, top_p, generator=generator, progress=progress, fast=fast)


def shift_right(samples: torch.Tensor) -> torch.Tensor:
    """[START, s_0, .., s_{L-2}]: the model input that predicts ``samples``."""
    return F.pad(samples[:, :-1], (1, 0), value=START)
