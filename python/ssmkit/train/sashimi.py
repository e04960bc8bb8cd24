"""Train SaShiMi on a folder of WAVs: next-sample prediction of 8-bit mu-law codes.

``train(SashimiConfig(...))`` writes into ``config.out``:

- ``metrics.csv`` / ``metrics.json``: one row per epoch (train and test NLL in bits per
  sample, times); the JSON also holds the test set's unigram mu-law entropy, the
  baseline that a model ignoring context reaches;
- ``last.pt`` every epoch (and at the time limit) and ``best.pt`` at the best test NLL
  (model config and weights, optimizer, schedule, history, RNG state; written atomically);
- ``loss.png``: train NLL per step and test NLL per epoch, bits per sample.

Under ``torchrun --nproc_per_node N`` it trains with DistributedDataParallel (gloo on
CPU, nccl on GPU); ``batch_size`` is the global batch. ``ssmkit.models.checkpoint.load_sashimi(path)``
rebuilds a trained model, ``ssmkit.eval.nll.test_nll`` scores one on a WAV folder.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn

from ..data.audio import WavFolder
from ..eval.nll import LN2, MuLawClips, test_nll, unigram_entropy_bits
from ..models import SaShiMi
from .common import lr_schedule, save_checkpoint, start_run, write_metrics
from .config import SashimiConfig


# ------------------------------------------------------------------------------ data


def make_datasets(cfg: SashimiConfig):
    """(train, test) mu-law clips: the FSDD split (takes 5-49 train, 0-4 test), cropped
    at random (train) or from the start (test) and padded with silence to cfg.length."""
    from ..data import fsdd_root

    root = Path(cfg.data) if cfg.data else fsdd_root()
    train = WavFolder(root, cfg.sample_rate, cfg.length, split="train", crop="random", channel_dim=False)
    test = WavFolder(root, cfg.sample_rate, cfg.length, split="test", crop="left", channel_dim=False)

    def pick(n, limit):  # a seeded subset
        return None if limit is None else torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))[:limit].tolist()

    test_limit = min(cfg.limit or len(test), cfg.test_limit or len(test))
    return MuLawClips(train, pick(len(train), cfg.limit)), MuLawClips(test, pick(len(test), test_limit))


# ------------------------------------------------------------------------------ loop


def plot_loss(steps: list, history: list, baseline: Optional[float], path: Path, title: str) -> None:
    """Train NLL per step (and its running mean), test NLL per epoch, the unigram baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    if steps:
        x, y = zip(*steps)
        ax.plot(x, y, color="tab:blue", alpha=0.3, lw=0.8, label="train (per step)")
        k = max(1, len(y) // 50)
        smooth = [sum(y[max(0, i - k + 1) : i + 1]) / len(y[max(0, i - k + 1) : i + 1]) for i in range(len(y))]
        ax.plot(x, smooth, color="tab:blue", label=f"train (mean of {k} steps)")
    if history:
        ax.plot([h["step"] for h in history], [h["test_bits"] for h in history], "s-", color="tab:orange", label="test")
    if baseline is not None:
        ax.axhline(baseline, color="gray", ls="--", label=f"unigram mu-law entropy {baseline:.2f}")
    ax.set(xlabel="optimizer step", ylabel="NLL (bits per sample)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def model_config_for(cfg: SashimiConfig) -> dict:
    return dict(
        d_model=cfg.d_model, n_layers=cfg.n_layers, pool=tuple(cfg.pool), expand=cfg.expand, ff=cfg.ff,
        d_state=cfg.d_state, unet=cfg.unet, dropout=cfg.dropout, mode=cfg.mode, l_max=cfg.length,
    )  # fmt: skip


def train(cfg: SashimiConfig) -> dict:
    """Train as configured; returns the summary written to metrics.json."""
    from tqdm import tqdm

    from ..nn import param_groups

    rank, world, device, out = start_run(cfg.threads, cfg.device, cfg.out)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size: expected a multiple of the {world} processes, got {cfg.batch_size}")
    checkpoint = None
    if cfg.resume:
        if not (out / "last.pt").is_file():
            raise FileNotFoundError(f"--resume: no checkpoint {out / 'last.pt'} to resume from")
        checkpoint = torch.load(out / "last.pt", map_location="cpu", weights_only=False)

    torch.manual_seed(cfg.seed)
    train_set, test_set = make_datasets(cfg)
    model_config = checkpoint["model_config"] if checkpoint else model_config_for(cfg)
    model = SaShiMi(**model_config).to(device)
    sampler = torch.utils.data.DistributedSampler(train_set, world, rank, shuffle=True, seed=cfg.seed, drop_last=True)
    loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.batch_size // world, sampler=sampler, drop_last=True)
    steps = min(len(loader), cfg.steps_per_epoch or len(loader))
    if steps == 0:
        raise ValueError(f"batch_size: {cfg.batch_size} is more than the {len(train_set)} training items")
    optimizer = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.weight_decay, cfg.ssm_lr))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(min(cfg.warmup_steps, steps * cfg.epochs // 10 + 1), steps * cfg.epochs))
    history, step_losses, start, best, elapsed, step = [], [], 1, math.inf, 0.0, 0
    if checkpoint:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        schedule.load_state_dict(checkpoint["scheduler"])
        history, step_losses = checkpoint["history"], checkpoint["step_losses"]
        start, best, step, elapsed = checkpoint["epoch"] + 1, checkpoint["best_test_bits"], checkpoint["step"], checkpoint["elapsed"]
        torch.set_rng_state(checkpoint["rng"])
    ddp = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    n_params = sum(p.numel() for p in model.parameters())
    baseline = unigram_entropy_bits(test_set)
    summary = {
        "config": dataclasses.asdict(cfg), "model_config": model_config, "parameters": n_params, "world_size": world,
        "train_items": len(train_set), "test_items": len(test_set), "test_unigram_entropy_bits": baseline,
    }  # fmt: skip
    if rank == 0:
        print(
            f"ssmkit train sashimi: {len(train_set)} train / {len(test_set)} test clips of {cfg.length} samples at "
            f"{cfg.sample_rate} Hz, {n_params:,} parameters, {world} process(es) on {device}, {steps} steps per epoch; "
            f"test-set unigram mu-law entropy {baseline:.3f} bits/sample",
            flush=True,
        )

    def finish_epoch(epoch, loss_sum, seen, began):
        nonlocal best, elapsed
        totals = torch.tensor([loss_sum, seen], dtype=torch.float64, device=device)
        if world > 1:
            dist.all_reduce(totals)
        train_seconds = time.time() - began
        test_bits = test_nll(model, test_set, device, rank=rank, world=world)
        elapsed += time.time() - began
        row = {
            "epoch": epoch, "step": step, "train_bits": (totals[0] / totals[1].clamp(min=1)).item(), "test_bits": test_bits,
            "lr": optimizer.param_groups[0]["lr"], "train_seconds": round(train_seconds, 2), "elapsed_seconds": round(elapsed, 2),
        }  # fmt: skip
        history.append(row)
        improved, best = test_bits < best, min(best, test_bits)
        if rank == 0:
            print(
                f"epoch {epoch}: train {row['train_bits']:.4f} bits/sample | test {test_bits:.4f} bits/sample "
                f"(unigram {baseline:.3f}) | total {elapsed / 60:.1f} min",
                flush=True,
            )
            ckpt = {
                "kind": "sashimi", "model_config": model_config, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(), "epoch": epoch, "step": step,
                "history": history, "step_losses": step_losses, "best_test_bits": best, "elapsed": elapsed,
                "config": dataclasses.asdict(cfg), "rng": torch.get_rng_state(),
            }  # fmt: skip
            save_checkpoint(out / "last.pt", ckpt)
            if improved:
                save_checkpoint(out / "best.pt", ckpt)
            summary.update(epochs_done=epoch, steps_done=step, final_test_bits=test_bits, best_test_bits=best, minutes=elapsed / 60)
            write_metrics(out, history, summary)
            plot_loss(step_losses, history, baseline, out / "loss.png", f"SaShiMi ({model_config['mode']}), {n_params:,} parameters")

    for epoch in range(start, cfg.epochs + 1):
        sampler.set_epoch(epoch)
        began = time.time()
        loss_sum = seen = 0.0
        out_of_time = False
        bar = tqdm(loader, total=steps, desc=f"epoch {epoch}/{cfg.epochs}", disable=rank != 0 or not cfg.progress, mininterval=1.0, dynamic_ncols=True)
        for i, codes in enumerate(bar):
            if i >= steps:
                break
            codes = codes.to(device)
            loss = model.nll(codes).mean() if world == 1 else _ddp_nll(ddp, codes)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            bits = loss.item() / LN2
            step_losses.append((step, bits))
            loss_sum += bits * codes.numel()
            seen += codes.numel()
            bar.set_postfix(bits=f"{loss_sum / seen:.3f}", refresh=False)
            if cfg.max_minutes is not None:
                spent = torch.tensor(elapsed + time.time() - began, device=device)
                if world > 1:
                    dist.all_reduce(spent, op=dist.ReduceOp.MAX)  # every process stops at the same step
                if spent.item() >= 60 * cfg.max_minutes:
                    out_of_time = True
                    break
        bar.close()
        finish_epoch(epoch, loss_sum, seen, began)
        if out_of_time:
            if rank == 0:
                print(f"stopped at the time limit of {cfg.max_minutes} minutes (step {step})", flush=True)
            break
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def _ddp_nll(ddp, codes):
    """Mean NLL through the DDP wrapper (its forward synchronises the gradients)."""
    from ..models.sashimi import shift_right

    logits = ddp(shift_right(codes))
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), codes)
