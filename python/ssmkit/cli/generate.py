"""``ssmkit generate``: sample audio from a trained SaShiMi (torch loads when it runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .command import Command, set_threads
from .types import existing, positive, unit_interval


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, type=existing("file"), metavar="C", help="SaShiMi checkpoint (best.pt or last.pt)")
    p.add_argument("--n", type=positive(int), default=8, help="number of samples (default 8)")
    p.add_argument("--seconds", type=positive(float), default=1.0, help="length of each sample (default 1)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the WAVs and samples.png")
    p.add_argument("--batch-size", type=positive(int), default=16, help="streams generated together (default 16)")
    p.add_argument("--temperature", type=positive(float), default=1.0)
    p.add_argument("--top-p", type=unit_interval, default=1.0, help="nucleus sampling mass (default 1: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive(int), metavar="N", help="CPU threads for torch and ssmkit")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import time

    import torch

    from ..data.audio import mu_law_decode
    from ..eval.samples import plot_samples, write_samples
    from ..models.checkpoint import load_sashimi

    set_threads(args.threads)
    model = load_sashimi(args.checkpoint, args.device)
    length = round(args.seconds * model.sample_rate)
    generator = torch.Generator(args.device).manual_seed(args.seed)
    began, chunks = time.time(), []
    for start in range(0, args.n, args.batch_size):
        n = min(args.batch_size, args.n - start)
        chunks.append(model.generate(n, length, args.temperature, args.top_p, generator=generator, progress=args.progress))
    seconds = time.time() - began
    waves = mu_law_decode(torch.cat(chunks)).cpu().numpy()
    paths = write_samples(waves, model.sample_rate, args.out)
    plot_samples(waves, model.sample_rate, args.out / "samples.png", f"SaShiMi samples ({args.checkpoint.name}, T={args.temperature:g}, top-p={args.top_p:g})")
    print(
        f"wrote {len(paths)} samples of {length} samples ({args.seconds:g} s at {model.sample_rate} Hz) and samples.png "
        f"to {args.out} in {seconds:.1f} s ({args.n * length / seconds:,.0f} samples/s)"
    )
    return 0


COMMAND = Command(
    help="generate audio with a trained SaShiMi",
    description="Sample audio from a SaShiMi checkpoint (ssmkit train sashimi) in recurrent mode. Writes "
    "sample_000.wav ... and samples.png (waveforms and spectrograms) into --out.",
    arguments=arguments,
    run=run,
)
