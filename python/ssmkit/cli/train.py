"""``ssmkit train classify`` (see :mod:`ssmkit.train.classify`) and ``ssmkit train sashimi``
(see :mod:`ssmkit.train.sashimi`); torch loads when a job runs."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ..train.config import TASKS, Config, SashimiConfig
from .command import Command
from .types import non_negative_float, pools, positive, probability


def _optimizer_and_size(p: argparse.ArgumentParser, d, n_layers_help: str | None = None) -> None:
    """The options both jobs take between --batch-size and the model's own (defaults from d)."""
    p.add_argument("--lr", type=non_negative_float, default=d.lr)
    p.add_argument("--ssm-lr", type=non_negative_float, default=d.ssm_lr, help="learning rate of A, B, dt")
    p.add_argument("--weight-decay", type=non_negative_float, default=d.weight_decay)
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--d-model", type=positive(int), default=d.d_model)
    p.add_argument("--n-layers", type=positive(int), default=d.n_layers, help=n_layers_help)


def _splits(p: argparse.ArgumentParser, d) -> None:
    """The options both jobs take for their splits (defaults from d)."""
    p.add_argument("--split", choices=("take", "speaker"), default=d.split, help="FSDD test split: take (takes 0-4 of every speaker) or speaker (every clip of the held-out speaker, theo)")
    p.add_argument("--val-fraction", type=probability, default=d.val_fraction, help="seeded fraction of the training items held out to choose best.pt (default 0.1)")


def _config(config_class, args: argparse.Namespace):
    fields = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{k: v for k, v in vars(args).items() if k in fields})


def classify_arguments(p: argparse.ArgumentParser) -> None:
    d = Config()
    p.add_argument("--task", choices=TASKS, default=d.task, help="fsdd: spoken digits from raw 8 kHz audio; listops: LRA ListOps; copying: selective copying")
    p.add_argument("--data", metavar="DIR", help="FSDD folder (default: $SSMKIT_FSDD or ../shared/data/fsdd)")
    p.add_argument("--out", metavar="DIR", default=d.out, help=f"output folder (default {d.out})")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt up to --epochs")
    p.add_argument("--device", default=d.device, help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--threads", type=positive(int), metavar="N", help="CPU threads for torch and ssmkit")
    p.add_argument("--epochs", type=positive(int), default=d.epochs)
    p.add_argument("--batch-size", type=positive(int), default=d.batch_size, help="global batch size")
    _optimizer_and_size(p, d)
    p.add_argument("--d-state", type=positive(int), default=d.d_state)
    p.add_argument("--mode", choices=("diag", "dplr"), default=d.mode, help="diag: S4D; dplr: S4")
    p.add_argument("--dropout", type=probability, default=d.dropout)
    p.add_argument("--length", type=positive(int), help="fsdd: samples per clip (8000); listops: max tokens (2000); copying: 4096")
    p.add_argument("--patch", type=positive(int), default=d.patch, help="fsdd: raw samples read per step")
    p.add_argument("--b-clip", type=positive(float), help="clip Im(B) of the HiPPO-LegS init to [-B_CLIP, B_CLIP] (the s4 reference: 2)")
    p.add_argument("--c-init", choices=("tilde", "c"), default=d.c_init, help="S4: draw C~ (tilde, default) or draw C and set C~ = C(I - dA^L) (c, the s4 reference)")
    p.add_argument("--train-size", type=positive(int), default=d.train_size, help="generated tasks: training items")
    p.add_argument("--test-size", type=positive(int), default=d.test_size, help="generated tasks: test items")
    p.add_argument("--limit", type=positive(int), help="use at most N train and N test items (smoke runs)")
    _splits(p, d)
    p.add_argument("--steps-per-epoch", type=positive(int), help="cap the optimizer steps per epoch")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def classify(args: argparse.Namespace) -> int:
    from ..train.classify import train

    try:
        train(_config(Config, args))
    except (FileNotFoundError, ValueError) as e:  # bad data folder, checkpoint or option
        print(f"ssmkit train classify: error: {e}", file=sys.stderr)
        return 2
    return 0


def sashimi_arguments(p: argparse.ArgumentParser) -> None:
    d = SashimiConfig()
    p.add_argument("--data", metavar="DIR", help="WAV folder in the FSDD layout (default: $SSMKIT_FSDD or ../shared/data/fsdd)")
    p.add_argument("--out", metavar="DIR", default=d.out, help=f"output folder (default {d.out})")
    p.add_argument("--sample-rate", type=positive(int), default=d.sample_rate, help="resample the WAVs to this rate")
    p.add_argument("--length", type=positive(int), default=d.length, help="validation and test clips: at most this many samples")
    p.add_argument("--train-length", type=positive(int), default=d.train_length, help="training items: random crops of this many samples")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt up to --epochs")
    p.add_argument("--epochs", type=positive(int), default=d.epochs)
    p.add_argument("--max-minutes", type=positive(float), help="stop after this many minutes of training (checkpointed)")
    p.add_argument("--batch-size", type=positive(int), default=d.batch_size, help="global batch size")
    _optimizer_and_size(p, d, n_layers_help="S4 blocks per stage")
    p.add_argument("--pool", type=pools, default=d.pool, help="pooling factors, e.g. 4,4")
    p.add_argument("--expand", type=positive(int), default=d.expand)
    p.add_argument("--ff", type=int, default=d.ff, help="feed-forward width factor (0: no feed-forward blocks)")
    p.add_argument("--d-state", type=positive(int), default=d.d_state)
    p.add_argument("--mode", choices=("dplr", "diag"), default=d.mode, help="dplr: S4; diag: S4D")
    p.add_argument("--dropout", type=probability, default=d.dropout)
    p.add_argument("--no-unet", dest="unet", action="store_false", help="skips only around the pooling layers")
    p.add_argument("--limit", type=positive(int), help="use at most N train and N test clips (smoke runs)")
    p.add_argument("--test-limit", type=positive(int), help="score the test NLL on a seeded subset of N test clips")
    p.add_argument("--val-limit", type=positive(int), help="score the validation NLL on a seeded subset of N clips")
    _splits(p, d)
    p.add_argument("--steps-per-epoch", type=positive(int), help="cap the optimizer steps per epoch")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--threads", type=positive(int), metavar="N", help="CPU threads for torch and ssmkit")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def sashimi(args: argparse.Namespace) -> int:
    from ..train.sashimi import train

    train(_config(SashimiConfig, args))
    return 0


COMMAND = Command(
    help="train models on ssmkit's layers",
    dest="train_command",
    metavar="JOB",
    subcommands={
        "classify": Command(
            help="train a sequence classifier (FSDD, ListOps, selective copying)",
            description="Train an S4/S4D sequence classifier. Writes metrics.csv, metrics.json, summary.png, "
            "last.pt and best.pt into --out. Under torchrun --nproc_per_node N it trains with DDP "
            "(gloo on CPU, nccl on GPU); --batch-size is the global batch.",
            arguments=classify_arguments,
            run=classify,
        ),
        "sashimi": Command(
            help="train SaShiMi on a folder of WAVs (8-bit mu-law, next-sample prediction)",
            description="Train the SaShiMi audio model (next-sample cross-entropy of 8-bit mu-law codes, reported in "
            "bits per sample). Writes metrics.csv, metrics.json, loss.png, last.pt and best.pt into --out. Under "
            "torchrun --nproc_per_node N it trains with DDP (gloo on CPU, nccl on GPU); --batch-size is the global batch.",
            arguments=sashimi_arguments,
            run=sashimi,
        ),
    },
)
