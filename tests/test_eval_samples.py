"""Scores of generated samples (Inception Score, modified IS, confident fraction) against
direct per-pair KL sums (scipy), sample files and plots, and ``ssmkit eval samples``."""

import itertools
import json

import numpy as np
import pytest
import torch
from scipy.stats import entropy

from ssmkit.eval import samples


def random_log_probs(n, classes, seed=0, sharp=3.0):
    logits = sharp * np.random.default_rng(seed).standard_normal((n, classes))
    return torch.log_softmax(torch.from_numpy(logits), -1).numpy()


def test_inception_scores_equal_their_definitions():
    lp = random_log_probs(7, 5)
    p = np.exp(lp)
    marginal = p.mean(0)
    is_truth = np.exp(np.mean([entropy(pi, marginal) for pi in p]))  # entropy(p, q) = KL(p || q)
    mis_truth = np.exp(np.mean([entropy(p[i], p[j]) for i, j in itertools.permutations(range(len(p)), 2)]))
    assert samples.inception_score(lp) == pytest.approx(is_truth, rel=1e-12)
    assert samples.modified_inception_score(lp) == pytest.approx(mis_truth, rel=1e-12)
    assert samples.confident_fraction(lp, 0.5) == np.mean(p.max(1) > 0.5)


def test_inception_score_limits():
    classes = 10
    same = np.tile(random_log_probs(1, classes), (6, 1))  # one prediction for every sample
    assert samples.inception_score(same) == pytest.approx(1.0)
    assert samples.modified_inception_score(same) == pytest.approx(1.0)
    # near one-hot and evenly spread over the classes: IS -> number of classes
    eps = 1e-9
    sharp = np.log(np.full((classes, classes), eps / (classes - 1)) + np.eye(classes) * (1 - eps - eps / (classes - 1)))
    assert samples.inception_score(sharp) == pytest.approx(classes, rel=1e-6)
    assert samples.confident_fraction(sharp) == 1.0
    report = samples.scores(sharp)
    assert report["predicted_class_counts"] == [1] * classes and report["samples"] == classes


def test_scores_reject_bad_input():
    with pytest.raises(ValueError, match="log_probs: expected"):
        samples.inception_score(np.zeros(5))
    with pytest.raises(ValueError, match="rows do not sum to 1"):
        samples.inception_score(np.zeros((3, 4)))


def test_write_read_and_plot_samples(tmp_path):
    waves = np.sin(np.linspace(0, 200, 2 * 800)).reshape(2, 800).astype(np.float32) * 0.5
    paths = samples.write_samples(waves, 8000, tmp_path)
    assert [p.name for p in paths] == ["sample_000.wav", "sample_001.wav"]
    back, files = samples.read_samples(tmp_path, 8000, 1000)
    assert back.shape == (2, 1000) and torch.all(back[:, 800:] == 0)
    assert torch.allclose(back[:, :800], torch.from_numpy(waves), atol=1 / 32767)
    samples.plot_samples(waves, 8000, tmp_path / "s.png", "test")
    assert (tmp_path / "s.png").stat().st_size > 1000


class _Classifier(torch.nn.Module):
    """A stand-in FSDD classifier: its classes are the loudness of the clip in 3 bins."""

    model_config = {"input": {"sample_rate": 8000, "length": 800}}

    def forward(self, x):
        rms = x.pow(2).mean(-1).sqrt()
        return torch.stack([-50 * (rms - c).abs() for c in (0.1, 0.3, 0.5)], -1)


def test_eval_samples_command(tmp_path, monkeypatch, capsys):
    from ssmkit.models import checkpoint

    monkeypatch.setattr(checkpoint, "load_classifier", lambda path, device="cpu": _Classifier())
    t = np.arange(800) / 8000
    waves = np.stack([a * np.sqrt(2) * np.sin(2 * np.pi * 440 * t) for a in (0.1, 0.3, 0.5, 0.5)]).astype(np.float32)
    samples.write_samples(waves, 8000, tmp_path / "gen")
    (tmp_path / "c.pt").write_bytes(b"")
    from ssmkit.cli import main

    assert main(["eval", "samples", "--classifier", str(tmp_path / "c.pt"), str(tmp_path / "gen"), "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    gen = report["generated"]
    assert gen["predicted_class_counts"] == [1, 1, 2] and gen["confident_fraction_0.5"] == 1.0
    read, _ = samples.read_samples(tmp_path / "gen", 8000, 800)  # the 16-bit WAVs the command read
    lp = torch.log_softmax(_Classifier()(read).double(), -1).numpy()
    assert gen["inception_score"] == pytest.approx(samples.inception_score(lp), rel=1e-6)
    assert json.loads(capsys.readouterr().out) == report
