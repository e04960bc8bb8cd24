"""Options of ``ssmkit train classify`` and ``ssmkit train sashimi`` (torch-free, so the
command line loads fast); the fields are the command's options (``--d-model`` is d_model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

TASKS = ("fsdd", "listops", "copying")


@dataclass
class TrainConfig:
    """The options of every training job with the same default in each; a job's config
    adds its own, and those whose defaults differ (optimiser, model size)."""

    data: Optional[str] = None  # the data folder (default: ssmkit.data.fsdd_root())
    ssm_lr: float = 1e-3
    d_model: int = 64
    d_state: int = 64
    limit: Optional[int] = None  # at most this many train and test items (smoke runs)
    split: str = "take"  # fsdd: "take" (takes 0-4 are test) or "speaker" (speakers in FSDD_TEST_SPEAKERS are test)
    val_fraction: float = 0.1  # held out of the training items (seeded by seed) to choose best.pt
    steps_per_epoch: Optional[int] = None  # cap (smoke runs)
    seed: int = 0
    device: str = "cpu"
    threads: Optional[int] = None
    progress: bool = True
    resume: bool = False


@dataclass
class Config(TrainConfig):
    """One job of ``ssmkit train classify``."""

    task: str = "fsdd"
    out: str = "runs/classify"
    epochs: int = 8
    batch_size: int = 16  # global: split across DDP processes
    lr: float = 1e-2
    weight_decay: float = 0.05
    warmup_steps: int = 100
    n_layers: int = 4
    mode: str = "diag"
    dropout: float = 0.1
    length: Optional[int] = None  # fsdd: samples (8000); listops: max tokens (2000); copying: 4096
    patch: int = 16  # fsdd: raw samples per step (the defaults are tuned on FSDD)
    b_clip: Optional[float] = None  # clip Im(B) of HiPPO-LegS (the state-spaces/s4 reference: 2)
    c_init: str = "tilde"  # S4: "tilde" draws C~, "c" draws C and sets C~ = C (I - dA^L) (the reference)
    train_size: int = 2000  # generated tasks
    test_size: int = 500


@dataclass
class SashimiConfig(TrainConfig):
    """One job of ``ssmkit train sashimi`` (data: FSDD names give the split)."""

    out: str = "runs/sashimi"
    sample_rate: int = 8000
    length: int = 8000  # validation and test clips: at most this many samples (longer ones are cut)
    train_length: int = 2048  # training items: a random crop of this many samples (shorter clips whole)
    epochs: int = 10
    max_minutes: Optional[float] = None  # stop (and checkpoint) after this much training time
    batch_size: int = 8  # global: split across DDP processes
    lr: float = 4e-3
    weight_decay: float = 0.0
    warmup_steps: int = 50
    mode: str = "dplr"
    n_layers: int = 8
    pool: tuple = (4, 4)
    expand: int = 2
    ff: int = 2
    dropout: float = 0.0
    unet: bool = True
    test_limit: Optional[int] = None  # score the test NLL on a seeded subset of this many test clips
    val_limit: Optional[int] = None  # score the validation NLL on a seeded subset of this many clips
