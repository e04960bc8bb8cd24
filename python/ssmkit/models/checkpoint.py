"""Trained models back from the checkpoints of ``ssmkit train`` (beside the models, so
that evaluation needs nothing of the trainers).

- ``load_classifier(path)``: a classifier of ``ssmkit train classify``;
- ``load_sashimi(path)``: a SaShiMi of ``ssmkit train sashimi``;
- ``build_classifier(model_config)``: the untrained classifier a checkpoint's
  ``model_config`` describes (the trainer builds its model with it too).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .classifier import SequenceClassifier
from .sashimi import SaShiMi
from .waveform import PatchClassifier


def build_classifier(model_config: dict) -> SequenceClassifier | PatchClassifier:
    c = model_config
    model = SequenceClassifier(
        c["d_input"],
        c["n_classes"],
        d_model=c["d_model"],
        n_layers=c["n_layers"],
        d_state=c["d_state"],
        mode=c["mode"],
        dropout=c["dropout"],
        embedding=c["embedding"],
        **c["s4"],
    )
    if c["patch"] is None:
        return model
    return PatchClassifier(model, c["patch"], normalize=c["input"].get("normalize") == "rms")


def load_classifier_checkpoint(path, map_location="cpu") -> dict:
    """The dict a classifier checkpoint holds (model_config, model, optimizer, history, ...)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no checkpoint at {path}")
    checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(checkpoint, dict) or "model_config" not in checkpoint or "model" not in checkpoint:
        raise ValueError(f"path: {path} is not an ssmkit classifier checkpoint (no model_config/model)")
    return checkpoint


def load_classifier(path, device="cpu") -> SequenceClassifier | PatchClassifier:
    """The trained classifier in a checkpoint, in eval mode on ``device``.

    ``model.model_config`` tells how to feed it: ``task``, ``input`` (FSDD:
    ``sample_rate``, ``length``, ``patch``; tokens: ``length``), ``classes``. FSDD models
    take raw waveforms (batch, T) or (batch, T, 1) at 8 kHz; ``embed(x)`` gives the
    penultimate features.
    """
    checkpoint = load_classifier_checkpoint(path)
    model = build_classifier(checkpoint["model_config"])
    model.load_state_dict(checkpoint["model"])
    model.model_config = checkpoint["model_config"]
    return model.to(device).eval()


def load_sashimi(path, device="cpu") -> SaShiMi:
    """The trained SaShiMi in a checkpoint of ``ssmkit train sashimi``, in eval mode.

    ``model.sample_rate`` and ``model.clip_length`` are the rate and clip length it was trained on.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no such file {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != "sashimi":
        raise ValueError(f"checkpoint: {path} is not a checkpoint of 'ssmkit train sashimi'")
    model = SaShiMi(**checkpoint["model_config"])
    model.load_state_dict(checkpoint["model"])
    model.sample_rate, model.clip_length = checkpoint["config"]["sample_rate"], checkpoint["config"]["length"]
    return model.to(device).eval()
