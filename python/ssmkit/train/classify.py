"""Train a sequence classifier on FSDD, ListOps or selective copying.

``train(config)`` runs the whole job and writes into ``config.out``:

- ``metrics.csv`` and ``metrics.json``: one row per epoch (losses, accuracies, times);
- ``last.pt`` every epoch and ``best.pt`` at the best validation accuracy (a seeded
  ``val_fraction`` of the training items, held out; the test set is reported every
  epoch but never chooses anything): model config and state, optimizer, scheduler,
  epoch, history, RNG state (written atomically); metrics.json's ``test_acc`` is best.pt's;
- ``summary.png``: loss and accuracy curves.

Under ``torchrun --nproc_per_node N`` it trains with DistributedDataParallel (gloo on
CPU, nccl on GPU): every process takes its slice of each global batch of
``batch_size`` items, so N processes take the same optimizer steps as one process
with the same global batch. ``ssmkit.models.checkpoint.load_classifier(path)`` rebuilds
a trained model.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..models.checkpoint import build_classifier, load_classifier_checkpoint
from .common import lr_schedule, save_checkpoint, start_run, write_metrics
from .config import TASKS, Config


# ------------------------------------------------------------------------------ data


class _Subset(torch.utils.data.Dataset):
    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[self.indices[i]]


def _limit(dataset, limit: Optional[int], seed: int):
    if limit is None or limit >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return _Subset(dataset, sorted(order[:limit].tolist()))


def _base(dataset):
    return dataset.dataset if isinstance(dataset, _Subset) else dataset


def _indices(dataset):
    return dataset.indices if isinstance(dataset, _Subset) else range(len(dataset))


def _clip_lengths(dataset, length: int) -> list[int]:
    """Samples per item of a WavFolder (or a subset of one) after cropping to ``length``."""
    meta = _base(dataset).metadata
    return [min(length, round(meta[i]["frames"] * meta[i]["sample_rate"] / meta[i]["orig_sample_rate"])) for i in _indices(dataset)]


def _hold_out(train, val_source, cfg: Config):
    """(train, validation): a seeded ``val_fraction`` of the (limited) training items, drawn
    from ``val_source`` (the same items, read as the test items are: no random crop)."""
    from .common import validation_split

    indices = list(_indices(train))
    keep, held = validation_split(len(indices), cfg.val_fraction, cfg.seed)
    return _Subset(_base(train), [indices[i] for i in keep]), _Subset(val_source, [indices[i] for i in held])


def make_datasets(cfg: Config):
    """(train, validation, test, spec): spec holds what the model needs (d_input,
    n_classes, ...). The validation items are held out of the training items (see
    :func:`_hold_out`); they choose best.pt."""
    if cfg.task == "fsdd":
        from ..data import fsdd_root
        from ..data.audio import WavFolder

        root = Path(cfg.data) if cfg.data else fsdd_root()
        length = cfg.length or 8000  # longer clips are cropped; shorter ones batch with a mask
        split = dict(split_by=cfg.split, pad="none")
        train = WavFolder(root, 8000, length, split="train", crop="random", **split)
        val_source = WavFolder(root, 8000, length, split="train", crop="center", **split)
        test = WavFolder(root, 8000, length, split="test", crop="center", **split)
        spec = {"kind": "waveform", "n_classes": len(train.classes), "n_targets": 1, "classes": train.classes}
        spec["input"] = {"sample_rate": 8000, "length": length, "patch": cfg.patch, "normalize": "rms"}
        train, val = _hold_out(_limit(train, cfg.limit, cfg.seed), val_source, cfg)
        test = _limit(test, cfg.limit, cfg.seed + 1)
        spec["lengths"] = [_clip_lengths(d, length) for d in (train, val, test)]
        return train, val, test, spec
    if cfg.split != "take":
        raise ValueError(f"split: {cfg.task} has one fixed test set; expected 'take' (the default), got {cfg.split!r}")
    if cfg.task == "listops":
        from ..data.tasks import ListOps

        length = cfg.length or 2000
        lengths = {"min_length": max(1, length // 4), "max_length": length}
        train = ListOps(cfg.train_size, **lengths, seed=cfg.seed)
        test = ListOps(cfg.test_size, **lengths, seed=cfg.seed + 1_000_003)
        spec = {"kind": "tokens", "vocab_size": len(ListOps.vocab), "n_classes": 10, "n_targets": 1, "mask_padding": True}
        spec["input"] = {"length": length}
        train, val = _hold_out(_limit(train, cfg.limit, cfg.seed), train, cfg)
        test = _limit(test, cfg.limit, cfg.seed + 1)
        spec["lengths"] = [[len(_base(d).texts[i].split()) for i in _indices(d)] for d in (train, val, test)]
        return train, val, test, spec
    elif cfg.task == "copying":
        from ..data.tasks import SelectiveCopying

        length = cfg.length or 4096
        train = SelectiveCopying(cfg.train_size, length=length, seed=cfg.seed)
        test = SelectiveCopying(cfg.test_size, length=length, seed=cfg.seed + 1_000_003)
        spec = {"kind": "tokens", "vocab_size": train.vocab_size, "n_classes": train.n_classes}
        spec |= {"n_targets": train.n_memorize, "input": {"length": length}}
    else:
        raise ValueError(f"task: expected one of {', '.join(TASKS)}, got {cfg.task!r}")
    train, val = _hold_out(_limit(train, cfg.limit, cfg.seed), train, cfg)
    return train, val, _limit(test, cfg.limit, cfg.seed + 1), spec


class ShardedBatchSampler(torch.utils.data.Sampler):
    """Global batches of a seeded per-epoch permutation; process ``rank`` gets its slice.

    Like DistributedSampler, but the N slices of a step together are exactly the batch
    one process would take with ``world=1``, so DDP and single-process runs match.
    With ``lengths``, items are sorted by length within windows of ``bucket`` batches
    (batches of similar lengths need less padding) and the batches are then shuffled.
    """

    def __init__(self, n, batch_size, rank=0, world=1, *, seed=0, shuffle=True, lengths=None, bucket=32):
        if batch_size % world:
            raise ValueError(f"batch_size: expected a multiple of the {world} processes, got {batch_size}")
        if n < batch_size:
            raise ValueError(f"batch_size: expected at most the {n} training items, got {batch_size}")
        if lengths is not None and len(lengths) != n:
            raise ValueError(f"lengths: expected one length per item ({n}), got {len(lengths)}")
        self.n, self.batch_size, self.rank, self.world = n, batch_size, rank, world
        self.seed, self.shuffle, self.lengths, self.bucket, self.epoch = seed, shuffle, lengths, bucket, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size  # the last partial batch is dropped

    def batches(self) -> list[list[int]]:
        """This epoch's global batches."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist() if self.shuffle else list(range(self.n))
        order = order[: len(self) * self.batch_size]
        if self.lengths is not None:
            window = self.batch_size * self.bucket
            order = sum((sorted(order[w : w + window], key=self.lengths.__getitem__) for w in range(0, len(order), window)), [])
        batches = [order[b : b + self.batch_size] for b in range(0, len(order), self.batch_size)]
        if self.lengths is not None and self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        return batches

    def __iter__(self):
        local = self.batch_size // self.world
        for batch in self.batches():
            yield batch[self.rank * local : (self.rank + 1) * local]


# ------------------------------------------------------------------------------ model


def model_config_for(cfg: Config, spec: dict) -> dict:
    """Everything build_classifier needs, stored in every checkpoint."""
    tokens = spec["kind"] == "tokens"
    steps = spec["input"]["length"] // (1 if tokens else cfg.patch) + 1
    s4 = {"l_max": steps} if cfg.mode == "dplr" else {}  # fixed l_max: identical under DDP
    s4 |= {"b_clip": cfg.b_clip} if cfg.b_clip is not None else {}
    s4 |= {"c_init": cfg.c_init} if cfg.c_init != "tilde" else {}
    return {
        "d_input": spec["vocab_size"] if tokens else cfg.patch,
        "n_classes": spec["n_classes"] * spec["n_targets"],
        "d_model": cfg.d_model,
        "n_layers": cfg.n_layers,
        "d_state": cfg.d_state,
        "mode": cfg.mode,
        "dropout": cfg.dropout,
        "embedding": tokens,
        "s4": s4,
        "patch": None if tokens else cfg.patch,
        "n_targets": spec["n_targets"],
        "task": cfg.task,
        "input": spec["input"],
        "classes": spec.get("classes"),
    }


# ------------------------------------------------------------------------------ loop


def _loss_and_correct(logits, y, n_targets):
    """Mean cross-entropy and the number of correct predictions (per target token)."""
    if n_targets > 1:
        logits = logits.view(logits.shape[0], n_targets, -1).transpose(1, 2)  # (B, classes, targets)
    loss = F.cross_entropy(logits, y)
    correct = (logits.argmax(1) == y).sum()
    return loss, correct


def _inputs(batch, spec, device):
    """(x, y, mask) on device; mask marks valid steps (padded audio, ListOps padding) or is None."""
    x, y = batch[0].to(device), batch[1].to(device)
    if len(batch) == 3:  # collate_padded
        return x, y, batch[2].to(device)
    if not spec.get("mask_padding"):
        return x, y, None
    # Right padding after the longest item in the batch is dropped: the layers are causal,
    # so the valid steps' outputs and the masked pooling do not change.
    mask = x != 0
    keep = int(mask.sum(1).max())
    return x[:, :keep], y, mask[:, :keep]


def _loader(dataset, spec, **kwargs):
    from ..data.audio import collate_padded

    return torch.utils.data.DataLoader(dataset, collate_fn=collate_padded if spec["kind"] == "waveform" else None, **kwargs)


def evaluate(model, dataset, spec, device, rank=0, world=1, batch_size=32, lengths=None):
    """(mean loss, accuracy) over the dataset; each process takes every world-th item.
    ``lengths`` (one per item) batches similar lengths together: less padding."""
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    indices = range(rank, len(dataset), world)
    if lengths is not None:
        indices = sorted(indices, key=lengths.__getitem__)
    with torch.no_grad():
        for batch in _loader(_Subset(dataset, indices), spec, batch_size=batch_size):
            x, y, mask = _inputs(batch, spec, device)
            loss, correct = _loss_and_correct(model(x, mask), y, spec["n_targets"])
            count = torch.tensor(y.numel(), dtype=torch.float64, device=device)
            totals += torch.stack([loss.double() * count, correct.double(), count])
    if world > 1:
        dist.all_reduce(totals)
    model.train()
    return (totals[0] / totals[2]).item(), (totals[1] / totals[2]).item()


def plot_history(history: list, path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch (train and test) side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-o"), ("val", "-^"), ("test", "-s")):
        ax_loss.plot(epochs, [h[f"{split}_loss"] for h in history], style, label=split)
        ax_acc.plot(epochs, [100 * h[f"{split}_acc"] for h in history], style, label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(cfg: Config) -> dict:
    """Train as configured; returns the summary written to metrics.json."""
    from tqdm import tqdm

    from ..nn import param_groups

    if cfg.task not in TASKS:
        raise ValueError(f"task: expected one of {', '.join(TASKS)}, got {cfg.task!r}")
    rank, world, device, out = start_run(cfg.threads, cfg.device, cfg.out)

    checkpoint = load_classifier_checkpoint(out / "last.pt") if cfg.resume else None
    torch.manual_seed(cfg.seed)
    train_set, val_set, test_set, spec = make_datasets(cfg)
    model_config = checkpoint["model_config"] if checkpoint else model_config_for(cfg, spec)
    if model_config["task"] != cfg.task:
        raise ValueError(f"task: {out / 'last.pt'} was trained on {model_config['task']!r}, got --task {cfg.task!r}")
    model = build_classifier(model_config).to(device)
    lengths = spec["lengths"][0] if "lengths" in spec else None
    sampler = ShardedBatchSampler(len(train_set), cfg.batch_size, rank, world, seed=cfg.seed, lengths=lengths)
    loader = _loader(train_set, spec, batch_sampler=sampler)
    steps = min(len(sampler), cfg.steps_per_epoch or len(sampler))
    optimizer = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.weight_decay, cfg.ssm_lr))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(min(cfg.warmup_steps, steps * cfg.epochs // 10 + 1), steps * cfg.epochs))
    history, start, best, elapsed = [], 1, -1.0, 0.0
    if checkpoint:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        schedule.load_state_dict(checkpoint["scheduler"])
        history, start, best = checkpoint["history"], checkpoint["epoch"] + 1, checkpoint["best_val_acc"]
        elapsed = history[-1]["elapsed_seconds"] if history else 0.0
        torch.set_rng_state(checkpoint["rng"])
    ddp = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    n_params = sum(p.numel() for p in model.parameters())
    summary = {"config": dataclasses.asdict(cfg), "model_config": model_config, "parameters": n_params, "world_size": world}
    if rank == 0:
        print(
            f"ssmkit train classify: task {cfg.task}, {len(train_set)} train / {len(val_set)} validation / {len(test_set)} test items, "
            f"{n_params:,} parameters, {world} process(es) on {device}, {steps} steps per epoch",
            flush=True,
        )

    for epoch in range(start, cfg.epochs + 1):
        sampler.set_epoch(epoch)
        began = time.time()
        loss_sum = correct = seen = 0.0
        bar = tqdm(
            loader, total=steps, desc=f"epoch {epoch}/{cfg.epochs}", disable=rank != 0 or not cfg.progress, mininterval=1.0, dynamic_ncols=True
        )
        for step, batch in enumerate(bar):
            if step >= steps:
                break
            x, y, mask = _inputs(batch, spec, device)
            loss, right = _loss_and_correct(ddp(x, mask), y, spec["n_targets"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.item() * y.numel()
            correct += right.item()
            seen += y.numel()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
        bar.close()
        train_seconds = time.time() - began
        totals = torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=device)
        if world > 1:
            dist.all_reduce(totals)
        lengths = spec.get("lengths", [None] * 3)
        val_loss, val_acc = evaluate(model, val_set, spec, device, rank, world, lengths=lengths[1])
        test_loss, test_acc = evaluate(model, test_set, spec, device, rank, world, lengths=lengths[2])
        elapsed += time.time() - began
        row = {
            "epoch": epoch,
            "train_loss": (totals[0] / totals[2]).item(),
            "train_acc": (totals[1] / totals[2]).item(),
            "val_loss": val_loss,
            "val_acc": val_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "lr": optimizer.param_groups[0]["lr"],
            "train_seconds": round(train_seconds, 2),
            "epoch_seconds": round(time.time() - began, 2),
            "elapsed_seconds": round(elapsed, 2),
        }
        history.append(row)
        improved = val_acc > best
        best = max(best, val_acc)
        if rank == 0:
            print(
                f"epoch {epoch}: train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}% | "
                f"validation acc {100 * val_acc:.2f}% | test loss {test_loss:.4f} acc {100 * test_acc:.2f}% | {row['epoch_seconds']:.0f} s, total {elapsed / 60:.1f} min",
                flush=True,
            )
            checkpoint = {
                "model_config": model_config,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": schedule.state_dict(),
                "epoch": epoch,
                "history": history,
                "best_val_acc": best,
                "config": dataclasses.asdict(cfg),
                "rng": torch.get_rng_state(),
            }
            save_checkpoint(out / "last.pt", checkpoint)
            if improved:
                save_checkpoint(out / "best.pt", checkpoint)
            chosen = max(history, key=lambda h: h["val_acc"])  # the first best epoch: best.pt's
            summary |= {"epochs_done": epoch, "final_test_acc": test_acc, "best_val_acc": best}
            summary |= {"best_epoch": chosen["epoch"], "test_acc": chosen["test_acc"]}
            write_metrics(out, history, summary)
            plot_history(history, out / "summary.png", f"{cfg.task}: {'S4D' if model_config['mode'] == 'diag' else 'S4'}, d_model {model_config['d_model']}, {model_config['n_layers']} layers")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary
