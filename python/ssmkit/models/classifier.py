"""A sequence classifier: encoder, residual S4 blocks, pooling over length, decoder."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..nn import S4

POOLS = ("mean", "last")


class SequenceClassifier(nn.Module):
    """Classify sequences (batch, length, d_input) into ``n_classes``.

    encoder (linear, or an embedding of token ids when ``embedding=True``) -> ``n_layers``
    residual blocks ``x + dropout(S4(norm(x)))`` (pre-norm; ``prenorm=False`` normalises
    after the sum instead) -> final norm (pre-norm) -> pooling over length -> linear decoder.

    ``pool="mean"`` averages over the valid steps, ``"last"`` takes the last valid step.
    ``mask`` (batch, length), True at valid steps, handles right-padded batches: the S4
    layers are causal, so the padding after a sequence cannot change its valid steps
    (with ``bidirectional=True`` it can: pad with care). ``embed`` returns the pooled
    penultimate features (batch, d_model). Other keyword arguments (``init``,
    ``dt_min``, ``dt_max``, ``activation``, ``backend``, ``l_max``, ``discretization``,
    ``bidirectional``) go to every :class:`~ssmkit.nn.S4`.
    """

    model_config: dict  # set by ssmkit.models.checkpoint.load_classifier

    def __init__(
        self,
        d_input: int,
        n_classes: int,
        *,
        d_model: int = 128,
        n_layers: int = 4,
        d_state: int = 64,
        mode: str = "dplr",
        dropout: float = 0.1,
        pool: str = "mean",
        prenorm: bool = True,
        embedding: bool = False,
        **s4_kwargs,
    ):
        super().__init__()
        for name, value in (("d_input", d_input), ("n_classes", n_classes), ("d_model", d_model), ("n_layers", n_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if pool not in POOLS:
            raise ValueError(f"pool: expected one of {', '.join(map(repr, POOLS))}, got {pool!r}")
        self.d_input, self.pool, self.prenorm, self.embedding = d_input, pool, bool(prenorm), bool(embedding)
        self.encoder = nn.Embedding(d_input, d_model) if embedding else nn.Linear(d_input, d_model)
        self.layers = nn.ModuleList(
            S4(d_model, d_state, mode=mode, dropout=dropout, **s4_kwargs) for _ in range(n_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.dropouts = nn.ModuleList(nn.Dropout(dropout) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(d_model) if prenorm else nn.Identity()
        self.decoder = nn.Linear(d_model, n_classes)

    def _encode(self, x):
        if self.embedding:
            if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.dtype not in (torch.int64, torch.int32):
                got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(f"x: expected integer token ids of shape (batch, length), got {got}")
            return self.encoder(x)
        if isinstance(x, torch.Tensor) and x.dim() == 2 and self.d_input == 1:
            x = x.unsqueeze(-1)  # (batch, length) of scalars, e.g. raw audio
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.d_input:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected shape (batch, length, {self.d_input}) (d_input), got {got}")
        return self.encoder(x)

    def embed(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The pooled features before the decoder: (batch, d_model)."""
        h = self._encode(x)
        for layer, norm, dropout in zip(self.layers, self.norms, self.dropouts):
            if self.prenorm:
                h = h + dropout(layer(norm(h))[0])
            else:
                h = norm(h + dropout(layer(h)[0]))
        h = self.final_norm(h)
        return self._pool(h, mask)

    def _pool(self, h, mask):
        if mask is None:
            return h.mean(1) if self.pool == "mean" else h[:, -1]
        if mask.shape != h.shape[:2] or mask.dtype != torch.bool:
            raise ValueError(
                f"mask: expected a bool tensor of shape {tuple(h.shape[:2])} (batch, length), "
                f"got {tuple(mask.shape)} {mask.dtype}"
            )
        counts = mask.sum(1)
        if self.pool == "mean":
            return (h * mask.unsqueeze(-1)).sum(1) / counts.clamp(min=1).unsqueeze(-1).to(h.dtype)
        last = (counts - 1).clamp(min=0)
        return h[torch.arange(h.shape[0], device=h.device), last]

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Class logits (batch, n_classes)."""
        return self.decoder(self.embed(x, mask))
