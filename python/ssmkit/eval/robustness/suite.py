"""The default robustness suite for audio classifiers (``ssmkit eval robustness``)."""

from __future__ import annotations

from collections.abc import Sequence

from .attacks import Attack
from .slices import length_bins, metadata_field, rms_bins
from .transforms import clipping, gain, mu_law, segment_mask, speed, time_shift, white_noise

__all__ = ["audio_suite"]


def audio_suite(
    *,
    fields: Sequence[str] = ("speaker", "accent"),
    duration_field: str | None = "duration",
    snrs_db: Sequence[float] = (30, 20, 10, 0),
    gains_db: Sequence[float] = (-20, 6),
    shift: float = 0.1,
    extra_transforms: bool = True,
    pgd_eps: Sequence[float] = (0.001, 0.003, 0.01),
    pgd_norm: str = "linf",
    pgd_steps: int = 10,
    bounds: tuple[float, float] | None = (-1.0, 1.0),
    seed: int = 0,
) -> list:
    """Slice builders for waveform classifiers with inputs in [-1, 1]:

    - subpopulations: one per value of each metadata field in ``fields``; quartiles of
      duration (metadata ``duration_field``, or the input length when None) and of
      loudness (RMS);
    - transformations: white noise at each SNR in ``snrs_db``, each gain in ``gains_db``,
      a delay of ``shift`` of the length and, with ``extra_transforms``, speed x0.9 and
      x1.1, clipping at 25% of the peak, 8-bit mu-law and 10% masked;
    - attacks: PGD with each budget of ``pgd_eps`` (absolute amplitude, under ``pgd_norm``).
    """
    builders: list = [metadata_field(f) for f in fields]
    builders += [length_bins(field=duration_field, name="duration"), rms_bins()]
    builders += [white_noise(snr, seed=seed) for snr in snrs_db]
    builders += [gain(db) for db in gains_db]
    builders.append(time_shift(float(shift)))
    if extra_transforms:
        builders += [speed(0.9), speed(1.1), clipping(0.25), mu_law(8), segment_mask(0.1, seed=seed)]
    builders += [Attack("pgd", eps, norm=pgd_norm, steps=pgd_steps, bounds=bounds, seed=seed) for eps in pgd_eps]
    return builders
