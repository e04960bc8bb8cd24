"""Discretization and recurrent stepping of diagonal SSMs (S4D; S4's step mode).

- ``discretize(dt, A, B, method=...)`` -> (dA, dB): ZOH or bilinear; differentiable.
- ``ssm_step(state, u, dA, dB, dC, D)`` -> (y, state'): one step; inference only.
- ``ssm_scan(u, dA, dB, dC, D, state)`` -> (y, final state): the step over a sequence;
  differentiable in every tensor input (the backward is a reverse scan).

Shapes: dA, dB, dC complex (H, N) with conjugate-pair storage (N stored values stand
for 2N, so y = 2 Re(sum_n dC_n x_n) + D u); dt, D real (H,); state complex
(batch, H, N); u, y real, (batch, H) per step or (batch, L, H) per sequence. Real
arrays are float32 with complex64 and float64 with complex128. Torch tensors go
through torch custom ops (usable under torch.compile); NumPy arrays give NumPy
results (forward only). Meanings: :mod:`ssmkit.ops.reference`.
"""

from __future__ import annotations

from .. import _C
from ._common import Array, torch
from ._spec import COMPLEX, NEEDS, REAL, Choice, Op, Tensor

__all__ = ["discretize", "ssm_step", "ssm_scan"]  # what ssmkit.ops exports

_METHOD = Choice("method", ("zoh", "bilinear"))
_DT, _A, _B = Tensor("dt", REAL, "H"), Tensor("A", COMPLEX, "H N"), Tensor("B", COMPLEX, "H N")
_dA, _dB, _dC = Tensor("dA", COMPLEX, "H N"), Tensor("dB", COMPLEX, "H N"), Tensor("dC", COMPLEX, "H N")
_D = Tensor("D", REAL, "H", optional=True)
_U_SEQ, _STATE = Tensor("u", REAL, "batch L H"), Tensor("state", COMPLEX, "batch H N")

DISCRETIZE = Op(
    "discretize", _C.discretize, [_DT, _A, _B, _METHOD], [Tensor("dA", COMPLEX, "H N"), Tensor("dB", COMPLEX, "H N")],
    contiguous=True,
)  # fmt: skip

DISCRETIZE_BACKWARD = Op(
    "discretize_backward", _C.discretize_backward,
    [_DT, _A, _B, Tensor("gdA", COMPLEX, "H N", optional=True), Tensor("gdB", COMPLEX, "H N", optional=True), _METHOD],
    [Tensor("gdt", REAL, "H"), Tensor("gA", COMPLEX, "H N"), Tensor("gB", COMPLEX, "H N")],
    contiguous=True,
)  # fmt: skip

SSM_STEP = Op(
    "ssm_step", _C.ssm_step,
    [_STATE, Tensor("u", REAL, "batch H"), _dA, _dB, _dC, _D],
    [Tensor("y", REAL, "batch H"), Tensor("new_state", COMPLEX, "batch H N")],
    ref="dA", contiguous=True, out="new_state", in_place="state", train="ssmkit.ops.ssm_scan", direct=True,
)  # fmt: skip

SSM_SCAN = Op(
    "ssm_scan", _C.ssm_scan,
    [_U_SEQ, _dA, _dB, _dC, _D, Tensor("state", COMPLEX, "batch H N", optional=True)],
    [Tensor("y", REAL, "batch L H"), Tensor("final_state", COMPLEX, "batch H N")],
    ref="dA", contiguous=True,
)  # fmt: skip

# Per batch element gradients of the channel parameters (summed by the caller); those
# not needed are empty.
SSM_SCAN_BACKWARD = Op(
    "ssm_scan_backward", _C.ssm_scan_backward,
    [_U_SEQ, _dA, _dB, _dC, _D, Tensor("state", COMPLEX, "batch H N", optional=True), Tensor("gy", REAL, "batch L H"),
     Tensor("gstate", COMPLEX, "batch H N", optional=True), NEEDS],
    [Tensor("gu", REAL, "batch L H"), Tensor("gdA", COMPLEX, "batch H N"), Tensor("gdB", COMPLEX, "batch H N"),
     Tensor("gdC", COMPLEX, "batch H N"), Tensor("gD", REAL, "batch H"), Tensor("gstate0", COMPLEX, "batch H N")],
    ref="dA", contiguous=True,
)  # fmt: skip


def discretize(dt: Array, A: Array, B: Array, *, method: str = "zoh") -> tuple[Array, Array]:
    """Discretize the diagonal system (A, B) with per-channel step dt; returns (dA, dB).

    zoh: ``dA = exp(dt A)``, ``dB = (exp(dt A) - 1)/A * B``, with the exact limit ``dt B`` as
    ``A -> 0`` (the small ``|dt A|`` range is summed as a series, so there is no cancellation).
    bilinear: ``dA = (1 + dt A/2)/(1 - dt A/2)``, ``dB = dt B/(1 - dt A/2)``.
    dt: real (H,), positive and finite (on the CPU, anything else raises); A, B: complex
    (H, N). Differentiable in dt, A and B.
    """
    return DISCRETIZE(dt, A, B, method)


def ssm_step(
    state: Array, u: Array, dA: Array, dB: Array, dC: Array, D: Array | None = None, *, out: Array | None = None
) -> tuple[Array, Array]:
    """One step of the diagonal SSM: state' = dA * state + dB * u, y = 2 Re(sum_n dC state') + D u.

    state: complex (batch, H, N); u: real (batch, H). Returns (y (batch, H), state').
    ``out``: where state' is written; ``out=state`` updates the state in place (the
    usual generation loop: ``y, _ = ssm_step(x, u, ..., out=x)``), which is safe since
    each element is read before it is written. Inference only: backpropagating
    through it raises (train with :func:`ssm_scan`).
    """
    return SSM_STEP(state, u, dA, dB, dC, D, out=out)


def ssm_scan(
    u: Array, dA: Array, dB: Array, dC: Array, D: Array | None = None, state: Array | None = None
) -> tuple[Array, Array]:
    """The diagonal SSM over a sequence: u (batch, L, H) -> (y (batch, L, H), final state).

    Equal to L calls of :func:`ssm_step` from ``state`` (zero when None). Differentiable
    in u, dA, dB, dC, D and state; the backward is a reverse scan that recomputes the
    states from checkpoints every 64 steps, storing (batch, H, N) per checkpoint and no
    (batch, L, H, N) array.
    """
    return SSM_SCAN(u, dA, dB, dC, D, state)


if torch is not None:

    def _discretize_backward(ctx, gdA, gdB):
        dt, A, B = ctx.saved_tensors
        gdt, gA, gB = torch.ops.ssmkit.discretize_backward(dt, A, B, gdA, gdB, ctx.method)
        n = ctx.needs_input_grad
        return gdt if n[0] else None, gA if n[1] else None, gB if n[2] else None, None

    def _scan_backward(ctx, gy, gstate):
        u, dA, dB, dC, D, state = ctx.saved_tensors
        n = ctx.needs_input_grad
        # gu, gdA, gdB, gdC, gD, gstate0
        needs = [n[0], n[1], n[2], n[3], D is not None and n[4], state is not None and n[5]]
        if not any(needs):
            return (None,) * 6
        if gy is None:
            gy = torch.zeros_like(u)
        gu, gA, gB, gC, gD, gs = torch.ops.ssmkit.ssm_scan_backward(u, dA, dB, dC, D, state, gy, gstate, needs)
        return (
            gu if needs[0] else None,
            gA.sum(0) if needs[1] else None,
            gB.sum(0) if needs[2] else None,
            gC.sum(0) if needs[3] else None,
            gD.sum(0) if needs[4] else None,
            gs if needs[5] else None,
        )

    DISCRETIZE.register(_discretize_backward)
    DISCRETIZE_BACKWARD.register()
    SSM_STEP.register()
    SSM_SCAN.register(_scan_backward)
    SSM_SCAN_BACKWARD.register()
