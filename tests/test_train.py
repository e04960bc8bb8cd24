"""ssmkit train classify: end-to-end CLI runs, resume, checkpoints, DDP against one process."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from ssmkit.data.audio import write_wav
from ssmkit.models import SequenceClassifier
from ssmkit.models.checkpoint import build_classifier, load_classifier
from ssmkit.models.waveform import PatchClassifier
from ssmkit.train import classify
from ssmkit.train.classify import ShardedBatchSampler, train
from ssmkit.train.config import Config

TINY = ["--d-model", "8", "--n-layers", "2", "--d-state", "4", "--threads", "1", "--no-progress"]


def run(*args, env=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def digits(tmp_path):
    """A folder in FSDD's layout: 3 digits x 2 speakers x takes 0-6, tones by digit."""
    folder = tmp_path / "digits" / "recordings"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for digit in range(3):
        for speaker in ("ann", "bob"):
            for take in range(7):
                n = int(rng.integers(300, 500))
                tone = 0.5 * np.sin(2 * np.pi * (300 + 400 * digit) * np.arange(n) / 8000)
                write_wav(folder / f"{digit}_{speaker}_{take}.wav", tone + 0.01 * rng.standard_normal(n), 8000)
    return folder.parent


def test_cli_fsdd_end_to_end_and_resume(tmp_path, digits):
    out = tmp_path / "run"
    common = ["-m", "ssmkit", "train", "classify", "--task", "fsdd", "--data", str(digits), "--length", "512", "--patch", "4"]
    common += ["--batch-size", "8", "--out", str(out), *TINY]
    done = run(*common, "--epochs", "1")
    assert done.returncode == 0, done.stderr
    assert "11 train / 1 validation / 30 test items" in done.stdout  # takes 5-6 train (one held out), 0-4 test
    for name in ("metrics.csv", "metrics.json", "summary.png", "last.pt", "best.pt"):
        assert (out / name).is_file(), name
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in first] == [1]

    done = run(*common, "--epochs", "3", "--resume")
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in summary["history"]] == [1, 2, 3]
    assert summary["history"][0] == first[0]  # the resumed run keeps epoch 1 as it was
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr", "epoch_seconds"} <= rows[0].keys()
    # best.pt is the first epoch of the best validation accuracy; the test accuracy reported is its
    best = max(summary["history"], key=lambda h: h["val_acc"])
    assert torch.load(out / "best.pt", weights_only=False)["epoch"] == summary["best_epoch"] == best["epoch"]
    assert summary["test_acc"] == best["test_acc"] and summary["best_val_acc"] == best["val_acc"]
    assert summary["model_config"]["input"] == {"sample_rate": 8000, "length": 512, "patch": 4, "normalize": "rms"}

    model = load_classifier(out / "last.pt")
    assert isinstance(model, PatchClassifier) and not model.training
    assert torch.load(out / "last.pt", weights_only=False)["epoch"] == 3
    x = torch.randn(2, 512, 1)
    assert model(x).shape == (2, 3) and model.embed(x).shape == (2, 8)


def test_resume_continues_exactly(tmp_path, monkeypatch):
    """Two epochs straight equal one epoch, a crash after its checkpoint, and --resume."""
    cfg = dict(task="copying", length=32, train_size=48, test_size=16, batch_size=8, epochs=2, d_model=8, n_layers=2)
    cfg |= dict(d_state=4, progress=False, warmup_steps=3)
    train(Config(out=str(tmp_path / "straight"), **cfg))

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash after epoch 1")

    monkeypatch.setattr(classify, "plot_history", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(Config(out=str(tmp_path / "resumed"), **cfg))
    monkeypatch.undo()
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)["epoch"] == 1
    train(Config(out=str(tmp_path / "resumed"), resume=True, **cfg))
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 2
    for name, value in a["model"].items():  # tensors, and the layers' extra state
        assert torch.equal(value, b["model"][name]) if torch.is_tensor(value) else value == b["model"][name], name


def test_resume_needs_a_checkpoint_and_the_same_task(tmp_path):
    with pytest.raises(FileNotFoundError, match="path: no checkpoint at"):
        train(Config(task="copying", out=str(tmp_path), resume=True))
    cfg = dict(length=16, train_size=16, test_size=8, batch_size=8, epochs=1, d_model=8, n_layers=1, d_state=4, progress=False)
    train(Config(task="copying", out=str(tmp_path), **cfg))
    with pytest.raises(ValueError, match="was trained on 'copying', got --task 'listops'"):
        train(Config(task="listops", out=str(tmp_path), resume=True, **cfg))


def test_sharded_batches_add_up_to_the_single_process_batches():
    single = list(ShardedBatchSampler(50, 8, seed=3))
    shards = [list(ShardedBatchSampler(50, 8, rank, 4, seed=3)) for rank in range(4)]
    assert len(single) == 6 and all(len(s) == 6 for s in shards)
    for step, batch in enumerate(single):
        assert sum((s[step] for s in shards), []) == batch
    assert sorted(sum(single, [])) != list(range(48))  # shuffled, last partial batch dropped
    with pytest.raises(ValueError, match="batch_size: expected a multiple of the 3 processes"):
        ShardedBatchSampler(50, 8, 0, 3)


def test_sharded_batches_by_length():
    lengths = torch.randint(1, 1000, (100,)).tolist()
    single = ShardedBatchSampler(100, 10, seed=1, lengths=lengths, bucket=5)
    shards = [ShardedBatchSampler(100, 10, rank, 2, seed=1, lengths=lengths, bucket=5) for rank in range(2)]
    batches = single.batches()
    assert sorted(sum(batches, [])) == list(range(100))
    for batch in batches:  # sorted within windows of 5 batches: each batch a run of lengths
        assert [lengths[i] for i in batch] == sorted(lengths[i] for i in batch)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 500  # random batches of 10 spread over ~800 of the 1000
    for step, (a, b) in enumerate(zip(*shards)):
        assert a + b == list(single)[step]
    single.set_epoch(1)
    assert single.batches() != batches


def test_patch_classifier_reads_patches():
    inner = SequenceClassifier(4, 5, d_model=8, n_layers=1, d_state=4, mode="diag", dropout=0.0)
    model = PatchClassifier(inner, 4)
    x = torch.randn(3, 10)
    padded = torch.nn.functional.pad(x, (0, 2)).reshape(3, 3, 4)
    torch.testing.assert_close(model(x), inner(padded))
    torch.testing.assert_close(model(x.unsqueeze(-1)), inner(padded))
    mask = torch.arange(10) < torch.tensor([[10], [5], [1]])
    torch.testing.assert_close(model(x, mask), inner(padded, torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]]).bool()))
    with pytest.raises(ValueError, match="patch: expected a positive integer"):
        PatchClassifier(inner, 0)
    with pytest.raises(ValueError, match=r"x: expected samples of shape \(batch, T\)"):
        model(torch.randn(2, 3, 4))


def test_ddp_two_processes_match_one(tmp_path):
    """2-process gloo DDP and one process with the same global batch: same parameters."""
    args = ["--task", "copying", "--length", "64", "--train-size", "48", "--test-size", "8", "--batch-size", "8"]
    args += ["--epochs", "1", "--steps-per-epoch", "3", "--dropout", "0", *TINY]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = run("-m", "ssmkit", "train", "classify", *args, "--out", str(tmp_path / "one"), env=env)
    assert single.returncode == 0, single.stderr
    ddp = run(
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "ssmkit",
        "train", "classify", *args, "--out", str(tmp_path / "two"), env=env,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr
    assert "2 process(es) on cpu" in ddp.stdout
    one = torch.load(tmp_path / "one" / "last.pt", weights_only=False)
    two = torch.load(tmp_path / "two" / "last.pt", weights_only=False)
    torch.manual_seed(0)  # the trainer's seed: its initial parameters
    start = build_classifier(one["model_config"]).state_dict()
    moved = 0
    for name, tensor in one["model"].items():
        if not torch.is_tensor(tensor):
            continue  # the layers' extra state
        # Measured against how far training moved the tensor: the two runs round their
        # gradient sums differently and AdamW's g / sqrt(v) amplifies that where a gradient
        # nearly cancels between steps (up to 1.3e-4 of the move seen on an AVX2 CPU),
        # while a process that trained on its own shard alone (no gradient averaging)
        # lands 0.3 to 1.5 moves away.
        move = (tensor - start[name]).abs().max().item()
        gap = (two["model"][name] - tensor).abs().max().item()
        assert gap <= 1e-3 * move, f"{name}: the runs differ by {gap:.2e}; training moved it by {move:.2e}"
        moved += move > 0
    assert moved > 0  # the runs trained: some parameters left their initial values
    h1, h2 = one["history"][0], two["history"][0]
    assert h1["train_loss"] == pytest.approx(h2["train_loss"], rel=1e-5)


def test_listops_batches_drop_trailing_padding_without_changing_outputs():
    cfg = Config(task="listops", length=120, train_size=8, test_size=8, d_model=8, n_layers=2, d_state=4, dropout=0.0)
    train_set, val_set, _, spec = classify.make_datasets(cfg)
    assert spec["lengths"][0] == [len(train_set.dataset.texts[i].split()) for i in train_set.indices]
    assert len(val_set) == 1 and not set(val_set.indices) & set(train_set.indices)  # a tenth of 8, held out
    model = build_classifier(classify.model_config_for(cfg, spec)).eval()
    batch = next(iter(torch.utils.data.DataLoader(train_set, batch_size=7)))
    x, y, mask = classify._inputs(batch, spec, "cpu")
    assert x.shape[1] == max(spec["lengths"][0]) < 120
    full = batch[0]
    torch.testing.assert_close(model(x, mask), model(full, full != 0), rtol=1e-5, atol=1e-5)


def test_fsdd_speaker_split_and_validation_split(tmp_path):
    """--split speaker: theo's clips are the test set and no training or validation item is
    his; the validation items are a seeded tenth of the training items, disjoint from them."""
    for speaker in ("ann", "bob", "theo"):
        for take in range(10):
            write_wav(tmp_path / f"{take % 2}_{speaker}_{take}.wav", np.zeros(64, np.float32), 8000)
    cfg = Config(task="fsdd", data=str(tmp_path), split="speaker", length=64, seed=3)
    train_set, val_set, test_set, _ = classify.make_datasets(cfg)
    speakers = [{d.dataset.items[i]["speaker"] for i in d.indices} if hasattr(d, "indices") else {it["speaker"] for it in d.items} for d in (train_set, val_set, test_set)]
    assert speakers[2] == {"theo"} and "theo" not in speakers[0] | speakers[1]
    assert (len(train_set), len(val_set), len(test_set)) == (18, 2, 10)
    assert not set(train_set.indices) & set(val_set.indices)
    again = classify.make_datasets(cfg)[1]
    assert again.indices == val_set.indices  # seeded
    assert classify.make_datasets(Config(task="fsdd", data=str(tmp_path), split="speaker", length=64, seed=4))[1].indices != val_set.indices
    with pytest.raises(ValueError, match="split: listops has one fixed test set; expected 'take'"):
        classify.make_datasets(Config(task="listops", split="speaker", train_size=8, test_size=8))


def test_cli_reports_bad_input_without_a_traceback(tmp_path):
    done = run("-m", "ssmkit", "train", "classify", "--task", "fsdd", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert "error: root: expected a folder of WAV files" in done.stderr and "Traceback" not in done.stderr
    done = run("-m", "ssmkit", "train", "classify", "--task", "mnist")
    assert done.returncode == 2 and "invalid choice: 'mnist'" in done.stderr
    done = run("-m", "ssmkit", "train", "classify", "--dropout", "1.5")
    assert done.returncode == 2 and "expected a probability in [0, 1)" in done.stderr
