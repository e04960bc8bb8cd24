"""``ssmkit eval robustness`` end to end on a tiny FSDD-like folder and an (untrained)
ssmkit checkpoint; usage errors. The suite itself is tested in test_robustness_bench.py."""

import json
import math

import numpy as np
import pytest

from ssmkit.cli import main

torch = pytest.importorskip("torch")

SPEAKERS = {"ann": {"gender": "female", "accent": "north"}, "bob": {"gender": "male", "accent": "south"}}


def fsdd_like(folder):
    """3 digits x 2 speakers x takes 0, 1, 5: takes 0 and 1 are the test split (12 files)."""
    from ssmkit.data.audio import write_wav

    rng = np.random.default_rng(0)
    (folder / "recordings").mkdir(parents=True)
    for digit in range(3):
        for speaker in SPEAKERS:
            for take in (0, 1, 5):
                n = int(rng.integers(300, 900))
                t = np.arange(n) / 8000
                x = rng.uniform(0.05, 0.5) * np.sin(2 * np.pi * 300 * (digit + 1) * t)
                write_wav(folder / "recordings" / f"{digit}_{speaker}_{take}.wav", x.astype(np.float32), 8000)
    (folder / "speakers.json").write_text(json.dumps(SPEAKERS))
    return folder


def checkpoint(path, task="fsdd"):
    from ssmkit.models.checkpoint import build_classifier
    from ssmkit.train.common import save_checkpoint

    config = {
        "d_input": 8,
        "n_classes": 3,
        "d_model": 8,
        "n_layers": 1,
        "d_state": 8,
        "mode": "diag",
        "dropout": 0.0,
        "embedding": False,
        "s4": {},
        "patch": 8,
        "n_targets": 1,
        "task": task,
        "input": {"sample_rate": 8000, "length": 640, "patch": 8} if task == "fsdd" else {"length": 640},
        "classes": ["0", "1", "2"],
    }
    torch.manual_seed(0)
    save_checkpoint(path, {"model_config": config, "model": build_classifier(config).state_dict()})
    return path


def test_eval_robustness_writes_the_report(tmp_path, capsys):
    data, ckpt, out = fsdd_like(tmp_path / "fsdd"), checkpoint(tmp_path / "best.pt"), tmp_path / "out"
    argv = ["eval", "robustness", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out)]
    assert main(argv + ["--pgd-eps", "0.01", "0.1", "--pgd-steps", "1", "--batch-size", "6", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert "noise 10 dB SNR" in captured.out and "report.png" in captured.err
    report = json.loads((out / "report.json").read_text())
    assert report["info"]["examples"] == 12 and report["info"]["checkpoint"] == str(ckpt)
    names = [row["slice"] for row in report["rows"]]
    expected = ["all", "speaker=ann", "speaker=bob", "accent=north", "accent=south", "duration 0%-25%", "loudness (RMS) 75%-100%"]
    expected += [f"noise {snr} dB SNR" for snr in (30, 20, 10, 0)] + ["gain -20 dB", "gain +6 dB", "shift +10%"]
    expected += ["speed x0.9", "speed x1.1", "clip 25% of peak", "mu-law 8 bit", "mask 10%", "PGD L-inf eps=0.01", "PGD L-inf eps=0.1"]
    assert set(expected) <= set(names)
    rows = {row["slice"]: row for row in report["rows"]}
    assert rows["speaker=ann"]["size"] == rows["speaker=bob"]["size"] == 6
    assert sum(rows[f"duration {q}"]["size"] for q in ("0%-25%", "25%-50%", "50%-75%", "75%-100%")) == 12
    assert all(0 <= rows[name]["accuracy"] <= 1 and math.isfinite(rows[name]["cross_entropy"]) for name in expected)
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"

    # --limit: a seeded subset, the same one each time.
    assert main(argv + ["--limit", "5", "--pgd-eps", "0", "--no-progress"]) == 0
    first = json.loads((out / "report.json").read_text())
    assert first["info"]["examples"] == 5
    assert main(argv + ["--limit", "5", "--pgd-eps", "0", "--no-progress"]) == 0
    assert json.loads((out / "report.json").read_text())["rows"] == first["rows"]


def test_a_checkpoint_of_another_task_is_refused(tmp_path):
    data, ckpt = fsdd_like(tmp_path / "fsdd"), checkpoint(tmp_path / "listops.pt", task="listops")
    with pytest.raises(ValueError, match="holds a 'listops' classifier; the audio suite needs a waveform classifier"):
        main(["eval", "robustness", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "out")])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--checkpoint", "/no/such.pt", "--data", ".", "--out", "o"], "no such file: '/no/such.pt'"),
        (["--checkpoint", __file__, "--data", "/no/such/dir", "--out", "o"], "no such folder: '/no/such/dir'"),
        (["--checkpoint", __file__, "--data", ".", "--out", "o", "--pgd-eps", "-1"], "expected a budget >= 0, got '-1'"),
        (["--checkpoint", __file__, "--data", ".", "--out", "o", "--limit", "0"], "expected a positive whole number, got '0'"),
        (["--data", ".", "--out", "o"], "the following arguments are required: --checkpoint"),
    ],
)
def test_usage_errors_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "robustness", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
