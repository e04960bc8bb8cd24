"""A tiny audio-like classification task and a plain torch classifier trained on it, shared
by the robustness tests (no ssmkit model involved: the bench must work with any classifier)."""

from __future__ import annotations

import functools

import torch

STEPS = 40
N_CLASSES = 3
LENGTH = 64
SPEAKERS = ("ann", "bob", "cy")
ACCENTS = {"ann": "north", "bob": "south", "cy": "north"}


def tone_dataset(n: int, *, seed: int, lengths: tuple[int, int] | None = None):
    """n examples (x (length, 1), label) of a tone whose frequency is the class, at a random
    amplitude and phase, plus a little noise; lengths drawn from [lo, hi] when given (else
    LENGTH). Returns (items, metadata) with speaker, accent and duration per example."""
    g = torch.Generator().manual_seed(seed)
    items, metadata = [], []
    for i in range(n):
        label = i % N_CLASSES
        length = LENGTH if lengths is None else int(torch.randint(lengths[0], lengths[1] + 1, (), generator=g))
        t = torch.arange(length, dtype=torch.float32)
        amplitude = 0.1 + 0.8 * torch.rand((), generator=g)
        phase = 2 * torch.pi * torch.rand((), generator=g)
        x = amplitude * torch.sin(2 * torch.pi * (label + 1) * t / 16 + phase) + 0.02 * torch.randn(length, generator=g)
        items.append((x.unsqueeze(-1), label))
        speaker = SPEAKERS[i % len(SPEAKERS)]
        metadata.append({"speaker": speaker, "accent": ACCENTS[speaker], "duration": length / 8000})
    return items, metadata


class ConvClassifier(torch.nn.Module):
    """A plain torch classifier of (batch, length, 1) sequences: conv, ReLU, mean pool, linear."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 8, kernel_size=9, padding=4)
        self.head = torch.nn.Linear(8, N_CLASSES)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x.transpose(1, 2))).mean(2))


@functools.lru_cache(maxsize=None)
def trained_classifier() -> ConvClassifier:
    """ConvClassifier trained to (near) 100% on tone_dataset; cached across tests."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = ConvClassifier()
        items, _ = tone_dataset(96, seed=1)
        x = torch.stack([x for x, _ in items])
        y = torch.tensor([label for _, label in items])
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(STEPS):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    return model.eval()
