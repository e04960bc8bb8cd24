"""``ssmkit generate``: sample audio from a trained SaShiMi (torch loads when it runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .command import Command, set_threads
from .types import existing, positive, unit_interval


def arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=existing("file"), metavar="C", help="SaShiMi checkpoint (best.pt or last.pt)")
    source.add_argument(
        "--unigram", action="store_true",
        help="no model: independent 8 kHz mu-law codes drawn from the histogram of the FSDD training clips' real audio (the lower reference of eval samples)",
    )  # fmt: skip
    p.add_argument("--data", type=existing("folder"), metavar="FSDD", help="with --unigram: FSDD folder (default: $SSMKIT_FSDD or ../shared/data/fsdd)")
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
    generator = torch.Generator(args.device).manual_seed(args.seed)
    began, chunks = time.time(), []
    if args.unigram:
        from ..data import fsdd_root
        from ..data.audio import WavFolder
        from ..eval.nll import MuLawClips, unigram_counts

        rate = 8000
        length = round(args.seconds * rate)
        counts = unigram_counts(MuLawClips(WavFolder(args.data or fsdd_root(), rate, split="train", pad="none", channel_dim=False)))
        codes = torch.multinomial(counts.to(args.device), args.n * length, replacement=True, generator=generator)
        chunks.append(codes.reshape(args.n, length))
        title = "unigram samples (FSDD training histogram)"
    else:
        model = load_sashimi(args.checkpoint, args.device)
        rate = model.sample_rate
        length = round(args.seconds * rate)
        for start in range(0, args.n, args.batch_size):
            n = min(args.batch_size, args.n - start)
            chunks.append(model.generate(n, length, args.temperature, args.top_p, generator=generator, progress=args.progress))
        title = f"SaShiMi samples ({args.checkpoint.name}, T={args.temperature:g}, top-p={args.top_p:g})"
    seconds = time.time() - began
    waves = mu_law_decode(torch.cat(chunks)).cpu().numpy()
    paths = write_samples(waves, rate, args.out)
    plot_samples(waves, rate, args.out / "samples.png", title)
    print(
        f"wrote {len(paths)} samples of {length} samples ({args.seconds:g} s at {rate} Hz) and samples.png "
        f"to {args.out} in {seconds:.1f} s ({args.n * length / seconds:,.0f} samples/s)"
    )
    return 0


COMMAND = Command(
    help="generate audio with a trained SaShiMi",
    description="Sample audio from a SaShiMi checkpoint (ssmkit train sashimi) in recurrent mode, or (--unigram) "
    "from the FSDD training audio's code histogram. Writes sample_000.wav ... and samples.png (waveforms and "
    "spectrograms) into --out.",
    arguments=arguments,
    run=run,
)
