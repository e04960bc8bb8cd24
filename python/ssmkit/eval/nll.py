"""SaShiMi's score on audio: the negative log-likelihood of 8-bit mu-law codes.

- ``MuLawClips(folder)``: a WavFolder's clips as mu-law code sequences;
- ``test_nll(model, clips)``: a model's mean NLL over them, in bits per sample;
- ``unigram_entropy_bits(clips)``: the NLL of the best model that ignores context.

``ssmkit train sashimi`` scores its test set with these, ``ssmkit eval samples --checkpoint``
too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.distributed as dist

from ..data.audio import WavFolder, mu_law_encode

LN2 = math.log(2.0)


class MuLawClips(torch.utils.data.Dataset):
    """A WavFolder's waveforms as fixed-length 8-bit mu-law codes: int64 (length,)."""

    def __init__(self, folder: WavFolder, indices=None):
        self.folder = folder
        self.indices = list(range(len(folder))) if indices is None else list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        x, _ = self.folder[self.indices[i]]
        return mu_law_encode(x.reshape(-1))


@torch.no_grad()
def test_nll(model, dataset, device="cpu", batch_size=8, rank=0, world=1, progress=False) -> float:
    """Mean NLL in bits per sample over a dataset of code sequences (each process takes
    every world-th item; the totals are summed across processes)."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    items = torch.utils.data.Subset(dataset, range(rank, len(dataset), world))
    loader: Iterable = torch.utils.data.DataLoader(items, batch_size=batch_size)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="test NLL", mininterval=1.0, dynamic_ncols=True)
    for codes in loader:
        nll = model.nll(codes.to(device))
        totals += torch.stack([nll.double().sum(), torch.tensor(float(nll.numel()), dtype=torch.float64, device=device)])
    if world > 1:
        dist.all_reduce(totals)
    model.train(was_training)
    return (totals[0] / totals[1]).item() / LN2


def unigram_entropy_bits(dataset) -> float:
    """Entropy (bits) of the codes' histogram over a dataset: the NLL of the best model
    that ignores context (and that knows the test set's histogram)."""
    counts = torch.zeros(256, dtype=torch.float64)
    for i in range(len(dataset)):
        counts += torch.bincount(dataset[i], minlength=256).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * torch.log2(p)).sum())
