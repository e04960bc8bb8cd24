"""``ssmkit compare``: files written from saved embeddings, and usage errors."""

import os
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("scipy")

from ssmkit.cli import main


def save_population(folder, n=200):
    """Three embeddings of the same clustered items: clean, lightly and heavily perturbed."""
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(5, 8))[rng.integers(0, 5, n)] * 2 + rng.normal(size=(n, 8))
    paths = []
    for name, noise in [("clean", 0.0), ("light", 0.3), ("heavy", 1.5)]:
        paths.append(folder / f"{name}.npy")
        np.save(paths[-1], (Y + noise * rng.normal(size=Y.shape)).astype(np.float32))
    return paths


def test_compare_embeddings_writes_tests_distances_and_manifold(tmp_path, capsys):
    paths = save_population(tmp_path)
    out = tmp_path / "out"
    argv = ["compare", "--embeddings", *map(str, paths), "--k", "8", "--bootstrap", "9", "--seed", "1", "--out", str(out)]
    assert main(argv) == 0
    report = capsys.readouterr().out
    assert "clean vs light" in report and "clean vs heavy" in report

    per_datum = pd.read_csv(out / "per_datum.csv")
    assert list(per_datum.columns) == ["model_a", "model_b", "item", "statistic", "p_value", "p_adjusted"]
    assert len(per_datum) == 2 * 200 and set(per_datum.model_b) == {"light", "heavy"}
    assert per_datum.p_value.between(1 / 10, 1).all()

    D = pd.read_csv(out / "distances.csv", index_col=0)
    assert list(D.index) == list(D.columns) == ["clean", "light", "heavy"]
    assert D.loc["clean", "light"] < D.loc["clean", "heavy"]
    coords = pd.read_csv(out / "manifold.csv", index_col=0)
    assert list(coords.columns) == ["mds1", "mds2"] and len(coords) == 3
    assert (out / "manifold.png").read_bytes()[:4] == b"\x89PNG"

    # The same seed gives the same files.
    assert main([*argv[:-1], str(tmp_path / "again")]) == 0
    pd.testing.assert_frame_equal(per_datum, pd.read_csv(tmp_path / "again" / "per_datum.csv"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--k", "0"], "expected a positive whole number, got '0'"),
        (["--k", "5", "--embeddings", "/no/such.npy"], "no such file"),
        (["--k", "5", "--checkpoints", "CKPT"], "not allowed with argument --embeddings"),
    ],
)
def test_usage_errors_exit_2(tmp_path, capsys, extra, message):
    paths = save_population(tmp_path, n=20)
    extra = [str(paths[0]) if e == "CKPT" else e for e in extra]
    with pytest.raises(SystemExit) as info:
        main(["compare", "--embeddings", *map(str, paths), "--out", str(tmp_path / "o"), *extra])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_embeddings_are_reported(tmp_path, capsys):
    paths = save_population(tmp_path, n=20)
    np.save(paths[1], np.ones((19, 8)))
    assert main(["compare", "--embeddings", *map(str, paths), "--k", "5", "--out", str(tmp_path / "o")]) == 2
    assert "expected the 20 items" in capsys.readouterr().err
    assert main(["compare", "--embeddings", str(paths[0]), "--k", "5", "--out", str(tmp_path / "o")]) == 2
    assert "at least two models" in capsys.readouterr().err


# CI keeps FSDD beside the checkout; SSMKIT_FSDD points elsewhere (e.g. from a git worktree).
FSDD = Path(os.environ.get("SSMKIT_FSDD") or Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fsdd")


@pytest.mark.skipif(not (FSDD / "recordings").is_dir(), reason=f"FSDD not found at {FSDD}")
def test_compare_checkpoints_embeds_the_dataset(tmp_path, capsys):
    pytest.importorskip("torch")
    runs = []
    for seed in (0, 1):  # two tiny classifiers, one short epoch each
        runs.append(tmp_path / f"run{seed}")
        argv = ["train", "classify", "--task", "fsdd", "--data", str(FSDD), "--out", str(runs[-1]), "--epochs", "1"]
        argv += ["--limit", "20", "--d-model", "8", "--n-layers", "1", "--patch", "200", "--seed", str(seed), "--no-progress"]
        assert main(argv) == 0
    out = tmp_path / "out"
    argv = ["compare", "--checkpoints", *(str(r / "last.pt") for r in runs), "--data", str(FSDD), "--k", "5", "--bootstrap", "3"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "run0/last vs run1/last" in capsys.readouterr().out
    items = pd.read_csv(out / "items.csv")
    assert len(items) == 300 and items["take"].between(0, 4).all()  # FSDD's test split
    for run in ("run0_last", "run1_last"):
        assert np.load(out / "embeddings" / f"{run}.npy").shape == (300, 8)  # d_model features per item
    per_datum = pd.read_csv(out / "per_datum.csv")
    assert len(per_datum) == 300 and (per_datum.path == items.path).all()
