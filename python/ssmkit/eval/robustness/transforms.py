"""Transformations: seeded, composable, label-preserving changes of a batch of sequences.

A batch is a tensor ``x`` of shape (batch, length) or (batch, length, channels): time is
dimension 1, as everywhere in ssmkit. ``lengths`` (batch,) gives the valid length of each
row when the batch is padded (None: every row is valid over its full length); padding
stays zero and nothing of a row's signal leaks into it.

Randomness is drawn per example from a generator seeded by (seed, the example's index),
so an example gets the same draw whatever batch it lands in. ``index`` defaults to the
row positions 0..batch-1.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np
import torch

from ...data.audio import mu_law_decode, mu_law_encode, resample

__all__ = [
    "Transformation",
    "compose",
    "identity",
    "white_noise",
    "gain",
    "time_shift",
    "speed",
    "clipping",
    "mu_law",
    "segment_mask",
    "valid_mask",
]


def valid_mask(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Boolean mask shaped to broadcast against x: True on each row's valid samples."""
    batch, length = x.shape[0], x.shape[1]
    if lengths is None:
        mask = torch.ones(batch, length, dtype=torch.bool, device=x.device)
    else:
        mask = torch.arange(length, device=x.device) < lengths.to(x.device)[:, None]
    return mask.reshape(batch, length, *([1] * (x.dim() - 2)))


class RowGenerators:
    """One torch.Generator per row, seeded by (seed, index[row]); built on first use."""

    def __init__(self, seed: int, index: torch.Tensor):
        self.seed, self.index = seed, index
        self._generators: dict[int, torch.Generator] = {}

    def __getitem__(self, row: int) -> torch.Generator:
        if row not in self._generators:
            state = np.random.SeedSequence([self.seed, int(self.index[row])]).generate_state(2, dtype=np.uint32)
            self._generators[row] = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        return self._generators[row]


def _check_batch(x, lengths, index):
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or not x.is_floating_point():
        got = f"a {x.dim()}-d {x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x: expected a floating-point tensor of shape (batch, length[, channels]), got {got}")
    batch, length = x.shape[0], x.shape[1]
    if lengths is not None:
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        if lengths.shape != (batch,) or (lengths < 0).any() or (lengths > length).any():
            raise ValueError(
                f"lengths: expected {batch} valid lengths in [0, {length}], got {lengths.tolist()}"
            )
    if index is None:
        index = torch.arange(batch)
    else:
        index = torch.as_tensor(index, dtype=torch.long)
        if index.shape != (batch,):
            raise ValueError(f"index: expected one example index per row ({batch}), got shape {tuple(index.shape)}")
    return lengths, index


class Transformation:
    """A named, seeded, label-preserving change of a batch of sequences.

    ``fn(x, lengths, rng) -> (x, lengths)`` does the work on a batch: ``lengths`` is
    None or the valid length of each row, ``rng[row]`` a torch.Generator for that row.
    It must not modify ``x`` in place. Built-ins: :func:`white_noise`, :func:`gain`,
    :func:`time_shift`, :func:`speed`, :func:`clipping`, :func:`mu_law`,
    :func:`segment_mask`; :func:`compose` chains them.
    """

    category = "transformation"

    def __init__(self, name: str, fn: Callable, *, seed: int = 0):
        if not callable(fn):
            raise TypeError(f"fn: expected a callable fn(x, lengths, rng) -> (x, lengths), got {type(fn).__name__}")
        self.name, self.fn, self.seed = name, fn, int(seed)

    def apply(self, x: torch.Tensor, lengths=None, index=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The transformed batch and its valid lengths (None stays None unless lengths change)."""
        lengths, index = _check_batch(x, lengths, index)
        out, out_lengths = self.fn(x, lengths, RowGenerators(self.seed, index))
        if out.shape[:2] != x.shape[:2]:
            raise RuntimeError(f"transformation {self.name!r} changed the batch shape {tuple(x.shape)} to {tuple(out.shape)}")
        return out, out_lengths

    def __call__(self, x: torch.Tensor, lengths=None, index=None) -> torch.Tensor:
        """The transformed batch (see :meth:`apply` for the new valid lengths)."""
        return self.apply(x, lengths, index)[0]

    def slices(self, context) -> list:
        from .slices import Slice

        return [Slice(self.name, "transformation", lineage=(context.name, f"transformation {self.name}"), transformation=self)]

    def __repr__(self) -> str:
        return f"Transformation({self.name!r}, seed={self.seed})"


def compose(*transformations: Transformation, name: str | None = None) -> Transformation:
    """Apply the transformations in order; each draws from its own seed."""
    for i, t in enumerate(transformations):
        if not isinstance(t, Transformation):
            raise TypeError(f"transformations[{i}]: expected a Transformation, got {type(t).__name__}")

    def fn(x, lengths, rng):
        for t in transformations:
            x, lengths = t.apply(x, lengths, rng.index)
        return x, lengths

    return Transformation(name or " + ".join(t.name for t in transformations), fn)


def identity() -> Transformation:
    """Leaves every batch as it is (a control slice: its metrics equal the clean ones)."""
    return Transformation("identity", lambda x, lengths, rng: (x, lengths))


def _row_power(x, mask):
    """Mean square of each row over its valid samples (all channels)."""
    count = mask.expand_as(x).flatten(1).sum(1).clamp_min(1)
    return (x.square() * mask).flatten(1).sum(1) / count


def _per_row(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (x.dim() - 1)))


def white_noise(snr_db: float, *, seed: int = 0) -> Transformation:
    """Additive white Gaussian noise at ``snr_db`` dB below each example's own power.

    The drawn noise is rescaled to the exact target power over the valid samples, so the
    SNR of every example is snr_db up to rounding (silent examples stay unchanged).
    """
    snr_db = float(snr_db)

    def fn(x, lengths, rng):
        mask = valid_mask(x, lengths)
        noise = torch.stack([torch.randn(x.shape[1:], generator=rng[row], dtype=torch.float64) for row in range(len(x))])
        noise = noise.to(x.device) * mask
        target = _row_power(x.double(), mask) * 10 ** (-snr_db / 10)
        scale = (target / _row_power(noise, mask).clamp_min(1e-300)).sqrt()
        return x + (noise * _per_row(scale, x)).to(x.dtype), lengths

    return Transformation(f"noise {snr_db:g} dB SNR", fn, seed=seed)


def gain(db: float) -> Transformation:
    """Scale the amplitude by ``db`` decibels (20 log10 of the factor)."""
    factor = 10 ** (float(db) / 20)
    return Transformation(f"gain {float(db):+g} dB", lambda x, lengths, rng: (x * factor, lengths))


def time_shift(shift: int | float) -> Transformation:
    """Delay (shift > 0) or advance (shift < 0) each example, filling with zeros.

    An int is a number of samples; a float in (-1, 1) a fraction of each example's valid
    length. Samples pushed past the valid end (or the start) are dropped.
    """
    if isinstance(shift, float) and not -1 < shift < 1:
        raise ValueError(f"shift: a float shift is a fraction of the length in (-1, 1), got {shift}")

    def fn(x, lengths, rng):
        length = x.shape[1]
        valid = lengths if lengths is not None else torch.full((len(x),), length)
        out = torch.zeros_like(x)
        for row, n in enumerate(valid.tolist()):
            s = round(shift * n) if isinstance(shift, float) else int(shift)
            if s >= 0:
                out[row, s:n] = x[row, : max(n - s, 0)]
            else:
                out[row, : max(n + s, 0)] = x[row, -s:n]
        return out, lengths

    label = f"{shift:+.0%}" if isinstance(shift, float) else f"{shift:+d} samples"
    return Transformation(f"shift {label}", fn)


def speed(factor: float) -> Transformation:
    """Play each example ``factor`` times faster: polyphase resampling by 1/factor
    (``ssmkit.data.audio.resample``; the factor is taken as a fraction p/q with q <= 100),
    so pitch moves too. A row of valid length n becomes about n / factor samples, cut to
    the batch's length when longer; the tensor keeps its shape and the valid lengths follow.
    """
    if not float(factor) > 0:
        raise ValueError(f"factor: expected a positive speed factor, got {factor}")
    ratio = Fraction(float(factor)).limit_denominator(100)

    def fn(x, lengths, rng):
        length = x.shape[1]
        valid = lengths if lengths is not None else torch.full((len(x),), length)
        out = torch.zeros_like(x)
        new_lengths = torch.empty_like(valid)
        for row, n in enumerate(valid.tolist()):
            resampled = resample(x[row, :n], ratio.numerator, ratio.denominator) if n else x[row, :0]
            keep = min(len(resampled), length)
            out[row, :keep] = resampled[:keep]
            new_lengths[row] = keep
        # A full-length batch stays "all valid" only if every row still fills it.
        if lengths is None and bool((new_lengths == length).all()):
            return out, None
        return out, new_lengths

    return Transformation(f"speed x{float(ratio):g}", fn)


def clipping(ratio: float) -> Transformation:
    """Clip each example at ``ratio`` (in (0, 1]) times its own peak amplitude."""
    ratio = float(ratio)
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio: expected a fraction of the peak in (0, 1], got {ratio}")

    def fn(x, lengths, rng):
        peak = (x.abs() * valid_mask(x, lengths)).flatten(1).amax(1)
        level = _per_row(peak * ratio, x)
        return torch.minimum(torch.maximum(x, -level), level), lengths

    return Transformation(f"clip {ratio:.0%} of peak", fn)


def mu_law(bits: int = 8) -> Transformation:
    """Mu-law companding to 2**bits levels and back (inputs are clamped to [-1, 1])."""
    mu_law_encode(torch.zeros(1), bits)  # checks bits

    def fn(x, lengths, rng):
        return (mu_law_decode(mu_law_encode(x, bits), bits) * valid_mask(x, lengths)).to(x.dtype), lengths

    return Transformation(f"mu-law {bits} bit", fn)


def segment_mask(fraction: float, *, segments: int = 1, seed: int = 0) -> Transformation:
    """Zero ``segments`` random stretches, each ``fraction / segments`` of the valid length."""
    fraction = float(fraction)
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction: expected a fraction of the length in [0, 1], got {fraction}")
    if not isinstance(segments, int) or segments < 1:
        raise ValueError(f"segments: expected a positive whole number, got {segments!r}")

    def fn(x, lengths, rng):
        length = x.shape[1]
        valid = lengths if lengths is not None else torch.full((len(x),), length)
        out = x.clone()
        for row, n in enumerate(valid.tolist()):
            width = round(fraction * n / segments)
            starts = torch.randint(0, n - width + 1, (segments,), generator=rng[row]) if width else []
            for start in starts:
                out[row, int(start) : int(start) + width] = 0
        return out, lengths

    return Transformation(f"mask {fraction:.0%}" + (f" in {segments}" if segments > 1 else ""), fn, seed=seed)
