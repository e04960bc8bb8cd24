"""Optimizer parameter groups for models with S4 layers."""

from __future__ import annotations

from torch import nn


def param_groups(model: nn.Module, lr: float, weight_decay: float, ssm_lr: float = 1e-3) -> list[dict]:
    """Parameter groups for ``torch.optim``: the SSM parameters apart.

    The parameters of A, B and dt (and P) of every :class:`~ssmkit.nn.S4` in ``model``
    train with learning rate ``ssm_lr`` (S4's 1e-3) and no weight decay, as S4
    recommends: they set the memory of the recurrence, which weight decay would pull
    towards zero and a large step would destabilise. Everything else gets ``lr`` and
    ``weight_decay``. Parameters with ``requires_grad=False`` are left out; empty
    groups are dropped. Example: ``torch.optim.AdamW(param_groups(model, 1e-2, 0.05))``.
    """
    from .s4 import S4

    for name, value in (("lr", lr), ("weight_decay", weight_decay), ("ssm_lr", ssm_lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{name}: expected a non-negative number, got {value!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    ssm_ids = {id(p) for m in model.modules() if isinstance(m, S4) for p in m.ssm_parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if id(p) not in ssm_ids], "lr": lr, "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in ssm_ids], "lr": ssm_lr, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]
