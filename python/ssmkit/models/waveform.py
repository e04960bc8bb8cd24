"""A classifier of raw waveforms that reads ``patch`` consecutive samples per step."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .classifier import SequenceClassifier


class PatchClassifier(nn.Module):
    """Wraps a sequence classifier so that it reads raw signals ``patch`` samples per step.

    x: (batch, T) or (batch, T, 1) samples, zero-padded at the end to a multiple of
    ``patch`` and reshaped to (batch, T / patch, patch) for ``classifier`` (which must take
    d_input = patch). The classifier's linear encoder then acts as a strided patch
    embedding: the S4 layers run over T / patch steps instead of T. ``mask`` (batch, T)
    marks valid samples; a step is valid when any of its samples is. With
    ``normalize=True`` each signal is first scaled to unit RMS over its valid samples
    (recording levels differ by more than 10x between speakers).
    """

    model_config: dict  # set by ssmkit.models.checkpoint.load_classifier

    def __init__(self, classifier: SequenceClassifier, patch: int, *, normalize: bool = False):
        super().__init__()
        if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1:
            raise ValueError(f"patch: expected a positive integer number of samples per step, got {patch!r}")
        self.classifier, self.patch, self.normalize = classifier, patch, bool(normalize)

    def _steps(self, x: torch.Tensor, mask: Optional[torch.Tensor]):
        if x.dim() == 3 and x.shape[-1] == 1:
            x = x.squeeze(-1)
        if x.dim() != 2:
            raise ValueError(f"x: expected samples of shape (batch, T) or (batch, T, 1), got {tuple(x.shape)}")
        if mask is not None and (mask.shape != x.shape or mask.dtype != torch.bool):
            raise ValueError(f"mask: expected a bool tensor of shape {tuple(x.shape)} (batch, T), got {tuple(mask.shape)} {mask.dtype}")
        if self.normalize:
            valid = torch.ones_like(x) if mask is None else mask.to(x.dtype)
            power = (x * x * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp(min=1)
            x = x * torch.rsqrt(power + 1e-8)
        extra = -x.shape[1] % self.patch
        x = F.pad(x, (0, extra)).reshape(x.shape[0], -1, self.patch)
        if mask is not None:
            mask = F.pad(mask, (0, extra)).reshape(x.shape[0], -1, self.patch).any(-1)
        return x, mask

    def embed(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The classifier's pooled features, (batch, d_model)."""
        return self.classifier.embed(*self._steps(x, mask))

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.classifier(*self._steps(x, mask))
