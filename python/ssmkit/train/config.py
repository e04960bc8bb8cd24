"""Options of ``ssmkit train classify`` (torch-free, so the command line loads fast)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

TASKS = ("fsdd", "listops", "copying")


@dataclass
class Config:
    """One training job; the fields are the command's options (``--d-model`` is d_model)."""

    task: str = "fsdd"
    data: Optional[str] = None  # FSDD folder (default: ssmkit.data.fsdd_root())
    out: str = "runs/classify"
    epochs: int = 8
    batch_size: int = 16  # global: split across DDP processes
    lr: float = 1e-2
    ssm_lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    d_model: int = 64
    n_layers: int = 4
    d_state: int = 64
    mode: str = "diag"
    dropout: float = 0.1
    length: Optional[int] = None  # fsdd: samples (8000); listops: max tokens (2000); copying: 4096
    patch: int = 16  # fsdd: raw samples per step (the defaults are tuned on FSDD)
    train_size: int = 2000  # generated tasks
    test_size: int = 500
    limit: Optional[int] = None  # at most this many train and test items (smoke runs)
    steps_per_epoch: Optional[int] = None  # cap (smoke runs)
    seed: int = 0
    device: str = "cpu"
    threads: Optional[int] = None
    progress: bool = True
    resume: bool = False
