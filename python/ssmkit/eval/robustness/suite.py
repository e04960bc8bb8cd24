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


class _Subset:
    """Items ``indices`` of a dataset, with their metadata."""

    def __init__(self, dataset, indices):
        from .slices import metadata_rows

        self.dataset, self.indices = dataset, list(indices)
        rows = metadata_rows(dataset)
        self.metadata = [rows[i] for i in self.indices]

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[self.indices[i]]


def evaluate_checkpoint(
    checkpoint,
    data,
    out=None,
    *,
    split: str = "test",
    limit: int | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
    **suite_options,
):
    """Run :func:`audio_suite` on a trained waveform classifier (an ``ssmkit train classify
    --task fsdd`` checkpoint) over the WAV folder ``data`` (the FSDD layout: ``split`` is
    its conventional train/test split, or "all"), cropped and masked as in training;
    metadata ``fields`` that the folder lacks (no speakers.json: no accent) are left out.
    ``limit`` evaluates a seeded random subset of that many examples. Writes report.json,
    report.html and report.png into ``out`` when given; returns the Report."""
    from pathlib import Path

    import torch

    from ...data.audio import WavFolder
    from ...models.checkpoint import load_classifier
    from .bench import TestBench

    model = load_classifier(checkpoint, device=device)
    inputs = model.model_config.get("input", {})
    if "sample_rate" not in inputs:
        raise ValueError(
            f"checkpoint: {checkpoint} holds a {model.model_config.get('task')!r} classifier; the audio suite "
            "needs a waveform classifier (ssmkit train classify --task fsdd)"
        )
    # As the training run's test set: longer clips center-cropped, shorter ones kept as they
    # are and batched with a mask of their valid samples.
    dataset: WavFolder | _Subset = WavFolder(data, inputs["sample_rate"], inputs["length"], split=split, crop="center", pad="none")
    name, whole = f"{Path(data).name} {split}", len(dataset)
    if limit is not None and limit < len(dataset):
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
        dataset = _Subset(dataset, sorted(order[:limit].tolist()))
    fields = [f for f in suite_options.pop("fields", ("speaker", "accent")) if all(f in row for row in dataset.metadata)]
    bench = TestBench(
        model,
        dataset,
        audio_suite(fields=fields, seed=seed, **suite_options),
        name=name,
        batch_size=batch_size,
        device=device,
        pass_mask=True,
        progress=progress,
    )
    report = bench.run()
    report.info |= {"checkpoint": str(checkpoint), "split_size": whole}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        report.to_json(out / "report.json")
        report.to_html(out / "report.html")
        report.figure(out / "report.png")
    return report
