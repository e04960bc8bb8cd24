"""``ssmkit eval samples`` (scores of generated audio, see :mod:`ssmkit.eval.samples`) and
``ssmkit eval robustness`` (see :mod:`ssmkit.eval.robustness`); torch loads when one runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .command import Command, set_threads
from .types import budget, existing, positive, unit_interval


def samples_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=existing("folder"), metavar="DIR", help="folder of generated WAVs")
    p.add_argument("--classifier", required=True, type=existing("file"), metavar="C", help="FSDD classifier checkpoint")
    p.add_argument("--checkpoint", type=existing("file"), metavar="M", help="SaShiMi checkpoint: also report its test-set NLL")
    p.add_argument("--data", type=existing("folder"), metavar="FSDD", help="FSDD folder (default: $SSMKIT_FSDD or ../shared/data/fsdd)")
    p.add_argument("--threshold", type=unit_interval, default=0.5, help="top-class probability counted as confident (default 0.5)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the report to FILE")
    p.add_argument("--threads", type=positive(int), metavar="N", help="CPU threads for torch and ssmkit")
    p.add_argument("--device", default="cpu")


def samples(args: argparse.Namespace) -> int:
    import torch

    from ..eval.samples import classifier_log_probs, read_samples, scores
    from ..models.checkpoint import load_classifier

    set_threads(args.threads)
    classifier = load_classifier(args.classifier, args.device)
    spec = classifier.model_config.get("input", {})
    rate, length = spec.get("sample_rate", 8000), spec.get("length", 8000)
    waves, files = read_samples(args.dir, rate, length)
    report: dict[str, object] = {"dir": str(args.dir), "classifier": str(args.classifier), "generated": scores(classifier_log_probs(classifier, waves.to(args.device)), args.threshold)}
    data_root = args.data
    if data_root is None and args.checkpoint is not None:
        from ..data import fsdd_root

        data_root = fsdd_root()
    if data_root is not None:
        from ..data.audio import WavFolder

        test = WavFolder(data_root, rate, length, split="test", crop="left", channel_dim=False)
        pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[: len(files)].tolist()
        real = torch.stack([test[i][0] for i in pick])
        report["real_test_clips"] = scores(classifier_log_probs(classifier, real.to(args.device)), args.threshold)
    if args.checkpoint is not None:
        from ..eval.nll import MuLawClips, test_nll, unigram_entropy_bits
        from ..models.checkpoint import load_sashimi

        model = load_sashimi(args.checkpoint, args.device)
        split_by = torch.load(args.checkpoint, map_location="cpu", weights_only=False)["config"].get("split", "take")
        clips = MuLawClips(WavFolder(data_root, model.sample_rate, model.clip_length, split="test", split_by=split_by, crop="left", pad="none", channel_dim=False))
        report["test_split"] = split_by
        report["test_nll_bits"] = test_nll(model, clips, args.device, progress=True)
        report["test_unigram_entropy_bits"] = unigram_entropy_bits(clips)
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def robustness_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, type=existing("file"), metavar="C", help="classifier checkpoint (best.pt)")
    p.add_argument("--data", required=True, type=existing("folder"), metavar="DIR", help="WAV folder in the FSDD layout")
    p.add_argument("--out", required=True, type=Path, metavar="OUT", help="folder for report.json, report.html, report.png")
    p.add_argument("--split", choices=("test", "train", "all"), default="test", help="FSDD split (default: test, takes 0-4)")
    p.add_argument("--limit", type=positive(), metavar="N", help="evaluate a seeded random subset of N examples")
    p.add_argument("--batch-size", type=positive(), default=32)
    p.add_argument("--pgd-eps", type=budget, nargs="+", default=[0.001, 0.003, 0.01], metavar="EPS", help="L-inf PGD budgets (amplitude; inputs are in [-1, 1])")
    p.add_argument("--pgd-steps", type=positive(), default=10)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=positive(), metavar="N", help="CPU threads for torch and ssmkit")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise, masks, PGD starts and --limit")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def robustness(args: argparse.Namespace) -> int:
    from ..eval.robustness.suite import evaluate_checkpoint

    set_threads(args.threads)
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


COMMAND = Command(
    help="evaluate trained models",
    dest="eval_command",
    metavar="EVALUATION",
    subcommands={
        "samples": Command(
            help="score generated audio with a classifier (Inception Score, modified IS, confident fraction)",
            description="Score the WAVs in DIR with a trained FSDD classifier (ssmkit train classify): Inception Score, "
            "modified Inception Score and the fraction of confident predictions, as the SaShiMi paper scores SC09 "
            "samples. With --checkpoint, also the SaShiMi model's test-set NLL in bits per sample (and the unigram "
            "mu-law entropy of the test set); with --data, the same scores for as many real test clips.",
            arguments=samples_arguments,
            run=samples,
        ),
        "robustness": Command(
            help="robustness test bench of an audio classifier",
            description="Evaluate a trained waveform classifier (ssmkit train classify --task fsdd) on the default "
            "audio suite: speaker and accent subpopulations, duration and loudness quartiles, noise at 30/20/10/0 dB "
            "SNR, gain, time shift, speed, clipping, mu-law, masking and PGD at three L-inf budgets. Writes "
            "report.json, report.html and report.png into --out.",
            arguments=robustness_arguments,
            run=robustness,
        ),
    },
)
