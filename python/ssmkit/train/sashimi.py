"""Train SaShiMi on a folder of WAVs: next-sample prediction of 8-bit mu-law codes.

Only real audio is scored: training items are random crops of ``train_length`` samples
(clips shorter than that are taken whole and the batch's padding is masked out of the
loss), and every NLL and baseline counts the real samples of each clip (see
:mod:`ssmkit.eval.nll`). A seeded ``val_fraction`` of the training clips is held out as
the validation set that chooses ``best.pt``; the test split is scored once, with
``best.pt``, at the end.

``train(SashimiConfig(...))`` writes into ``config.out``:

- ``metrics.csv`` / ``metrics.json``: one row per epoch (train and validation NLL in bits
  per sample, times); the JSON also holds the test NLL of ``best.pt`` and the test set's
  unigram mu-law entropy, the baseline that a model ignoring context reaches;
- ``last.pt`` every epoch (and at the time limit) and ``best.pt`` at the best validation
  NLL (model config and weights, optimizer, schedule, history, RNG state; written atomically);
- ``loss.png``: train NLL per step, validation NLL per epoch, test NLL, bits per sample.

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
from ..eval.nll import LN2, MuLawClips, collate_codes, masked_nll, test_nll, unigram_entropy_bits
from ..models import SaShiMi
from .common import lr_schedule, save_checkpoint, start_run, write_metrics
from .config import SashimiConfig


# ------------------------------------------------------------------------------ data


def make_datasets(cfg: SashimiConfig):
    """(train, validation, test) mu-law clips of the FSDD split ``cfg.split``: training
    clips cropped at random to ``train_length``, validation (a seeded ``val_fraction`` of
    the training clips) and test clips whole up to ``length``; nothing padded."""
    from ..data import fsdd_root
    from .common import validation_split

    root = Path(cfg.data) if cfg.data else fsdd_root()
    split = dict(split_by=cfg.split, pad="none", channel_dim=False)
    crop = min(cfg.train_length, cfg.length)
    train = WavFolder(root, cfg.sample_rate, crop, split="train", crop="random", **split)
    whole = WavFolder(root, cfg.sample_rate, cfg.length, split="train", crop="left", **split)
    test = WavFolder(root, cfg.sample_rate, cfg.length, split="test", crop="left", **split)

    def pick(indices, limit):  # a seeded subset
        if limit is None:
            return indices
        return [indices[i] for i in torch.randperm(len(indices), generator=torch.Generator().manual_seed(cfg.seed))[:limit].tolist()]

    train_idx, val_idx = validation_split(len(train), cfg.val_fraction, cfg.seed)
    val_limit = min(cfg.limit or len(val_idx), cfg.val_limit or len(val_idx))
    test_limit = min(cfg.limit or len(test), cfg.test_limit or len(test))
    return (
        MuLawClips(train, pick(train_idx, cfg.limit)),
        MuLawClips(whole, pick(val_idx, val_limit)),
        MuLawClips(test, pick(list(range(len(test))), test_limit)),
    )


# ------------------------------------------------------------------------------ loop


def plot_loss(steps: list, history: list, baseline: Optional[float], path: Path, title: str, test: Optional[tuple] = None) -> None:
    """Train NLL per step (and its running mean), validation NLL per epoch, the test NLL
    of best.pt (``test``: (step, bits)), the test set's unigram baseline."""
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
        ax.plot([h["step"] for h in history], [h["val_bits"] for h in history], "s-", color="tab:orange", label="validation")
    if test is not None:
        ax.plot([test[0]], [test[1]], "*", ms=14, color="tab:red", label=f"test (best.pt) {test[1]:.2f}")
    if baseline is not None:
        ax.axhline(baseline, color="gray", ls="--", label=f"test unigram mu-law entropy {baseline:.2f}")
    ax.set(xlabel="optimizer step", ylabel="NLL (bits per real sample)", title=title)
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
    train_set, val_set, test_set = make_datasets(cfg)
    model_config = checkpoint["model_config"] if checkpoint else model_config_for(cfg)
    model = SaShiMi(**model_config).to(device)
    sampler = torch.utils.data.DistributedSampler(train_set, world, rank, shuffle=True, seed=cfg.seed, drop_last=True)
    loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.batch_size // world, sampler=sampler, drop_last=True, collate_fn=collate_codes)
    steps = min(len(loader), cfg.steps_per_epoch or len(loader))
    if steps == 0:
        raise ValueError(f"batch_size: {cfg.batch_size} is more than the {len(train_set)} training items")
    optimizer = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.weight_decay, cfg.ssm_lr))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(min(cfg.warmup_steps, steps * cfg.epochs // 10 + 1), steps * cfg.epochs))
    history, step_losses, start, best, elapsed, step, real, padded = [], [], 1, math.inf, 0.0, 0, 0, 0
    if checkpoint:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        schedule.load_state_dict(checkpoint["scheduler"])
        history, step_losses = checkpoint["history"], checkpoint["step_losses"]
        start, best, step, elapsed = checkpoint["epoch"] + 1, checkpoint["best_val_bits"], checkpoint["step"], checkpoint["elapsed"]
        real, padded = checkpoint["samples_real"], checkpoint["samples_batched"]
        torch.set_rng_state(checkpoint["rng"])
    ddp = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    n_params = sum(p.numel() for p in model.parameters())
    baseline = unigram_entropy_bits(test_set)
    summary = {
        "config": dataclasses.asdict(cfg), "model_config": model_config, "parameters": n_params, "world_size": world,
        "train_items": len(train_set), "val_items": len(val_set), "test_items": len(test_set),
        "test_unigram_entropy_bits": baseline, "val_unigram_entropy_bits": unigram_entropy_bits(val_set),
    }  # fmt: skip
    if rank == 0:
        print(
            f"ssmkit train sashimi: {len(train_set)} train (crops of {train_set.folder.length}) / {len(val_set)} validation / "
            f"{len(test_set)} test clips (split by {cfg.split}) at {cfg.sample_rate} Hz, {n_params:,} parameters, "
            f"{world} process(es) on {device}, {steps} steps per epoch; test-set unigram mu-law entropy {baseline:.3f} bits/sample",
            flush=True,
        )

    def checkpoint_dict(epoch):
        return {
            "kind": "sashimi", "model_config": model_config, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(), "epoch": epoch, "step": step,
            "history": history, "step_losses": step_losses, "best_val_bits": best, "elapsed": elapsed,
            "samples_real": real, "samples_batched": padded, "config": dataclasses.asdict(cfg), "rng": torch.get_rng_state(),
        }  # fmt: skip

    def finish_epoch(epoch, loss_sum, seen, began):
        nonlocal best, elapsed
        totals = torch.tensor([loss_sum, seen], dtype=torch.float64, device=device)
        if world > 1:
            dist.all_reduce(totals)
        train_seconds = time.time() - began
        val_bits = test_nll(model, val_set, device, rank=rank, world=world)
        elapsed += time.time() - began
        row = {
            "epoch": epoch, "step": step, "train_bits": (totals[0] / totals[1].clamp(min=1)).item(), "val_bits": val_bits,
            "lr": optimizer.param_groups[0]["lr"], "train_seconds": round(train_seconds, 2), "elapsed_seconds": round(elapsed, 2),
        }  # fmt: skip
        history.append(row)
        improved, best = val_bits < best, min(best, val_bits)
        if rank == 0:
            print(
                f"epoch {epoch}: train {row['train_bits']:.4f} | validation {val_bits:.4f} bits/sample "
                f"(test unigram {baseline:.3f}) | step {step}, total {elapsed / 60:.1f} min",
                flush=True,
            )
            save_checkpoint(out / "last.pt", checkpoint_dict(epoch))
            if improved:
                save_checkpoint(out / "best.pt", checkpoint_dict(epoch))
            summary.update(
                epochs_done=epoch, steps_done=step, final_val_bits=val_bits, best_val_bits=best, minutes=elapsed / 60,
                train_real_fraction=real / max(1, padded),
            )  # fmt: skip
            write_metrics(out, history, summary)
            plot_loss(step_losses, history, baseline, out / "loss.png", f"SaShiMi ({model_config['mode']}), {n_params:,} parameters")

    for epoch in range(start, cfg.epochs + 1):
        sampler.set_epoch(epoch)
        began = time.time()
        loss_sum = seen = 0.0
        out_of_time = False
        bar = tqdm(loader, total=steps, desc=f"epoch {epoch}/{cfg.epochs}", disable=rank != 0 or not cfg.progress, mininterval=1.0, dynamic_ncols=True)
        for i, (codes, mask) in enumerate(bar):
            if i >= steps:
                break
            codes, mask = codes.to(device), mask.to(device)
            total, count = masked_nll(ddp, codes, mask) if world == 1 else _ddp_nll(ddp, codes, mask)
            loss = total / count
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            bits = loss.item() / LN2
            step_losses.append((step, bits))
            loss_sum += bits * count.item()
            seen += count.item()
            real, padded = real + count.item(), padded + mask.numel()
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

    # the test split, scored once with the checkpoint the validation set chose
    if world > 1:
        dist.barrier()  # rank 0 has written best.pt
    chosen = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(chosen["model"])
    test_bits = test_nll(model, test_set, device, rank=rank, world=world)
    if rank == 0:
        print(f"test NLL of best.pt (epoch {chosen['epoch']}): {test_bits:.4f} bits/sample (test unigram {baseline:.3f})", flush=True)
        summary.update(test_bits=test_bits, best_epoch=chosen["epoch"], best_step=chosen["step"])
        write_metrics(out, history, summary)
        plot_loss(step_losses, history, baseline, out / "loss.png", f"SaShiMi ({model_config['mode']}), {n_params:,} parameters", test=(chosen["step"], test_bits))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def _ddp_nll(ddp, codes, mask):
    """(summed NLL over the real samples, their count) through the DDP wrapper (its forward
    synchronises the gradients)."""
    from ..models.sashimi import shift_right

    logits = ddp(shift_right(codes))
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), codes, reduction="none")
    return (nll * mask).sum(), mask.sum()
