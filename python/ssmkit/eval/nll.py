"""SaShiMi's score on audio: the negative log-likelihood of 8-bit mu-law codes, over the
real samples of each clip only (clips have different lengths; the silence a batch is
padded with is never scored).

- ``MuLawClips(folder)``: a WavFolder's clips as mu-law code sequences of their own length;
- ``collate_codes(batch)``: pads a batch of them, with the mask of real samples;
- ``masked_nll(model, codes, mask)``: the summed NLL (nats) over the real samples, and their count;
- ``test_nll(model, clips)``: a model's mean NLL over the real samples, in bits per sample;
- ``unigram_entropy_bits(clips)``: the NLL of the best model that ignores context.

``ssmkit train sashimi`` scores its validation and test sets with these, ``ssmkit eval
samples --checkpoint`` too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.distributed as dist

from ..data.audio import WavFolder, mu_law_encode

LN2 = math.log(2.0)


class MuLawClips(torch.utils.data.Dataset):
    """A WavFolder's waveforms as 8-bit mu-law codes: int64 (n,), n the clip's real length.

    The folder must not pad (``pad="none"``): its ``length`` is then the longest crop.
    """

    def __init__(self, folder: WavFolder, indices=None):
        if folder.pad != "none" and folder.length is not None:
            raise ValueError(f"folder: expected a WavFolder with pad='none' (real samples only), got pad={folder.pad!r}")
        self.folder = folder
        self.indices = list(range(len(folder))) if indices is None else list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        x, _ = self.folder[self.indices[i]]
        return mu_law_encode(x.reshape(-1))

    def lengths(self) -> list[int]:
        """Each clip's length after cropping (from the file headers; for batching by length)."""
        out = []
        for i in self.indices:
            it = self.folder.items[i]
            n = math.ceil(it["frames"] * it["sample_rate"] / it["orig_sample_rate"])
            out.append(n if self.folder.length is None else min(n, self.folder.length))
        return out


def collate_codes(batch):
    """Code sequences of different lengths -> (codes (B, T_max) padded with 0, mask (B, T_max) True on real samples)."""
    if not batch:
        raise ValueError("batch: expected at least one code sequence, got none")
    lengths = torch.tensor([len(c) for c in batch])
    codes = torch.nn.utils.rnn.pad_sequence(list(batch), batch_first=True)
    return codes, torch.arange(codes.shape[1]) < lengths[:, None]


def masked_nll(model, codes: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the NLL in nats over the real samples, their count). The model is causal,
    so the padding after a clip changes none of its real samples' predictions."""
    nll = model.nll(codes)
    return (nll * mask).sum(), mask.sum()


@torch.no_grad()
def test_nll(model, dataset, device="cpu", batch_size=8, rank=0, world=1, progress=False) -> float:
    """Mean NLL in bits per real sample over a dataset of code sequences (MuLawClips or a
    list of code tensors). Clips are batched in order of length, so a batch pads little;
    each process takes every world-th batch and the totals are summed across processes."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    lengths = dataset.lengths() if hasattr(dataset, "lengths") else [len(c) for c in dataset]
    order = sorted(range(len(dataset)), key=lengths.__getitem__)
    batches: Iterable[list[int]] = [order[i : i + batch_size] for i in range(0, len(order), batch_size)][rank::world]
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="test NLL", mininterval=1.0, dynamic_ncols=True)
    for batch in batches:
        codes, mask = collate_codes([dataset[i] for i in batch])
        total, count = masked_nll(model, codes.to(device), mask.to(device))
        totals += torch.stack([total.double(), count.double()])
    if world > 1:
        dist.all_reduce(totals)
    model.train(was_training)
    return (totals[0] / totals[1]).item() / LN2


def unigram_counts(dataset) -> torch.Tensor:
    """How often each of the 256 codes occurs over a dataset's (real) samples: float64 (256,)."""
    counts = torch.zeros(256, dtype=torch.float64)
    for i in range(len(dataset)):
        counts += torch.bincount(dataset[i], minlength=256).double()
    return counts


def unigram_entropy_bits(dataset) -> float:
    """Entropy (bits) of the codes' histogram over a dataset: the NLL of the best model
    that ignores context (and that knows the test set's histogram)."""
    counts = unigram_counts(dataset)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * torch.log2(p)).sum())
