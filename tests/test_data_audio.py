"""ssmkit.data.audio: WAV reading/writing, resampling, mu-law, WavFolder, and FSDD."""

import json
import os
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from ssmkit.data import fsdd_root
from ssmkit.data.audio import (
    WavFolder,
    collate_padded,
    fix_length,
    mu_law_decode,
    mu_law_encode,
    read_wav,
    resample,
    write_wav,
)

# CI keeps FSDD beside the checkout; SSMKIT_FSDD points elsewhere (e.g. from a git worktree).
FSDD = Path(os.environ.get("SSMKIT_FSDD") or Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fsdd")
needs_fsdd = pytest.mark.skipif(not (FSDD / "recordings").is_dir(), reason=f"FSDD not found at {FSDD}")


def _write_pcm(path, frames: bytes, width: int, rate: int = 8000, channels: int = 1):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(frames)


# ----------------------------------------------------------------------------- WAV files


def test_read_wav_pcm_widths(tmp_path):
    # Each width's extremes and zero, written as raw little-endian PCM bytes.
    cases = {
        1: (bytes([0, 128, 255]), [-1.0, 0.0, 127 / 128]),
        2: (np.array([-32768, 0, 16384, 32767], "<i2").tobytes(), [-1.0, 0.0, 0.5, 32767 / 32768]),
        3: (bytes([0, 0, 0x80, 0, 0, 0, 0, 0, 0x40, 0xFF, 0xFF, 0xFF]), [-1.0, 0.0, 0.5, -1 / 2**23]),
        4: (np.array([-(2**31), 0, 2**30, -1], "<i4").tobytes(), [-1.0, 0.0, 0.5, -(2.0**-31)]),
    }
    for width, (frames, expected) in cases.items():
        path = tmp_path / f"w{width}.wav"
        _write_pcm(path, frames, width, rate=11025)
        x, rate = read_wav(path)
        assert rate == 11025
        assert x.dtype == np.float32
        np.testing.assert_array_equal(x, np.array(expected, np.float32), err_msg=f"{8 * width}-bit")


def test_read_wav_mixes_channels_to_mono(tmp_path):
    stereo = np.array([[1000, -1000], [32767, 32767], [-32768, 0]], "<i2")
    _write_pcm(tmp_path / "s.wav", stereo.tobytes(), 2, channels=2)
    x, _ = read_wav(tmp_path / "s.wav")
    np.testing.assert_array_equal(x, np.array([0.0, 32767 / 32768, -0.5], np.float32))


def test_write_then_read_is_16_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    codes = rng.integers(-32767, 32768, size=1001)
    x = (codes / 32767.0).astype(np.float64)  # exactly representable at 16 bits after * 32767
    write_wav(tmp_path / "a.wav", torch.from_numpy(x), 16000)
    y, rate = read_wav(tmp_path / "a.wav")
    assert rate == 16000
    np.testing.assert_array_equal(np.round(y * 32768).astype(int), codes)
    write_wav(tmp_path / "clip.wav", np.array([2.0, -3.0]), 8000)  # clipped, not wrapped
    np.testing.assert_array_equal(read_wav(tmp_path / "clip.wav")[0], np.array([32767, -32767]) / 32768)


def test_wav_errors_name_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match="path: no such WAV file"):
        read_wav(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"not a riff file at all")
    with pytest.raises(ValueError, match="path: .*junk.wav is not a PCM WAV"):
        read_wav(tmp_path / "junk.wav")
    with pytest.raises(ValueError, match=r"samples: expected shape \(frames,\)"):
        write_wav(tmp_path / "x.wav", np.zeros((2, 2, 2)), 8000)
    with pytest.raises(TypeError, match="samples: expected floating-point"):
        write_wav(tmp_path / "x.wav", np.zeros(4, np.int16), 8000)
    with pytest.raises(ValueError, match="sample_rate: expected a positive whole number"):
        write_wav(tmp_path / "x.wav", np.zeros(4), 0)


def test_resample_keeps_a_tone():
    # A 440 Hz tone at 8 kHz resampled to 16 kHz and 6 kHz equals the same tone sampled there
    # (away from the edges, where the polyphase filter sees the signal's ends).
    seconds = 0.5
    for new_sr in (16000, 6000):
        t_old = np.arange(int(8000 * seconds)) / 8000
        t_new = np.arange(int(new_sr * seconds)) / new_sr
        y = resample(np.sin(2 * np.pi * 440 * t_old).astype(np.float32), 8000, new_sr)
        assert y.dtype == np.float32 and y.shape == t_new.shape
        inner = slice(new_sr // 20, -new_sr // 20)
        np.testing.assert_allclose(y[inner], np.sin(2 * np.pi * 440 * t_new)[inner], atol=2e-3)
    x = torch.randn(800, 1)
    y = resample(x, 8000, 4000)
    assert isinstance(y, torch.Tensor) and y.shape == (400, 1) and y.dtype == torch.float32
    with pytest.raises(ValueError, match="new_sr: expected a positive whole number"):
        resample(x, 8000, -1)


# ----------------------------------------------------------------------------- mu-law


def test_mu_law_codes():
    x = np.array([-1.0, -2.0, 0.0, 1.0, 5.0])
    np.testing.assert_array_equal(mu_law_encode(x), [0, 0, 128, 255, 255])
    q = np.arange(256)
    # Decoding then encoding gives every code back; the mapping is monotone.
    np.testing.assert_array_equal(mu_law_encode(mu_law_decode(q)), q)
    assert np.all(np.diff(mu_law_decode(q)) > 0)
    assert mu_law_decode(q).min() == -1.0 and mu_law_decode(q).max() == 1.0
    # Against the formula written out in float64 by hand: mu = 255.
    xs = np.linspace(-1, 1, 2001)
    expected = np.floor((np.sign(xs) * np.log(1 + 255 * np.abs(xs)) / np.log(256) + 1) * 127.5 + 0.5)
    np.testing.assert_array_equal(mu_law_encode(xs), expected.astype(np.int64))


def test_mu_law_torch_matches_numpy():
    x = torch.rand(4096) * 2 - 1
    q = mu_law_encode(x)
    assert q.dtype == torch.int64 and int(q.min()) >= 0 and int(q.max()) <= 255
    # float32 rounding may move a value sitting on a code boundary by one code.
    assert (q.numpy() - mu_law_encode(x.numpy())).__abs__().max() <= 1
    np.testing.assert_allclose(mu_law_decode(q).numpy(), mu_law_decode(q.numpy()), rtol=1e-6, atol=1e-7)
    assert torch.equal(mu_law_encode(torch.tensor([0.0]), bits=4), torch.tensor([8]))
    with pytest.raises(ValueError, match="bits: expected a whole number from 1 to 16"):
        mu_law_encode(x, bits=0)


# ----------------------------------------------------------------------------- WavFolder


@pytest.fixture
def tiny_folder(tmp_path):
    """Two labels x two speakers x three takes, lengths 100 + 10 * take samples at 16 kHz."""
    for label in ("cat", "dog"):
        for speaker in ("ann", "bob"):
            for take in range(3):
                n = 100 + 10 * take
                value = (0.25 if label == "cat" else -0.25) * (1 if speaker == "ann" else 0.5)
                write_wav(tmp_path / f"{label}_{speaker}_{take}.wav", np.full(n, value), 16000)
    (tmp_path / "speakers.json").write_text(json.dumps({"ann": {"gender": "female"}, "bob": {"gender": "male"}}))
    return tmp_path


def test_wav_folder_items_and_metadata(tiny_folder):
    ds = WavFolder(tiny_folder)
    assert len(ds) == 12 and ds.classes == ["cat", "dog"]
    x, label = ds[0]
    assert x.dtype == torch.float32 and x.shape == (100, 1) and label == 0
    torch.testing.assert_close(x, torch.full((100, 1), round(0.25 * 32767) / 32768))
    meta = ds.dataframe()
    assert set(meta.columns) >= {"path", "label", "label_name", "speaker", "take", "duration", "sample_rate", "gender"}
    row = meta[(meta.label_name == "dog") & (meta.speaker == "bob") & (meta["take"] == 2)].iloc[0]
    assert row.gender == "male" and row.duration == pytest.approx(120 / 16000) and row.label == 1
    assert ds.labels == list(meta.label)
    assert ds[-1][1] == 1
    with pytest.raises(IndexError, match="index: expected an int in"):
        ds[12]


def test_wav_folder_split_resample_and_length(tiny_folder):
    test = WavFolder(tiny_folder, split="test", test_takes=[0])
    train = WavFolder(tiny_folder, split="train", test_takes=[0])
    assert {m["take"] for m in test.metadata} == {0} and len(test) == 4
    assert {m["take"] for m in train.metadata} == {1, 2} and len(train) == 8
    ds = WavFolder(tiny_folder, sample_rate=8000, channel_dim=False)
    assert ds[0][0].shape == (50,) and ds.metadata[0]["sample_rate"] == 8000
    fixed = WavFolder(tiny_folder, length=105, crop="left", pad="left")
    shapes = {fixed[i][0].shape for i in range(len(fixed))}
    assert shapes == {(105, 1)}
    padded = fixed[0][0]  # 100 samples, 5 zeros in front
    assert torch.all(padded[:5] == 0) and torch.all(padded[5:] != 0)
    doubled = WavFolder(tiny_folder, transform=lambda w: 2 * w)
    assert torch.equal(doubled[0][0], 2 * WavFolder(tiny_folder)[0][0])


def test_wav_folder_errors(tmp_path, tiny_folder):
    with pytest.raises(FileNotFoundError, match="root: expected a folder"):
        WavFolder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="root: no '{label}_\\*.wav' files"):
        WavFolder(tmp_path / "empty")
    with pytest.raises(ValueError, match="split: expected one of"):
        WavFolder(tiny_folder, split="valid")
    with pytest.raises(ValueError, match="crop: expected one of"):
        WavFolder(tiny_folder, crop="middle")
    with pytest.raises(ValueError, match="length: expected a positive whole number"):
        WavFolder(tiny_folder, length=0)
    write_wav(tiny_folder / "cat_x.wav", np.zeros(10), 16000)
    with pytest.raises(ValueError, match="split: 'test' needs names like"):
        WavFolder(tiny_folder, split="test")


def test_fix_length_crops():
    x = torch.arange(10.0)
    assert fix_length(x, 4, crop="left").tolist() == [0, 1, 2, 3]
    assert fix_length(x, 4, crop="right").tolist() == [6, 7, 8, 9]
    assert fix_length(x, 4, crop="center").tolist() == [3, 4, 5, 6]
    torch.manual_seed(1)
    starts = {int(fix_length(x, 4)[0]) for _ in range(200)}
    assert starts == set(range(7))  # every window can be drawn
    assert fix_length(x, 13, pad="center").tolist() == [0] + list(range(10)) + [0, 0]
    assert fix_length(x, 13, pad="none").tolist() == list(range(10))  # length as a maximum
    assert fix_length(x, 5, pad="none", crop="left").tolist() == list(range(5))


def test_collate_padded_masks():
    batch = [(torch.ones(3, 1), 0), (torch.ones(5, 1), 2)]
    x, y, mask = collate_padded(batch)
    assert x.shape == (2, 5, 1) and y.tolist() == [0, 2] and y.dtype == torch.int64
    assert mask.tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert torch.equal(x[..., 0] != 0, mask)


# ----------------------------------------------------------------------------- FSDD


def test_fsdd_root_honours_the_env_var(tmp_path, monkeypatch):
    (tmp_path / "recordings").mkdir()
    monkeypatch.setenv("SSMKIT_FSDD", str(tmp_path))
    assert fsdd_root() == tmp_path.resolve()
    monkeypatch.setenv("SSMKIT_FSDD", str(tmp_path / "nope"))
    assert fsdd_root(required=False) is None
    with pytest.raises(FileNotFoundError, match="SSMKIT_FSDD="):
        fsdd_root()


@needs_fsdd
def test_fsdd_conventional_split():
    train, test = WavFolder(FSDD, split="train"), WavFolder(FSDD, split="test")
    assert len(train) == 2700 and len(test) == 300
    assert train.classes == [str(d) for d in range(10)]
    meta = test.dataframe()
    assert sorted(meta["take"].unique()) == [0, 1, 2, 3, 4]
    assert meta.groupby(["speaker", "label"]).size().eq(5).all()
    assert set(meta.sample_rate) == {8000} and {"accent", "gender"} <= set(meta.columns)
    assert not set(train.dataframe().path) & set(meta.path)
    x, label = test[0]
    assert x.shape[1] == 1 and x.abs().max() <= 1 and label == int(Path(test.metadata[0]["path"]).name[0])
