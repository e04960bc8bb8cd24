"""ssmkit train sashimi (checkpoints, --resume, DDP) and ssmkit generate, on a tiny WAV folder."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ssmkit.cli import main
from ssmkit.data.audio import mu_law_encode, read_wav, write_wav
from ssmkit.eval.nll import unigram_entropy_bits
from ssmkit.models.checkpoint import load_sashimi

TINY = ["--d-model", "4", "--n-layers", "1", "--pool", "2,2", "--d-state", "4", "--ff", "1", "--length", "64"]


@pytest.fixture(scope="module")
def wav_folder(tmp_path_factory):
    """Digits 0-1, one speaker, takes 0-6 (0-4 test, 5-6 train): decaying tones."""
    root = tmp_path_factory.mktemp("wavs")
    rng = np.random.default_rng(0)
    t = np.arange(400) / 8000
    for digit in range(2):
        for take in range(7):
            tone = 0.5 * np.sin(2 * np.pi * (300 + 200 * digit) * t) * np.exp(-5 * t) + 0.01 * rng.standard_normal(len(t))
            write_wav(root / f"{digit}_spk_{take}.wav", tone.astype(np.float32), 8000)
    return root


def train(out, wav_folder, *extra):
    argv = ["train", "sashimi", "--data", str(wav_folder), "--out", str(out), "--batch-size", "2", "--no-progress", "--threads", "1"]
    assert main(argv + TINY + list(extra)) == 0
    return json.loads((out / "metrics.json").read_text())


def test_train_writes_checkpoints_metrics_plot_and_resumes(tmp_path, wav_folder):
    out = tmp_path / "run"
    summary = train(out, wav_folder, "--epochs", "2")
    # 4 training clips: 1 held out (seeded) as the validation set that chooses best.pt
    assert summary["train_items"] == 3 and summary["val_items"] == 1 and summary["test_items"] == 10 and summary["epochs_done"] == 2
    for name in ("last.pt", "best.pt", "metrics.csv", "loss.png"):
        assert (out / name).is_file(), name
    history = summary["history"]
    assert [h["epoch"] for h in history] == [1, 2] and history[-1]["step"] == 2
    assert all(math.isfinite(h["val_bits"]) and 0 < h["val_bits"] < 8.5 for h in history)
    best = min(history, key=lambda h: h["val_bits"])
    assert summary["best_epoch"] == best["epoch"] and torch.load(out / "best.pt", weights_only=False)["epoch"] == best["epoch"]
    # the clips are shorter than --length: nothing is cropped or padded, every batched sample is real
    assert summary["train_real_fraction"] == 1.0
    # the test NLL reported is best.pt's, over the real samples
    from ssmkit.eval.nll import test_nll
    from ssmkit.train.config import SashimiConfig
    from ssmkit.train.sashimi import make_datasets

    train_set, val, test = make_datasets(SashimiConfig(data=str(wav_folder), length=64))
    assert not set(train_set.indices) & set(val.indices) and len(train_set) + len(val) == 4
    model = load_sashimi(out / "best.pt")
    assert model.sample_rate == 8000 and model.clip_length == 64
    assert abs(test_nll(model, test) - summary["test_bits"]) < 1e-5
    assert abs(summary["test_unigram_entropy_bits"] - unigram_entropy_bits(test)) < 1e-12
    # --resume continues from last.pt with the same history
    resumed = train(out, wav_folder, "--epochs", "3", "--resume")
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert resumed["history"][:2] == history and resumed["history"][-1]["step"] == 3


def test_padding_is_not_scored(tmp_path):
    """A clip scored alone and the same clip padded in a batch beside a longer one give the
    same NLL sum; the unigram counts only real samples."""
    from ssmkit.eval.nll import collate_codes, masked_nll, test_nll
    from ssmkit.models import SaShiMi

    torch.manual_seed(0)
    model = SaShiMi(d_model=4, n_layers=1, pool=(2, 2), d_state=4, ff=1, l_max=64).eval()
    short, long = torch.randint(0, 256, (20,)), torch.randint(0, 256, (50,))
    codes, mask = collate_codes([short, long])
    assert codes.shape == (2, 50) and mask.sum(1).tolist() == [20, 50]
    with torch.no_grad():
        total, count = masked_nll(model, codes, mask)
        alone = model.nll(short[None]).sum() + model.nll(long[None]).sum()
    assert count.item() == 70 and abs(total.item() - alone.item()) < 1e-3
    assert abs(test_nll(model, [short, long]) - alone.item() / 70 / math.log(2)) < 1e-5
    # a silent (code 128 is zero) tail appended as padding would change the unigram; masked it does not
    assert unigram_entropy_bits([short]) != unigram_entropy_bits([torch.cat([short, torch.full((30,), 128)])])


def test_train_crops_long_clips_to_train_length(tmp_path, wav_folder):
    from ssmkit.train.config import SashimiConfig
    from ssmkit.train.sashimi import make_datasets

    train_set, val, test = make_datasets(SashimiConfig(data=str(wav_folder), length=300, train_length=100))
    assert {len(train_set[i]) for i in range(len(train_set))} == {100}  # random crops of the 400-sample clips
    assert {len(c) for c in (val[0], test[0])} == {300} and test.lengths() == [300] * len(test)


def test_speaker_split_holds_out_every_clip_of_a_speaker(tmp_path):
    from ssmkit.data.audio import WavFolder

    for speaker in ("ann", "bob", "cy"):
        for take in range(2):
            write_wav(tmp_path / f"0_{speaker}_{take}.wav", np.zeros(10, np.float32), 8000)
    train_part = WavFolder(tmp_path, split="train", split_by="speaker", test_speakers=["bob"])
    test_part = WavFolder(tmp_path, split="test", split_by="speaker", test_speakers=["bob"])
    assert {it["speaker"] for it in test_part.items} == {"bob"} and len(test_part) == 2
    assert {it["speaker"] for it in train_part.items} == {"ann", "cy"} and len(train_part) == 4
    with pytest.raises(ValueError, match="test_speakers: expected speakers of .* got unknown \\['zed'\\]"):
        WavFolder(tmp_path, split="test", split_by="speaker", test_speakers=["zed"])
    with pytest.raises(ValueError, match="split_by: expected one of 'take', 'speaker', got 'digit'"):
        WavFolder(tmp_path, split="test", split_by="digit")


def test_unigram_entropy_is_the_histogram_entropy():
    codes = [torch.tensor([0, 0, 1, 2]), torch.tensor([2, 2, 2, 2])]  # counts 2, 1, 5 of 8
    p = np.array([2, 1, 5]) / 8
    assert abs(unigram_entropy_bits(codes) - float(-(p * np.log2(p)).sum())) < 1e-12


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, wav_folder):
    with pytest.raises(FileNotFoundError, match="--resume: no checkpoint"):
        train(tmp_path / "empty", wav_folder, "--resume")


def test_bad_options_are_usage_errors(capsys):
    for argv in (["--pool", "4,0"], ["--batch-size", "0"], ["--dropout", "1.5"]):
        with pytest.raises(SystemExit) as e:
            main(["train", "sashimi"] + argv)
        assert e.value.code == 2
    assert "expected pooling factors like 4,4" in capsys.readouterr().err


def test_generate_writes_wavs_and_a_plot(tmp_path, wav_folder, capsys):
    out = tmp_path / "run"
    train(out, wav_folder, "--epochs", "1")
    gen = tmp_path / "samples"
    argv = ["generate", "--checkpoint", str(out / "best.pt"), "--n", "3", "--seconds", "0.01", "--out", str(gen), "--batch-size", "2", "--no-progress", "--seed", "3"]
    assert main(argv) == 0
    wavs = sorted(gen.glob("*.wav"))
    assert [w.name for w in wavs] == ["sample_000.wav", "sample_001.wav", "sample_002.wav"]
    x, rate = read_wav(wavs[0])
    assert rate == 8000 and x.shape == (80,)
    assert (gen / "samples.png").stat().st_size > 1000
    assert "samples/s" in capsys.readouterr().out
    # the same seed gives the same samples; the WAVs hold the mu-law decoded codes
    model = load_sashimi(out / "best.pt")
    g = torch.Generator().manual_seed(3)
    codes = torch.cat([model.generate(2, 80, generator=g), model.generate(1, 80, generator=g)])
    assert torch.equal(mu_law_encode(torch.from_numpy(np.stack([read_wav(w)[0] for w in wavs]))), codes)


def test_load_sashimi_rejects_other_files(tmp_path):
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a checkpoint of 'ssmkit train sashimi'"):
        load_sashimi(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_sashimi(tmp_path / "missing.pt")


@pytest.mark.slow  # two processes starting torch: ~1.5 min on a loaded 2-core machine
@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="no torchrun")
def test_ddp_under_torchrun(tmp_path, wav_folder):
    """Two gloo processes with a global batch of 2 take the steps one process takes."""
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    argv = [str(torchrun), "--nproc_per_node", "2", "-m", "ssmkit", "train", "sashimi", "--data", str(wav_folder),
            "--out", str(out), "--batch-size", "2", "--no-progress", "--threads", "1", "--epochs", "1"] + TINY + ["--length", "512"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["world_size"] == 2 and summary["history"][-1]["step"] == 1  # 3 training clips, global batches of 2
    single = train(tmp_path / "single", wav_folder, "--epochs", "1", "--length", "512")  # longer than the clips: no random crops
    # the same data order and the same averaged gradients: the same model up to rounding
    assert abs(summary["test_bits"] - single["test_bits"]) < 1e-4


def test_generate_unigram_draws_codes_of_the_training_audio(tmp_path, wav_folder):
    from ssmkit.data.audio import WavFolder
    from ssmkit.eval.nll import MuLawClips, unigram_counts

    gen = tmp_path / "unigram"
    assert main(["generate", "--unigram", "--data", str(wav_folder), "--n", "4", "--seconds", "0.25", "--out", str(gen), "--seed", "1"]) == 0
    codes = mu_law_encode(torch.from_numpy(np.stack([read_wav(w)[0] for w in sorted(gen.glob("*.wav"))])))
    assert codes.shape == (4, 2000)
    counts = unigram_counts(MuLawClips(WavFolder(wav_folder, 8000, split="train", pad="none", channel_dim=False)))
    assert (counts[codes.unique()] > 0).all()  # only codes that occur in the training audio
    drawn = torch.bincount(codes.reshape(-1), minlength=256).double()
    p = counts / counts.sum()
    # the draw's histogram follows the training histogram (8000 draws: total variation well under 0.1)
    assert 0.5 * (drawn / drawn.sum() - p).abs().sum() < 0.1
    with pytest.raises(SystemExit) as e:
        main(["generate", "--out", str(gen)])
    assert e.value.code == 2
