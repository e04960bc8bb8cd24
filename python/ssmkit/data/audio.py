"""Audio: WAV files in and out, resampling, mu-law, and a dataset over a folder of WAVs.

- ``read_wav(path) -> (samples, sample_rate)``: float32 in [-1, 1], mono (channels averaged).
- ``write_wav(path, samples, sample_rate)``: 16-bit PCM.
- ``resample(x, orig_sr, new_sr)``: polyphase resampling (scipy.signal.resample_poly).
- ``mu_law_encode(x, bits=8)`` / ``mu_law_decode(q, bits=8)``: NumPy arrays or tensors.
- ``WavFolder(root, ...)``: a torch Dataset over ``{label}_*.wav`` files (FSDD names are
  ``{digit}_{speaker}_{take}.wav``), with metadata, the FSDD split, fixed-length crop/pad.
- ``collate_padded(batch)``: pads variable-length items and returns a mask.
"""

from __future__ import annotations

import json
import math
import re
import wave
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

PathLike = Union[str, Path]

# Conventional FSDD split: takes 0-4 of every speaker and digit are the test set.
FSDD_TEST_TAKES = range(5)
# The held-out-speaker split: every recording of these speakers is the test set, so the
# test voices are never heard in training (FSDD has six speakers of 500 clips each).
FSDD_TEST_SPEAKERS = ("theo",)

_PADS = ("right", "left", "center", "none")
_CROPS = ("random", "center", "left", "right")
_SPLITS = (None, "all", "train", "test")
_SPLIT_BY = ("take", "speaker")
_NAME = re.compile(r"^(?P<label>[^_]+)_(?P<rest>.*)$")


# --------------------------------------------------------------------------- WAV files


def _pcm_to_float(frames: bytes, width: int) -> np.ndarray:
    """Little-endian PCM bytes -> float32 in [-1, 1); 8-bit WAV is unsigned, the rest signed."""
    if width == 1:
        return (np.frombuffer(frames, np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(frames, "<i2").astype(np.float32) / 32768.0
    if width == 3:
        raw = np.frombuffer(frames, np.uint8).reshape(-1, 3).astype(np.int32)
        value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)  # sign-extend 24 bits
        return value.astype(np.float32) / float(1 << 23)
    if width == 4:
        return (np.frombuffer(frames, "<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    raise ValueError(f"expected 8, 16, 24 or 32-bit PCM, got {8 * width}-bit samples")


def read_wav(path: PathLike) -> tuple[np.ndarray, int]:
    """Read a PCM WAV file (8, 16, 24 or 32 bit); returns (samples, sample_rate).

    samples: float32, shape (frames,), in [-1, 1]; channels are averaged to mono.
    """
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as f:
            channels, width, rate, count = f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()
            frames = f.readframes(count)
    except FileNotFoundError:
        raise FileNotFoundError(f"path: no such WAV file: {path}") from None
    except (wave.Error, EOFError) as e:
        raise ValueError(f"path: {path} is not a PCM WAV file the wave module reads ({e})") from None
    try:
        samples = _pcm_to_float(frames, width)
    except ValueError as e:
        raise ValueError(f"path: {path}: {e}") from None
    samples = samples[: len(samples) // channels * channels].reshape(-1, channels)
    return samples.mean(axis=1, dtype=np.float32), rate


def write_wav(path: PathLike, samples, sample_rate: int) -> None:
    """Write 16-bit PCM. samples: (frames,) or (frames, channels), floats in [-1, 1] (clipped)."""
    x = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
    if x.ndim not in (1, 2) or (x.ndim == 2 and x.shape[1] == 0):
        raise ValueError(f"samples: expected shape (frames,) or (frames, channels), got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"samples: expected floating-point samples in [-1, 1], got dtype {x.dtype}")
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate: expected a positive whole number, got {sample_rate!r}")
    x = x.reshape(len(x), -1)
    pcm = np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(x.shape[1])
        f.setsampwidth(2)
        f.setframerate(int(sample_rate))
        f.writeframes(pcm.tobytes())


def resample(x, orig_sr: int, new_sr: int, *, axis: int = 0):
    """Resample along ``axis`` from orig_sr to new_sr (polyphase, scipy.signal.resample_poly).

    Takes and returns a NumPy array or a tensor (float32 stays float32).
    """
    from scipy.signal import resample_poly

    for name, rate in (("orig_sr", orig_sr), ("new_sr", new_sr)):
        if int(rate) != rate or rate <= 0:
            raise ValueError(f"{name}: expected a positive whole number of samples per second, got {rate!r}")
    orig_sr, new_sr = int(orig_sr), int(new_sr)
    is_tensor = isinstance(x, torch.Tensor)
    a = x.detach().cpu().numpy() if is_tensor else np.asarray(x)
    if orig_sr != new_sr:
        g = math.gcd(orig_sr, new_sr)
        a = resample_poly(a, new_sr // g, orig_sr // g, axis=axis).astype(a.dtype, copy=False)
    return torch.from_numpy(np.ascontiguousarray(a)).to(x.device) if is_tensor else a


# --------------------------------------------------------------------------- mu-law


def _mu(bits: int) -> int:
    if not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ValueError(f"bits: expected a whole number from 1 to 16, got {bits!r}")
    return 2**bits - 1


def mu_law_encode(x, bits: int = 8):
    """Mu-law companding then quantisation: floats in [-1, 1] -> int64 codes in [0, 2**bits - 1].

    ``y = sign(x) ln(1 + mu |x|) / ln(1 + mu)`` with ``mu = 2**bits - 1``, ``code = round((y + 1)/2 * mu)``.
    Values outside [-1, 1] are clipped. NumPy arrays or tensors.
    """
    mu = _mu(bits)
    if isinstance(x, torch.Tensor):
        x = x.clamp(-1.0, 1.0)
        y = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
        return torch.floor((y + 1) / 2 * mu + 0.5).to(torch.int64)
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / math.log1p(mu)
    return np.floor((y + 1) / 2 * mu + 0.5).astype(np.int64)


def mu_law_decode(q, bits: int = 8):
    """Inverse of mu_law_encode: codes in [0, 2**bits - 1] -> float32 in [-1, 1]."""
    mu = _mu(bits)
    if isinstance(q, torch.Tensor):
        y = 2 * q.to(torch.float32) / mu - 1
        return torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu
    yn = 2 * np.asarray(q, dtype=np.float64) / mu - 1
    return (np.sign(yn) * np.expm1(np.abs(yn) * math.log1p(mu)) / mu).astype(np.float32)


# --------------------------------------------------------------------------- dataset


def _choice(name: str, value, choices: Sequence) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")


def fix_length(x: torch.Tensor, length: int, *, pad: str = "right", crop: str = "random") -> torch.Tensor:
    """Crop or zero-pad x (time on dim 0) to ``length`` samples.

    pad: where the zeros go ("right", "left", "center"; "none" leaves shorter x as it is,
    so ``length`` is a maximum); crop: which window is kept
    ("random" draws from torch's generator, "center", "left" keeps the start, "right" the end).
    """
    _choice("pad", pad, _PADS)
    _choice("crop", crop, _CROPS)
    n = x.shape[0]
    if n > length:
        extra = n - length
        start = {
            "random": lambda: int(torch.randint(0, extra + 1, ())),
            "center": lambda: extra // 2,
            "left": lambda: 0,
            "right": lambda: extra,
        }[crop]()
        return x[start : start + length]
    if n < length and pad != "none":
        missing = length - n
        before = {"right": 0, "left": missing, "center": missing // 2}[pad]
        shape = (length,) + tuple(x.shape[1:])
        out = x.new_zeros(shape)
        out[before : before + n] = x
        return out
    return x


class WavFolder(torch.utils.data.Dataset):
    """A folder of ``{label}_*.wav`` files as a classification dataset.

    Items are ``(waveform, label)``: waveform a float32 tensor of shape (length, 1)
    (or (length,) with ``channel_dim=False``), label the class index (``classes[label]``
    is the name in the file). Names of the form ``{label}_{speaker}_{take}.wav`` (FSDD)
    also give each item a speaker and a take, and ``split="train" | "test"`` selects one side
    of a split: by default the conventional FSDD split (takes in ``test_takes`` are test);
    with ``split_by="speaker"`` the held-out-speaker split (every clip of the speakers in
    ``test_speakers`` is test, the other speakers train). ``speakers.json`` beside the
    files (or one folder up) adds per-speaker fields such as gender and accent.

    Args:
        root: the folder of WAVs, or a folder holding them in ``recordings/`` (FSDD's layout).
        sample_rate: resample to this rate (None keeps each file's rate).
        length: crop or zero-pad every waveform to this many samples (None keeps the
            lengths; batch with ``collate_padded``).
        pad, crop: see ``fix_length`` (``pad="none"``: crop longer waveforms only).
        transform: applied to each waveform tensor last.
        cache: keep the decoded (resampled) waveforms in memory after first use.
    """

    def __init__(
        self,
        root: PathLike,
        sample_rate: Optional[int] = None,
        length: Optional[int] = None,
        *,
        split: Optional[str] = None,
        test_takes: Sequence[int] = FSDD_TEST_TAKES,
        split_by: str = "take",
        test_speakers: Sequence[str] = FSDD_TEST_SPEAKERS,
        pad: str = "right",
        crop: str = "random",
        transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        channel_dim: bool = True,
        cache: bool = True,
    ):
        _choice("split", split, _SPLITS)
        _choice("split_by", split_by, _SPLIT_BY)
        _choice("pad", pad, _PADS)
        _choice("crop", crop, _CROPS)
        if sample_rate is not None and (int(sample_rate) != sample_rate or sample_rate <= 0):
            raise ValueError(f"sample_rate: expected a positive whole number or None, got {sample_rate!r}")
        if length is not None and (int(length) != length or length <= 0):
            raise ValueError(f"length: expected a positive whole number of samples or None, got {length!r}")
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"root: expected a folder of WAV files, got {str(root)!r} (no such folder)")
        folder = root
        if not any(folder.glob("*.wav")) and (root / "recordings").is_dir():
            folder = root / "recordings"
        files = sorted(p for p in folder.glob("*.wav") if _NAME.match(p.stem))
        if not files:
            raise FileNotFoundError(f"root: no '{{label}}_*.wav' files in {str(folder)!r}")

        self.root, self.folder = root, folder
        self.sample_rate = None if sample_rate is None else int(sample_rate)
        self.length = None if length is None else int(length)
        self.pad, self.crop, self.transform, self.channel_dim = pad, crop, transform, channel_dim
        speakers = self._speakers(root, folder)

        items = []
        for path in files:
            label, rest = _NAME.match(path.stem).group("label", "rest")  # type: ignore[union-attr] # files matched _NAME
            speaker, _, take = rest.rpartition("_")
            item: dict[str, Any] = {"path": str(path), "label_name": label, "speaker": speaker or None}
            item["take"] = int(take) if take.isdigit() and speaker else None
            with wave.open(str(path), "rb") as f:
                item["orig_sample_rate"], item["frames"] = f.getframerate(), f.getnframes()
            item["duration"] = item["frames"] / item["orig_sample_rate"]
            item["sample_rate"] = self.sample_rate or item["orig_sample_rate"]
            item.update(speakers.get(item["speaker"], {}))
            items.append(item)

        names = sorted({it["label_name"] for it in items})
        if all(n.isdigit() for n in names):
            names.sort(key=int)
        self.classes = names
        self.class_to_index = {n: i for i, n in enumerate(names)}
        for it in items:
            it["label"] = self.class_to_index[it["label_name"]]

        if split in ("train", "test"):
            if any(it["take"] is None for it in items):
                bad = next(it["path"] for it in items if it["take"] is None)
                raise ValueError(f"split: {split!r} needs names like {{label}}_{{speaker}}_{{take}}.wav; got {bad}")
            if split_by == "take":
                test = set(test_takes)
                items = [it for it in items if (it["take"] in test) == (split == "test")]
            else:
                unknown = set(test_speakers) - {it["speaker"] for it in items}
                if unknown:
                    raise ValueError(f"test_speakers: expected speakers of {str(folder)!r}, got unknown {sorted(unknown)}")
                held_out = set(test_speakers)
                items = [it for it in items if (it["speaker"] in held_out) == (split == "test")]
        self.split, self.split_by = split, split_by
        self.items = items
        self._cache: Optional[dict[int, torch.Tensor]] = {} if cache else None

    @staticmethod
    def _speakers(root: Path, folder: Path) -> dict:
        for place in (folder, root, folder.parent):
            path = place / "speakers.json"
            if path.is_file():
                return json.loads(path.read_text())
        return {}

    @property
    def metadata(self) -> list[dict]:
        """Per-item metadata (path, label, speaker, take, duration, sample rates, speaker fields)."""
        return [dict(it) for it in self.items]

    def dataframe(self):
        """The metadata as a pandas DataFrame, one row per item."""
        import pandas as pd

        return pd.DataFrame(self.metadata)

    @property
    def labels(self) -> list[int]:
        return [it["label"] for it in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def waveform(self, index: int) -> torch.Tensor:
        """The whole waveform of item ``index`` at the dataset's rate: float32, shape (frames,)."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        it = self.items[index]
        wav, rate = read_wav(it["path"])
        if self.sample_rate is not None and rate != self.sample_rate:
            wav = resample(wav, rate, self.sample_rate)
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
        if self._cache is not None:
            self._cache[index] = x
        return x

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index: expected an int in [{-len(self)}, {len(self)}), got {index}")
        index %= len(self)
        x = self.waveform(index)
        if self.length is not None:
            x = fix_length(x, self.length, pad=self.pad, crop=self.crop)
        if self.channel_dim:
            x = x.unsqueeze(-1)
        if self.transform is not None:
            x = self.transform(x)
        return x, self.items[index]["label"]

    def __repr__(self) -> str:
        return (
            f"WavFolder({str(self.folder)!r}, items={len(self)}, classes={len(self.classes)}, split={self.split!r}, "
            f"sample_rate={self.sample_rate}, length={self.length})"
        )


def collate_padded(batch):
    """Batch variable-length ``(waveform, label)`` items: zero-pads on the right.

    Returns (waveforms (B, T_max, ...), labels int64 (B,), mask bool (B, T_max)),
    mask True on real samples.
    """
    if not batch:
        raise ValueError("batch: expected at least one (waveform, label) item, got none")
    waves = [w for w, _ in batch]
    lengths = torch.tensor([w.shape[0] for w in waves])
    padded = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    mask = torch.arange(padded.shape[1]) < lengths[:, None]
    labels = torch.as_tensor([label for _, label in batch], dtype=torch.int64)
    return padded, labels, mask
