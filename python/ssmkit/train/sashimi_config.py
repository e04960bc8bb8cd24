"""Options of ``ssmkit train sashimi`` (torch-free, so the command line loads fast)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class SashimiConfig:
    """One training job; the fields are the options of ``ssmkit train sashimi``."""

    data: Optional[str] = None  # WAV folder (default: ssmkit.data.fsdd_root()); FSDD names give the split
    out: str = "runs/sashimi"
    sample_rate: int = 8000
    length: int = 8000  # samples per item (crop or pad with silence)
    epochs: int = 10
    max_minutes: Optional[float] = None  # stop (and checkpoint) after this much training time
    batch_size: int = 8  # global: split across DDP processes
    lr: float = 4e-3
    ssm_lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 50
    d_model: int = 64
    n_layers: int = 8
    pool: tuple = (4, 4)
    expand: int = 2
    ff: int = 2
    d_state: int = 64
    mode: str = "dplr"
    dropout: float = 0.0
    unet: bool = True
    limit: Optional[int] = None  # at most this many train and test items (smoke runs)
    test_limit: Optional[int] = None  # score the test NLL on a seeded subset of this many test clips
    steps_per_epoch: Optional[int] = None
    seed: int = 0
    device: str = "cpu"
    threads: Optional[int] = None
    progress: bool = True
    resume: bool = False
