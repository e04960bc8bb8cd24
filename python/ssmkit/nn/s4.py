"""The S4 and S4D layer: an SSM convolution per channel, skip D, activation, output GLU.

Input and output are (batch, length, d_model). Three ways to run the same layer:

- convolution (``layer(x)``): the SSM kernel (DPLR via Cauchy + Woodbury + inverse FFT,
  or diagonal via Vandermonde) convolved with the input (``ops.fft_conv``); training.
- with a state (``layer(x, state=s)``): the output from start state s and the state
  after the sequence, for chunked processing of long inputs; differentiable (S4D: the
  fused ``ops.ssm_scan``; S4: the convolution plus the start state's response, and the
  end state from one more Cauchy product and dense (2N x 2N) powers dA^L).
- step by step (``layer.step(x_t, s)``): one time step through the fused step kernels;
  generation. Inference only (the step kernels have no backward).

All three compute the same function. Return convention, as ``nn.LSTM``: ``forward``
returns ``(y, next_state)``, where ``next_state`` is the state after the sequence when a
``state`` was given and ``None`` otherwise (the plain convolution computes no state);
``step`` returns ``(y_t, next_state)``. States are complex (batch, d_model, d_state/2),
from :meth:`S4.default_state`.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import hippo
from ..ops.reference import dplr_dense_power
from .._validate import S4_ACTIVATIONS, positive_int, s4_options
from .backend import check_backend, primitives
from .ssm_kernel import diag_kernel, dplr_kernel, dplr_state_sum, full

ACTIVATIONS = dict(zip(S4_ACTIVATIONS, (nn.GELU, nn.ReLU, nn.SiLU, nn.Tanh, nn.Identity)))


class S4(nn.Module):
    r"""S4 (``mode="dplr"``) or S4D (``mode="diag"``) layer on (batch, length, d_model).

    Args:
        d_model: channels H; each has its own SSM.
        d_state: state size of the real SSM (even); N = d_state/2 complex values are
            stored, one per conjugate pair.
        mode: ``"dplr"``: S4, A = diag(Lambda) - P P^* (rank 1, Q = conj P tied),
            bilinear discretization. ``"diag"``: S4D, A = diag(Lambda).
        init: ``"legs"`` (HiPPO-LegS; the only DPLR init: its NPLR form; for diag the
            diagonal of its normal part), ``"lin"`` or ``"inv"`` (diag only).
        dt_min, dt_max: the step sizes dt are log-uniform in [dt_min, dt_max].
        bidirectional: a second, anti-causal kernel is added (no state or step mode).
        dropout: dropout after the activation.
        activation: ``"gelu"``, ``"relu"``, ``"silu"``, ``"tanh"`` or ``"identity"``.
        backend: ``"auto"`` (compiled kernels where the device has them, else the
            reference with one warning), ``"compiled"`` or ``"reference"`` (pure PyTorch).
        discretization: diag only, ``"zoh"`` (default) or ``"bilinear"``; DPLR is bilinear.
        l_max: DPLR only. As in S4 the layer learns C~ = C (I - dA^l_max) for kernels
            of length l_max; shorter inputs use a truncated kernel (exact). ``None``:
            set by the first forward. A longer input doubles l_max (C~ is rewritten in
            place for the same C, under no_grad). Under DDP give l_max (>= the longest
            input) so that every process keeps the same parameters.
        b_clip: init="legs" only: clip Im(B) of the HiPPO-LegS B (in the eigenbasis) to
            [-b_clip, b_clip]. None (default) keeps the exact B; the state-spaces/s4
            reference clips with 2 by default.
        c_init: DPLR only. ``"tilde"`` (default): the random complex normal draw is C~
            itself. ``"c"`` (the reference's choice): the draw is C, and C~ = C (I - dA^L)
            is set when the kernel length L is first fixed (l_max, or the first forward).

    Re(Lambda) = -exp(Lambda_real_log) < 0 and P is tied, so A + A^* is negative
    definite: every recurrence is stable. Parameters ``log_dt``, ``Lambda_real_log``,
    ``Lambda_imag``, ``B`` (and ``P``) are the SSM parameters that
    :func:`ssmkit.nn.param_groups` trains with their own learning rate; ``C``
    (c, H, N, 2) and ``D`` (H,) train as usual. Complex parameters are stored as
    real (..., 2) tensors (torch.view_as_complex).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        mode: str = "dplr",
        init: str = "legs",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        activation: str = "gelu",
        backend: str = "auto",
        discretization: Optional[str] = None,
        l_max: Optional[int] = None,
        b_clip: Optional[float] = None,
        c_init: str = "tilde",
    ):
        super().__init__()
        H = positive_int("d_model", d_model)
        discretization = s4_options(d_state, mode, init, dt_min, dt_max, dropout, activation, discretization)
        if l_max is not None:
            positive_int("l_max", l_max)
        if c_init not in ("tilde", "c") or (c_init == "c" and mode != "dplr"):
            raise ValueError(f'c_init: expected "tilde" (or "c" with mode="dplr"), got {c_init!r} with mode={mode!r}')
        self.d_model, self.d_state, self.mode, self.init = H, d_state, mode, init
        self.bidirectional, self.backend = bool(bidirectional), check_backend(backend)
        self.discretization, self.b_clip, self.c_init = discretization, b_clip, c_init
        self.l_kernel: Optional[int] = None  # the length C~ belongs to (DPLR): l_max, or the first forward's

        N, c = d_state // 2, 2 if bidirectional else 1
        real = torch.get_default_dtype()
        if mode == "dplr":
            Lambda, P, B = map(torch.from_numpy, hippo.legs_nplr(d_state, b_clip))
            self.P = nn.Parameter(torch.view_as_real(P.expand(H, 1, N)).to(real).clone())
        else:
            if b_clip is not None and init != "legs":
                raise ValueError(f'b_clip: clips the HiPPO-LegS B of init="legs", got init={init!r}')
            Lambda, B = map(torch.from_numpy, hippo.diag_init(init, d_state, b_clip))
        log_dt = torch.rand(H, dtype=torch.float64) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt.to(real))
        self.Lambda_real_log = nn.Parameter(torch.log(-Lambda.real).expand(H, N).to(real).clone())
        self.Lambda_imag = nn.Parameter(Lambda.imag.expand(H, N).to(real).clone())
        self.B = nn.Parameter(torch.view_as_real(B.expand(H, N)).to(real).clone())
        self.C = nn.Parameter(torch.view_as_real(torch.randn(c, H, N, dtype=torch.complex128)).to(real))
        self.D = nn.Parameter(torch.randn(H, dtype=real))
        if l_max is not None and mode == "dplr":
            self._kernel_length(l_max)

        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.output_linear = nn.Linear(H, 2 * H)  # followed by a GLU back to H
        self._step_cache = None  # (key, tensors); see step_tensors

    # ---- parameters -------------------------------------------------------------

    def ssm_parameters(self) -> list[nn.Parameter]:
        """The parameters of A, B and dt (and P): smaller learning rate, no weight decay."""
        names = ["log_dt", "Lambda_real_log", "Lambda_imag", "B"] + (["P"] if self.mode == "dplr" else [])
        return [getattr(self, n) for n in names]

    def _ssm(self):
        """dt (H,), Lambda (H, N), P (H, 1, N) or None, B (H, N), C (c, H, N) as complex views."""
        dt = torch.exp(self.log_dt)
        Lambda = torch.complex(-torch.exp(self.Lambda_real_log), self.Lambda_imag)
        P = torch.view_as_complex(self.P) if self.mode == "dplr" else None
        return dt, Lambda, P, torch.view_as_complex(self.B), torch.view_as_complex(self.C)

    def get_extra_state(self):
        return {"l_kernel": self.l_kernel}

    def set_extra_state(self, state):
        self.l_kernel = state["l_kernel"]

    def extra_repr(self) -> str:
        s = f"d_model={self.d_model}, d_state={self.d_state}, mode={self.mode!r}, init={self.init!r}"
        s += f", discretization={self.discretization!r}, backend={self.backend!r}"
        if self.mode == "dplr":
            s += f", l_kernel={self.l_kernel}"
        return s + (", bidirectional=True" if self.bidirectional else "")

    # ---- SSM kernels ------------------------------------------------------------

    def _kernel_length(self, L: int) -> int:
        """The DPLR kernel length for an input of length L (>= L); doubles C~'s length if needed."""
        if self.l_kernel is None:
            self.l_kernel = L
            if self.c_init == "c":
                self._times_one_plus_power(-1.0, L)  # the draw was C: C~ = C (I - dA^L)
        while self.l_kernel < L:
            self._double_kernel_length()
        return self.l_kernel

    def _double_kernel_length(self):
        # C~_2L = C (I - dA^2L) = C~_L (I + dA^L): the same C, a kernel twice as long.
        assert self.l_kernel is not None  # set by _kernel_length before any doubling
        self._times_one_plus_power(1.0, self.l_kernel)
        self.l_kernel *= 2

    @torch.no_grad()
    def _times_one_plus_power(self, sign: float, L: int):
        """C <- C (I + sign dA^L) in place (in float64 over the full 2N states)."""
        dt, Lambda, P, _, C = self._ssm()
        assert P is not None  # only DPLR layers have a kernel length
        Lambda, P, C = (t.to(torch.complex128) for t in (Lambda, P, C))
        power = dplr_dense_power(dt.double(), Lambda, P, L)
        eye = torch.eye(power.shape[-1], dtype=power.dtype)
        C2 = torch.einsum("chi,hij->chj", full(C), eye + sign * power)[..., : C.shape[-1]]
        self.C.copy_(torch.view_as_real(C2).to(self.C.dtype))

    def kernel(self, L: int) -> torch.Tensor:
        """The convolution kernel K_l = C dA^l dB for l < L: real (c, d_model, L)."""
        L = positive_int("L", L)
        prims = primitives(self.backend, self.log_dt.device)
        dt, Lambda, P, B, C = self._ssm()
        if self.mode == "diag":
            return diag_kernel(prims, dt, Lambda, B, C, L, self.discretization)
        return dplr_kernel(prims, dt, Lambda, P, B, C, self._kernel_length(L))[..., :L]

    # ---- forward ----------------------------------------------------------------

    def _check_input(self, x, shape: str, dims: int):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor of shape {shape}, got {type(x).__name__}")
        if x.dim() != dims or x.shape[-1] != self.d_model:
            raise ValueError(f"x: expected shape {shape} with d_model = {self.d_model}, got {tuple(x.shape)}")
        if x.dtype != self.log_dt.dtype:
            raise TypeError(f"x: expected {str(self.log_dt.dtype)[6:]} like the layer's parameters, got {str(x.dtype)[6:]}")
        if x.device != self.log_dt.device:
            raise ValueError(f"x: expected a tensor on {self.log_dt.device} like the layer, got one on {x.device}")

    def _check_state(self, state, batch: int):
        if self.bidirectional:
            raise ValueError("state: a bidirectional layer has no state (it sees the future); use bidirectional=False")
        shape = (batch, self.d_model, self.d_state // 2)
        complex_dtype = self.log_dt.dtype.to_complex()
        if not isinstance(state, torch.Tensor) or tuple(state.shape) != shape or state.dtype != complex_dtype:
            got = f"{tuple(state.shape)} {str(state.dtype)[6:]}" if isinstance(state, torch.Tensor) else type(state).__name__
            raise ValueError(f"state: expected a {str(complex_dtype)[6:]} tensor of shape {shape} "
                             f"(see default_state), got {got}")  # fmt: skip

    def _output(self, y):
        """activation, dropout, output linear + GLU on (..., H)."""
        return F.glu(self.output_linear(self.dropout(self.activation(y))), dim=-1)

    def _convolve(self, prims, x, K):
        """The causal (or, with two kernels, bidirectional) convolution of x (batch, L, H)
        with K (c, H, L), plus the skip D x: D is the causal kernel's lag 0 (one
        convolution; D's gradient is that lag's)."""
        K = K.clone()
        K[0, :, 0] += self.D
        return prims.fft_conv(x, K)

    def forward(self, x: torch.Tensor, state: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """x (batch, L, d_model) -> (y (batch, L, d_model), next_state or None)."""
        self._check_input(x, "(batch, length, d_model)", 3)
        batch, L, _ = x.shape
        if L == 0:
            return self._output(x), state
        if state is None:
            y = self._convolve(primitives(self.backend, x.device), x, self.kernel(L))
            return self._output(y), None
        self._check_state(state, batch)
        if self.mode == "diag":
            prims = primitives(self.backend, x.device)
            dt, Lambda, _, B, C = self._ssm()
            dA, dB = prims.discretize(dt, Lambda, B, self.discretization)
            y, next_state = prims.ssm_scan(x, dA, dB, C[0], self.D, state)
            return self._output(y), next_state
        y, next_state = self._dplr_with_state(x, state)
        return self._output(y), next_state

    def _dplr_with_state(self, x, state):
        """DPLR from a start state: convolution + the state's response, and the end state.

        The start state x0 adds y0_l = C dA^(l+1) x0, the kernel formula with B replaced by
        B' = (I + dt/2 A) x0 / dt (since (I - dA z)^{-1} dA = 2/(1+z) (g - A)^{-1} (I + dt/2 A) / dt)
        and C~ taken for length L. The end state is dA^L x0 + (I - dA^L) S with S from
        :func:`~ssmkit.nn.ssm_kernel.dplr_state_sum`. Dense (2N x 2N) matrices appear only
        for dA^L, in double precision (the end state's two terms nearly cancel when dA^L is
        near I); the (L, N) trajectory is never formed.
        """
        prims = primitives(self.backend, x.device)
        L = x.shape[1]
        dt, Lambda, P, B, C = self._ssm()
        lk = self._kernel_length(L)
        y = self._convolve(prims, x, dplr_kernel(prims, dt, Lambda, P, B, C, lk)[..., :L])
        dt64 = dt.double()
        Lambda64, P64 = Lambda.to(torch.complex128), P.to(torch.complex128)
        power = dplr_dense_power(dt64, Lambda64, P64, L)
        eye = torch.eye(power.shape[-1], dtype=power.dtype, device=power.device)
        if L == lk:
            C_L = C[0]
        else:  # C~ for length L: C (I - dA^L) with C = C~_lk (I - dA^lk)^{-1}
            C_true = full(prims.untruncated_C(dt64, Lambda64, P64, C[0].to(torch.complex128), lk))
            C_L = torch.einsum("hi,hij->hj", C_true, eye - power)[..., : C.shape[-1]].to(C.dtype)
        s = 2 * (P.conj() * state.unsqueeze(-2)).sum(-1).real  # P^* x0 over the full state: (batch, H, r)
        B_start = state / dt.unsqueeze(-1) + (Lambda * state - (P * s.unsqueeze(-1)).sum(-2)) / 2
        y = y + dplr_kernel(prims, dt, Lambda, P, B_start, C_L.unsqueeze(0), L)[..., 0, :, :].transpose(-1, -2)
        S = dplr_state_sum(prims, dt, Lambda, P, B, x.transpose(-1, -2))
        start, S = full(state).to(power.dtype), full(S).to(power.dtype)
        end = torch.einsum("hij,bhj->bhi", power, start) + torch.einsum("hij,bhj->bhi", eye - power, S)
        return y, end[..., : state.shape[-1]].to(state.dtype)

    # ---- step mode --------------------------------------------------------------

    def default_state(self, batch: int, device=None) -> torch.Tensor:
        """The zero state, complex (batch, d_model, d_state/2), on the layer's device."""
        positive_int("batch", batch)
        if self.bidirectional:
            raise ValueError("a bidirectional layer has no state (it sees the future); use bidirectional=False")
        dtype = self.log_dt.dtype.to_complex()
        return torch.zeros(batch, self.d_model, self.d_state // 2, dtype=dtype, device=device or self.log_dt.device)

    def _step_key(self):
        params = [self.log_dt, self.Lambda_real_log, self.Lambda_imag, self.B, self.C] + (
            [self.P] if self.mode == "dplr" else []
        )
        return (self.l_kernel, self.backend, tuple((p._version, p.data_ptr(), p.dtype, p.device) for p in params))

    @torch.no_grad()
    def step_tensors(self, prims):
        """What one step needs on the primitives `prims` (diag: (dA, dB, C); DPLR: (the
        ``dplr_setup`` factors, C)), cached; rebuilt whenever a parameter changed (in place
        or replaced)."""
        key = self._step_key() + (prims.name,)
        if self._step_cache is not None and self._step_cache[0] == key:
            return self._step_cache[1]
        dt, Lambda, P, B, C = self._ssm()
        if self.mode == "diag":
            tensors = prims.discretize(dt, Lambda, B, self.discretization) + (C[0].clone(),)
        else:
            if self.l_kernel is None:
                raise RuntimeError(
                    "S4.step: the DPLR layer's C belongs to a kernel length that is not set yet; "
                    "give l_max when building the layer or run forward once"
                )
            # the step needs C itself, C = C~ (I - dA^l_kernel)^{-1}, found in double precision
            Lambda64, P64, C64 = (t.to(torch.complex128) for t in (Lambda, P, C[0]))
            C_step = prims.untruncated_C(dt.double(), Lambda64, P64, C64, self.l_kernel)
            tensors = (prims.dplr_setup(dt, Lambda, P, B), C_step.to(C.dtype))
        self._step_cache = (key, tensors)
        return tensors

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: x (batch, d_model), state -> (y (batch, d_model), next_state).

        Equal to ``forward`` on a sequence, one element at a time. Inference only.
        """
        self._check_input(x, "(batch, d_model)", 2)
        self._check_state(state, x.shape[0])
        prims = primitives(self.backend, x.device)
        tensors = self.step_tensors(prims)
        if self.mode == "diag":
            dA, dB, C = tensors
            y, next_state = prims.ssm_step(state, x, dA, dB, C, self.D)
        else:
            factors, C = tensors
            y, next_state = prims.dplr_step(state, x, factors, C, self.D)
        return self._output(y), next_state
