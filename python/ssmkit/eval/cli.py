"""``ssmkit eval ...``: the evaluation commands (no torch import until one runs, so that
``ssmkit info`` stays fast). Each evaluation adds its own subcommand here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import samples
from .._cli_args import existing, positive


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a budget >= 0, got {text!r}")
    return value


def add_parser(commands) -> None:
    """Add the ``eval`` command group to the ``ssmkit`` subcommands."""
    eval_parser = commands.add_parser("eval", help="evaluate trained models")
    evaluations = eval_parser.add_subparsers(dest="eval_command", required=True, metavar="EVALUATION")
    samples.add_parser(evaluations)

    p = evaluations.add_parser(
        "robustness",
        help="robustness test bench of an audio classifier",
        description="Evaluate a trained waveform classifier (ssmkit train classify --task fsdd) on the default "
        "audio suite: speaker and accent subpopulations, duration and loudness quartiles, noise at 30/20/10/0 dB "
        "SNR, gain, time shift, speed, clipping, mu-law, masking and PGD at three L-inf budgets. Writes "
        "report.json, report.html and report.png into --out.",
    )
    p.add_argument("--checkpoint", required=True, type=existing("file"), metavar="C", help="classifier checkpoint (best.pt)")
    p.add_argument("--data", required=True, type=existing("folder"), metavar="DIR", help="WAV folder in the FSDD layout")
    p.add_argument("--out", required=True, type=Path, metavar="OUT", help="folder for report.json, report.html, report.png")
    p.add_argument("--split", choices=("test", "train", "all"), default="test", help="FSDD split (default: test, takes 0-4)")
    p.add_argument("--limit", type=positive(), metavar="N", help="evaluate a seeded random subset of N examples")
    p.add_argument("--batch-size", type=positive(), default=32)
    p.add_argument("--pgd-eps", type=_budget, nargs="+", default=[0.001, 0.003, 0.01], metavar="EPS", help="L-inf PGD budgets (amplitude; inputs are in [-1, 1])")
    p.add_argument("--pgd-steps", type=positive(), default=10)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=positive(), metavar="N", help="CPU threads for torch and ssmkit")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise, masks, PGD starts and --limit")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(handler=robustness_command)


def robustness_command(args: argparse.Namespace) -> int:
    import torch

    from .. import set_num_threads
    from .robustness.suite import evaluate_checkpoint

    if args.threads is not None:
        set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    report = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        args.out,
        split=args.split,
        limit=args.limit,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        progress=args.progress,
        pgd_eps=args.pgd_eps,
        pgd_steps=args.pgd_steps,
    )
    table = report.table.drop(columns="lineage")
    print(table.to_string(float_format=lambda v: f"{v:.4f}", na_rep=""))
    print(f"wrote {', '.join(str(args.out / f) for f in ('report.json', 'report.html', 'report.png'))}", file=sys.stderr)
    return 0
