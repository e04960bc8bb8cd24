"""Pieces shared by the trainers (``train classify``, ``train sashimi``): atomic writes of
checkpoints and metrics, the learning-rate schedule, and the torchrun/DDP setup."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import torch
import torch.distributed as dist


def save_checkpoint(path: Path, checkpoint: dict) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)


def write_metrics(out: Path, history: list, summary: dict) -> None:
    """metrics.csv (one row per entry of history) and metrics.json (summary + history), each
    written to a temporary file and renamed."""
    if history:
        with open(out / "metrics.csv.tmp", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)
        os.replace(out / "metrics.csv.tmp", out / "metrics.csv")
    (out / "metrics.json.tmp").write_text(json.dumps(summary | {"history": history}, indent=2) + "\n")
    os.replace(out / "metrics.json.tmp", out / "metrics.json")


def validation_split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices into n training items: a seeded random ``fraction`` of
    them (at least one, and at least one left to train on) is held out to choose best.pt,
    so the test split is never used for a choice."""
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction: expected a fraction in (0, 1), got {fraction!r}")
    if n < 2:
        raise ValueError(f"training items: expected at least 2 to hold out a validation split, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    k = min(n - 1, max(1, round(fraction * n)))
    return sorted(order[k:]), sorted(order[:k])


def lr_schedule(warmup: int, total: int):
    """Linear warmup, then cosine decay to zero: the factor on each group's lr at a step."""

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return factor


def distributed(device: str):
    """(rank, world, torch.device) for ``device`` ("auto", "cpu", "cuda", "cuda:1", ...);
    under torchrun (WORLD_SIZE > 1) it starts the process group: nccl on GPUs, gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if world == 1:
        return 0, 1, torch.device("cuda" if device == "auto" and use_cuda else device.replace("auto", "cpu"))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return rank, world, dev


def start_run(threads, device: str, out):
    """What both trainers do first: set the CPU threads (torch and ssmkit), join the
    process group (see :func:`distributed`) and make the output folder (rank 0).
    Returns (rank, world, torch.device, out as a Path)."""
    if threads is not None:
        from .. import set_num_threads

        torch.set_num_threads(threads)
        set_num_threads(threads)
    rank, world, dev = distributed(device)
    out = Path(out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    return rank, world, dev, out
