"""Generated audio: writing and plotting samples, and scoring them as the SaShiMi paper
scores SC09 samples, with ssmkit's FSDD classifier in place of the SC09 one.

- ``inception_score(log_probs)``: exp E_x KL(p(y|x) || p(y)) (Salimans et al. 2016);
- ``modified_inception_score(log_probs)``: exp E_{x != x'} KL(p(y|x) || p(y|x'))
  (Gurumurthy et al. 2017): also rewards variety within a class;
- ``confident_fraction(log_probs, threshold)``: the share of samples whose top class
  has more than ``threshold`` of the probability.

``ssmkit generate`` writes its samples with ``write_samples`` and ``plot_samples``;
``ssmkit eval samples`` (see :mod:`ssmkit.cli.eval`) scores them with
``classifier_log_probs`` and ``scores``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# ------------------------------------------------------------------------------ scores


def _log_probs(log_probs) -> np.ndarray:
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 2 or lp.shape[0] < 2 or lp.shape[1] < 2:
        raise ValueError(f"log_probs: expected (samples >= 2, classes >= 2) log-probabilities, got shape {lp.shape}")
    if not np.allclose(np.exp(lp).sum(1), 1.0, atol=1e-6):
        raise ValueError("log_probs: expected rows of log-probabilities (log_softmax of the logits); rows do not sum to 1")
    return lp


def inception_score(log_probs) -> float:
    """exp(mean_x KL(p(y|x) || p(y))), p(y) the mean of p(y|x); in [1, classes]."""
    lp = _log_probs(log_probs)
    p = np.exp(lp)
    log_marginal = np.log(p.mean(0))
    return float(np.exp((p * (lp - log_marginal)).sum(1).mean()))


def modified_inception_score(log_probs) -> float:
    """exp(mean over ordered pairs x != x' of KL(p(y|x) || p(y|x')))."""
    lp = _log_probs(log_probs)
    p = np.exp(lp)
    kl = (p * lp).sum(1, keepdims=True) - p @ lp.T  # kl[i, j] = KL(p_i || p_j)
    n = len(lp)
    return float(np.exp((kl.sum() - np.trace(kl)) / (n * (n - 1))))


def confident_fraction(log_probs, threshold: float = 0.5) -> float:
    """The share of samples whose most likely class has probability above `threshold`."""
    return float((np.exp(_log_probs(log_probs)).max(1) > threshold).mean())


def scores(log_probs, threshold: float = 0.5) -> dict:
    lp = _log_probs(log_probs)
    counts = np.bincount(lp.argmax(1), minlength=lp.shape[1])
    return {
        "samples": len(lp),
        "inception_score": inception_score(lp),
        "modified_inception_score": modified_inception_score(lp),
        f"confident_fraction_{threshold:g}": confident_fraction(lp, threshold),
        "mean_top_probability": float(np.exp(lp).max(1).mean()),
        "predicted_class_counts": counts.tolist(),
    }


def classifier_log_probs(classifier, waves, batch_size=16) -> np.ndarray:
    """log p(y|x) (float64, (samples, classes)) of a classifier over waveforms, in batches."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(waves), batch_size):
            out.append(torch.log_softmax(classifier(waves[i : i + batch_size]).double(), -1))
    return torch.cat(out).cpu().numpy()


# ------------------------------------------------------------------------------ samples on disk


def write_samples(waveforms, sample_rate: int, out: Path, prefix: str = "sample") -> list:
    """WAV files ``{prefix}_000.wav`` ... from waveforms (n, T) in [-1, 1]; returns the paths."""
    from ..data.audio import write_wav

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, w in enumerate(waveforms):
        path = out / f"{prefix}_{i:03d}.wav"
        write_wav(path, w, sample_rate)
        paths.append(path)
    return paths


def plot_samples(waveforms, sample_rate: int, path: Path, title: str = "", most: int = 8) -> None:
    """Waveform (top) and spectrogram (bottom) of up to `most` samples, one column each, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    waves = [np.asarray(w, dtype=np.float64) for w in list(waveforms)[:most]]
    fig, axes = plt.subplots(2, len(waves), figsize=(2.6 * len(waves), 4.6), squeeze=False)
    for i, w in enumerate(waves):
        t = np.arange(len(w)) / sample_rate
        axes[0, i].plot(t, w, lw=0.4)
        axes[0, i].set(ylim=(-1, 1), title=f"#{i}", xlabel="s")
        nfft = min(256, max(16, len(w) // 8))
        with np.errstate(divide="ignore"):  # silent stretches have zero power: -inf dB, drawn as the floor
            axes[1, i].specgram(w, NFFT=nfft, Fs=sample_rate, noverlap=nfft // 2, cmap="magma")
        axes[1, i].set(xlabel="s", ylabel="Hz" if i == 0 else None)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def read_samples(folder: Path, sample_rate: int, length: int):
    """The WAVs of a folder (sorted) at `sample_rate`, cropped or zero-padded to `length`: float32 (n, length)."""
    import torch

    from ..data.audio import fix_length, read_wav, resample

    files = sorted(Path(folder).glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"DIR: no .wav files in {folder}")
    out = []
    for f in files:
        x, rate = read_wav(f)
        x = resample(x, rate, sample_rate) if rate != sample_rate else x
        out.append(fix_length(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), length, crop="left"))
    return torch.stack(out), files
