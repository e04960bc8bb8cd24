"""The Python side of the compiled step engine (``_C.StepEngine``, csrc/cpu/engine/):
a builder of straight-line programs over float32 arrays, and the parameter layouts the
instructions read. What a model computes per step is written elsewhere
(:mod:`ssmkit.models.sashimi_engine` records SaShiMi's step into a :class:`Program`).
"""

from __future__ import annotations

import mmap
import struct

import torch

from . import _C

LINEAR_BLOCK = 32  # output columns per packed weight block (kLinearBlock in csrc/cpu/engine/vector_math.h)

# The instruction set, from its one definition (csrc/include/ssmkit/engine_isa.h):
# {name: (opcode, ((operand, role), ...))}, operands in the order the engine reads them
# after the opcode. Views ("rows_*", "param*" roles) are indices into Program.views
# (-1: none, for "param_opt"); "f64" operands are floats stored as a double's bits;
# the rest are integers.
INSTRUCTIONS = _C.engine_instructions()
OPS = {op: opcode for op, (opcode, _) in INSTRUCTIONS.items()}
OPERANDS = {op: tuple(name for name, _ in operands) for op, (_, operands) in INSTRUCTIONS.items()}
ROLES = {op: dict(operands) for op, (_, operands) in INSTRUCTIONS.items()}


class Program:
    """Arrays (float32, registered once), views into them and the instruction list."""

    def __init__(self, batch: int):
        self.batch = batch
        self.buffers: list[torch.Tensor] = []
        self._buffer_ids: dict[tuple[int, int], int] = {}
        self.views: list[tuple[int, int, int]] = []
        self._view_ids: dict[tuple[int, int, int], int] = {}
        self.code: list[int] = []
        self._scratch: dict[tuple, int] = {}
        self.params: set[int] = set()  # indices of the buffers that hold parameters (read only)
        self._param_views: dict[int, tuple[torch.Tensor, int]] = {}  # id(t) -> (t, view): each program reads them again

    def _buffer(self, t: torch.Tensor) -> int:
        assert t.dtype == torch.float32 and t.is_contiguous(), (t.dtype, t.stride())
        key = (t.data_ptr(), t.numel())
        if key not in self._buffer_ids:
            self._buffer_ids[key] = len(self.buffers)
            self.buffers.append(t)
        return self._buffer_ids[key]

    def _view(self, t: torch.Tensor, offset: int, stride: int) -> int:
        key = (self._buffer(t), offset, stride)
        if key not in self._view_ids:
            self._view_ids[key] = len(self.views)
            self.views.append(key)
        return self._view_ids[key]

    def param(self, t) -> int:
        """A parameter: the same floats for every row (complex tensors as (re, im) pairs)."""
        if t is None:
            return -1
        known = self._param_views.get(id(t))
        if known is not None and known[0] is t:
            return known[1]
        source = t
        t = t.detach()
        t = torch.view_as_real(t.resolve_conj()) if t.is_complex() else t
        view = self._view(t.contiguous(), 0, 0)
        self.params.add(self.views[view][0])
        self._param_views[id(source)] = (source, view)
        return view

    def rows(self, t: torch.Tensor, offset: int = 0) -> int:
        """Per-row view of a (batch, ...) tensor: row b starts at t[b] + offset floats."""
        t = torch.view_as_real(t) if t.is_complex() else t
        return self._view(t, offset, t[0].numel())

    def scratch(self, name, width: int) -> int:
        """A (batch, width) work array, shared by every instruction that asks for `name`."""
        key = (name, width)
        if key not in self._scratch:
            self._scratch[key] = self.rows(torch.zeros(self.batch, width))
        return self._scratch[key]

    def emit(self, op: str, **operands):
        """Appends one instruction, its operands by name (OPERANDS[op])."""
        if op not in OPERANDS:
            raise ValueError(f"emit({op!r}): unknown instruction; expected one of {tuple(OPERANDS)}")
        names, roles = OPERANDS[op], ROLES[op]
        if set(operands) != set(names):
            missing, unknown = [n for n in names if n not in operands], [n for n in operands if n not in names]
            raise TypeError(f"emit({op!r}): expected operands {names}; missing {missing}, unknown {unknown}")
        words = [eps_bits(operands[n]) if roles[n] == "f64" else int(operands[n]) for n in names]
        self.code += [OPS[op], *words]


def pack_linear(weight: torch.Tensor) -> torch.Tensor:
    """A linear layer's weight (n_out, n_in) as the linear instruction reads it: W^T in
    column blocks of LINEAR_BLOCK outputs, each (n_in, block width) contiguous
    (csrc/include/ssmkit/engine_isa.h, linear)."""
    Wt = weight.detach().t()
    n_in, n_out = Wt.shape
    whole = n_out // LINEAR_BLOCK * LINEAR_BLOCK  # the whole blocks in one copy, then the narrower last one
    blocks = Wt[:, :whole].reshape(n_in, -1, LINEAR_BLOCK).transpose(0, 1).reshape(-1)
    return torch.cat([blocks, Wt[:, whole:].reshape(-1)])


def huge_page_copies(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Copies of float32 tensors in one anonymous mapping that the OS is asked to back
    with transparent huge pages (Linux; elsewhere, or when that fails, the tensors
    themselves). A generation step streams up to ~30 MB of weights: with 4 KiB pages
    that is ~7,000 pages, several times what the TLB covers, so pages keep costing
    table walks; 2 MiB pages make it ~15 (measured: 6-11% less time per sample at batch 1)."""
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is None or not tensors:
        return list(tensors)
    line, huge = 16, 2 << 20  # each copy starts a cache line (16 floats); the mapping's alignment
    offsets, total = [], 0
    for t in tensors:
        offsets.append(total)
        total += -(-t.numel() // line) * line
    try:
        region = mmap.mmap(-1, 4 * total + huge, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        region.madvise(advice)
    except (OSError, ValueError):
        return list(tensors)
    raw = torch.frombuffer(region, dtype=torch.uint8)  # keeps the mapping alive
    start = -raw.data_ptr() % huge
    arena = raw[start : start + 4 * total].view(torch.float32)
    return [arena[o : o + t.numel()].view(t.shape).copy_(t) for o, t in zip(offsets, tensors)]


def eps_bits(eps: float) -> int:
    return struct.unpack("<q", struct.pack("<d", float(eps)))[0]
