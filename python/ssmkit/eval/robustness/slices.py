"""Slices (named views of a dataset) and the builders that make them from a dataset:
subpopulations (a predicate or score intervals) and evaluation sets.

A dataset is anything with ``len()`` and ``dataset[i] -> (x, label, ...)``: x a tensor
(or array) of shape (length,) or (length, channels), label an int. Per-example metadata
(speaker, accent, duration, ...) comes as a list of dicts or a pandas DataFrame, either
given to the bench or found as ``dataset.metadata``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = [
    "CATEGORIES",
    "Slice",
    "Example",
    "Subpopulation",
    "ScoreSubpopulation",
    "EvalSet",
    "length_bins",
    "rms_bins",
    "metadata_field",
    "MetadataSubpopulation",
    "QUARTILES",
]

# The order in which reports list categories; "dataset" is the whole evaluation set.
CATEGORIES = ("dataset", "subpopulation", "transformation", "evalset", "attack")

QUARTILES = (("0%", "25%"), ("25%", "50%"), ("50%", "75%"), ("75%", "100%"))


@dataclass
class Slice:
    """A named view of a dataset, evaluated as one row of a report.

    Its examples are ``dataset`` (None: the bench's dataset) restricted to ``indices``
    (None: all), then changed by ``transformation`` and/or ``attack`` (applied in that
    order). ``lineage`` records how it was made, from the source dataset on.
    """

    name: str
    category: str
    indices: Sequence[int] | None = None
    dataset: Any = None
    transformation: Any = None
    attack: Any = None
    lineage: tuple[str, ...] = ()
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.category not in CATEGORIES:
            raise ValueError(f"category: expected one of {', '.join(CATEGORIES)}, got {self.category!r}")
        if self.indices is not None:
            self.indices = [int(i) for i in self.indices]

    def slices(self, context) -> list[Slice]:
        return [self]


class Example(NamedTuple):
    """What predicates and score functions see: one example of the dataset."""

    index: int  # type: ignore[assignment] # the field shadows tuple.index
    x: torch.Tensor
    label: int
    meta: dict


class SliceContext:
    """The dataset that builders slice, with its metadata, read lazily."""

    def __init__(self, dataset, metadata=None, name: str = "dataset"):
        self.dataset, self.name = dataset, name
        self.metadata = metadata_rows(dataset, metadata)

    def __len__(self) -> int:
        return len(self.dataset)

    def examples(self, need_x: bool = True):
        """Each example in order; with need_x False only metadata is read (x is None)."""
        for i in range(len(self.dataset)):
            if need_x:
                x, label = read_item(self.dataset, i)
                yield Example(i, x, label, self.metadata[i])
            else:
                yield Example(i, None, None, self.metadata[i])  # type: ignore[arg-type] # for metadata-only scores


def metadata_rows(dataset, metadata=None) -> list[dict]:
    """One dict per example: from ``metadata``, else ``dataset.metadata``, else empty."""
    if metadata is None:
        metadata = getattr(dataset, "metadata", None)
        if callable(metadata):
            metadata = metadata()
    if metadata is None:
        return [{} for _ in range(len(dataset))]
    if hasattr(metadata, "to_dict"):  # a pandas DataFrame
        metadata = metadata.to_dict("records")
    rows = [dict(row) for row in metadata]
    if len(rows) != len(dataset):
        raise ValueError(f"metadata: expected one row per example ({len(dataset)}), got {len(rows)}")
    return rows


def read_item(dataset, i: int) -> tuple[torch.Tensor, int]:
    """(x, label) of example i, x as a float tensor of shape (length,) or (length, channels)."""
    item = dataset[i]
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise TypeError(f"dataset[{i}]: expected a tuple (x, label, ...), got {type(item).__name__}")
    x, label = torch.as_tensor(item[0]), item[1]
    if x.dim() not in (1, 2) or not x.is_floating_point():
        raise ValueError(
            f"dataset[{i}]: expected x of shape (length,) or (length, channels) with floating values, "
            f"got shape {tuple(x.shape)} and dtype {x.dtype}"
        )
    return x, int(label)


class Subpopulation:
    """The examples for which ``predicate(example)`` is true (an :class:`Example`:
    index, x, label, meta). ``uses_x=False`` skips reading the dataset for metadata-only
    predicates (x and label are then None)."""

    category = "subpopulation"

    def __init__(self, name: str, predicate: Callable[[Example], bool], *, uses_x: bool = True):
        if not callable(predicate):
            raise TypeError(f"predicate: expected a callable predicate(example) -> bool, got {type(predicate).__name__}")
        self.name, self.predicate, self.uses_x = name, predicate, uses_x

    def slices(self, context: SliceContext) -> list[Slice]:
        indices = [e.index for e in context.examples(self.uses_x) if self.predicate(e)]
        return [Slice(self.name, "subpopulation", indices, lineage=(context.name, f"subpopulation {self.name}"))]


def _bound(value, scores: np.ndarray, name: str) -> float:
    """A number, or a percentile of the scores written as "25%"."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*%\s*", value)
        if not match or float(match.group(1)) > 100:
            raise ValueError(f"{name}: expected a number or a percentile such as '25%', got {value!r}")
        return float(np.percentile(scores, float(match.group(1)))) if len(scores) else math.nan
    return float(value)


class ScoreSubpopulation:
    """One slice per interval of a score: examples with lo <= score < hi, the top interval
    also taking its upper end when that is the highest score (so quartiles cover everyone).

    ``score_fn(example) -> float``; ``uses_x=False`` for scores from metadata only.
    ``intervals``: (lo, hi) pairs, each bound a value or a percentile string ("10%").
    ``name`` (default: the function's name) prefixes the slice names.
    """

    category = "subpopulation"

    def __init__(
        self,
        score_fn: Callable[[Example], float],
        intervals: Sequence[tuple] = QUARTILES,
        *,
        name: str | None = None,
        uses_x: bool = True,
    ):
        if not callable(score_fn):
            raise TypeError(f"score_fn: expected a callable score_fn(example) -> float, got {type(score_fn).__name__}")
        intervals = list(intervals)
        if not intervals or any(not isinstance(iv, (tuple, list)) or len(iv) != 2 for iv in intervals):
            raise ValueError(f"intervals: expected a non-empty list of (lo, hi) pairs, got {intervals!r}")
        for lo, hi in intervals:  # percentiles are checked here; values can be ordered now too
            _bound(lo, np.zeros(1), "intervals"), _bound(hi, np.zeros(1), "intervals")
        if name is None:
            name = getattr(score_fn, "__name__", "score")
            name = "score" if name == "<lambda>" else name
        self.name, self.score_fn, self.intervals, self.uses_x = name, score_fn, intervals, uses_x

    def scores(self, context: SliceContext) -> np.ndarray:
        return np.array([float(self.score_fn(e)) for e in context.examples(self.uses_x)], dtype=np.float64)

    def slices(self, context: SliceContext) -> list[Slice]:
        scores = self.scores(context)
        top = scores.max() if len(scores) else math.nan
        out = []
        for lo_spec, hi_spec in self.intervals:
            lo, hi = _bound(lo_spec, scores, "intervals"), _bound(hi_spec, scores, "intervals")
            closed = hi == top  # the top interval keeps the highest score
            chosen = (scores >= lo) & ((scores < hi) | (closed & (scores == hi)))
            label = lo_spec if isinstance(lo_spec, str) else f"{lo:g}"
            label += "-" + (hi_spec if isinstance(hi_spec, str) else f"{hi:g}")
            out.append(
                Slice(
                    f"{self.name} {label}",
                    "subpopulation",
                    np.flatnonzero(chosen).tolist(),
                    lineage=(context.name, f"subpopulation {self.name} in [{lo:.6g}, {hi:.6g}{']' if closed else ')'}"),
                    info={"score": self.name, "lo": lo, "hi": hi},
                )
            )
        return out


def length_bins(intervals: Sequence[tuple] = QUARTILES, *, field: str | None = None, name: str = "length") -> ScoreSubpopulation:
    """Bins of sequence length: the length of x, or metadata ``field`` (e.g. the duration
    before padding or cropping) when given."""
    if field is None:
        return ScoreSubpopulation(lambda e: e.x.shape[0], intervals, name=name)
    return ScoreSubpopulation(lambda e: _meta(e, field), intervals, name=name, uses_x=False)


def rms_bins(intervals: Sequence[tuple] = QUARTILES, *, name: str = "loudness (RMS)") -> ScoreSubpopulation:
    """Bins of loudness: the root mean square of x over all its samples and channels."""
    return ScoreSubpopulation(lambda e: e.x.double().square().mean().sqrt().item(), intervals, name=name)


def _meta(example: Example, field: str):
    if field not in example.meta:
        raise KeyError(f"metadata field {field!r} is missing for example {example.index}; it has {sorted(example.meta)}")
    return example.meta[field]


def metadata_field(field: str, values: Sequence | None = None) -> MetadataSubpopulation:
    """One subpopulation per value of metadata ``field`` (e.g. "speaker", "accent");
    ``values`` defaults to every value found, resolved when the bench runs."""
    return MetadataSubpopulation(field, values)


class MetadataSubpopulation:
    """One slice per value of a metadata field (see :func:`metadata_field`)."""

    category = "subpopulation"

    def __init__(self, field: str, values: Sequence | None = None):
        self.field, self.values = field, None if values is None else list(values)

    def slices(self, context: SliceContext) -> list[Slice]:
        found = [_meta(e, self.field) for e in context.examples(need_x=False)]
        values = self.values if self.values is not None else sorted(set(found), key=str)
        return [
            Slice(
                f"{self.field}={value}",
                "subpopulation",
                [i for i, v in enumerate(found) if v == value],
                lineage=(context.name, f"subpopulation {self.field} == {value!r}"),
                info={"field": self.field, "value": value},
            )
            for value in values
        ]


class EvalSet:
    """Any labelled dataset, evaluated as a slice of its own."""

    category = "evalset"

    def __init__(self, name: str, dataset):
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"dataset: expected an indexable dataset with len(), got {type(dataset).__name__}")
        self.name, self.dataset = name, dataset

    def slices(self, context) -> list[Slice]:
        return [Slice(self.name, "evalset", dataset=self.dataset, lineage=(self.name,))]
