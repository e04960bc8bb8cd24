"""Generated audio: writing and plotting samples, and scoring them as the SaShiMi paper
scores SC09 samples, with ssmkit's FSDD classifier in place of the SC09 one.

- ``inception_score(log_probs)``: exp E_x KL(p(y|x) || p(y)) (Salimans et al. 2016);
- ``modified_inception_score(log_probs)``: exp E_{x != x'} KL(p(y|x) || p(y|x'))
  (Gurumurthy et al. 2017): also rewards variety within a class;
- ``confident_fraction(log_probs, threshold)``: the share of samples whose top class
  has more than ``threshold`` of the probability.

``ssmkit generate`` and ``ssmkit eval samples`` are defined here (no torch import until
one runs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from .._cli_args import existing, positive

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


# ------------------------------------------------------------------------------ commands


def _unit_interval(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def add_generate_parser(commands) -> None:
    """``ssmkit generate``: sample audio from a trained SaShiMi."""
    p = commands.add_parser(
        "generate",
        help="generate audio with a trained SaShiMi",
        description="Sample audio from a SaShiMi checkpoint (ssmkit train sashimi) in recurrent mode. Writes "
        "sample_000.wav ... and samples.png (waveforms and spectrograms) into --out.",
    )
    p.add_argument("--checkpoint", required=True, type=existing("file"), metavar="C", help="SaShiMi checkpoint (best.pt or last.pt)")
    p.add_argument("--n", type=positive(int), default=8, help="number of samples (default 8)")
    p.add_argument("--seconds", type=positive(float), default=1.0, help="length of each sample (default 1)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the WAVs and samples.png")
    p.add_argument("--batch-size", type=positive(int), default=16, help="streams generated together (default 16)")
    p.add_argument("--temperature", type=positive(float), default=1.0)
    p.add_argument("--top-p", type=_unit_interval, default=1.0, help="nucleus sampling mass (default 1: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive(int), metavar="N", help="CPU threads for torch and ssmkit")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(handler=generate_command)


def generate_command(args) -> int:
    import time

    import torch

    from ..data.audio import mu_law_decode
    from ..train.sashimi import load_sashimi

    if args.threads is not None:
        from .. import set_num_threads

        set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    model = load_sashimi(args.checkpoint, args.device)
    length = round(args.seconds * model.sample_rate)
    generator = torch.Generator(args.device).manual_seed(args.seed)
    began, chunks = time.time(), []
    for start in range(0, args.n, args.batch_size):
        n = min(args.batch_size, args.n - start)
        chunks.append(model.generate(n, length, args.temperature, args.top_p, generator=generator, progress=args.progress))
    seconds = time.time() - began
    waves = mu_law_decode(torch.cat(chunks)).cpu().numpy()
    paths = write_samples(waves, model.sample_rate, args.out)
    plot_samples(waves, model.sample_rate, args.out / "samples.png", f"SaShiMi samples ({args.checkpoint.name}, T={args.temperature:g}, top-p={args.top_p:g})")
    print(
        f"wrote {len(paths)} samples of {length} samples ({args.seconds:g} s at {model.sample_rate} Hz) and samples.png "
        f"to {args.out} in {seconds:.1f} s ({args.n * length / seconds:,.0f} samples/s)"
    )
    return 0


def add_parser(evaluations) -> None:
    """``ssmkit eval samples``: score generated WAVs with a classifier (and a model's test NLL)."""
    p = evaluations.add_parser(
        "samples",
        help="score generated audio with a classifier (Inception Score, modified IS, confident fraction)",
        description="Score the WAVs in DIR with a trained FSDD classifier (ssmkit train classify): Inception Score, "
        "modified Inception Score and the fraction of confident predictions, as the SaShiMi paper scores SC09 "
        "samples. With --checkpoint, also the SaShiMi model's test-set NLL in bits per sample (and the unigram "
        "mu-law entropy of the test set); with --data, the same scores for as many real test clips.",
    )
    p.add_argument("dir", type=existing("folder"), metavar="DIR", help="folder of generated WAVs")
    p.add_argument("--classifier", required=True, type=existing("file"), metavar="C", help="FSDD classifier checkpoint")
    p.add_argument("--checkpoint", type=existing("file"), metavar="M", help="SaShiMi checkpoint: also report its test-set NLL")
    p.add_argument("--data", type=existing("folder"), metavar="FSDD", help="FSDD folder (default: $SSMKIT_FSDD or ../shared/data/fsdd)")
    p.add_argument("--threshold", type=_unit_interval, default=0.5, help="top-class probability counted as confident (default 0.5)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the report to FILE")
    p.add_argument("--threads", type=positive(int), metavar="N", help="CPU threads for torch and ssmkit")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler=samples_command)


def _classifier_log_probs(classifier, waves, batch_size=16):
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(waves), batch_size):
            out.append(torch.log_softmax(classifier(waves[i : i + batch_size]).double(), -1))
    return torch.cat(out).cpu().numpy()


def samples_command(args) -> int:
    import torch

    try:
        from ..train.classify import load_classifier
    except ImportError:
        print("ssmkit eval samples: this build has no ssmkit.train.classify (the FSDD classifier trainer)", file=sys.stderr)
        return 1
    if args.threads is not None:
        from .. import set_num_threads

        set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    classifier = load_classifier(args.classifier, args.device)
    spec = classifier.model_config.get("input", {})
    rate, length = spec.get("sample_rate", 8000), spec.get("length", 8000)
    waves, files = read_samples(args.dir, rate, length)
    report = {"dir": str(args.dir), "classifier": str(args.classifier), "generated": scores(_classifier_log_probs(classifier, waves.to(args.device)), args.threshold)}
    data_root = args.data
    if data_root is None and args.checkpoint is not None:
        from ..data import fsdd_root

        data_root = fsdd_root()
    if data_root is not None:
        from ..data.audio import WavFolder

        test = WavFolder(data_root, rate, length, split="test", crop="left", channel_dim=False)
        pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[: len(files)].tolist()
        real = torch.stack([test[i][0] for i in pick])
        report["real_test_clips"] = scores(_classifier_log_probs(classifier, real.to(args.device)), args.threshold)
    if args.checkpoint is not None:
        from ..train.sashimi import MuLawClips, load_sashimi, test_nll, unigram_entropy_bits

        model = load_sashimi(args.checkpoint, args.device)
        clips = MuLawClips(WavFolder(data_root, model.sample_rate, model.clip_length, split="test", crop="left", channel_dim=False))
        report["test_nll_bits"] = test_nll(model, clips, args.device, progress=True)
        report["test_unigram_entropy_bits"] = unigram_entropy_bits(clips)
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0
