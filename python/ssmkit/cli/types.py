"""argparse value types of the ``ssmkit`` commands, one place for each: a bad value is a
usage error (message, exit code 2) before anything runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def positive(kind=int, what: str | None = None):
    """A parser for a positive int (a "whole number") or float; ``what`` names it in the message."""
    what = what or ("whole number" if kind is int else "number")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {what}, got {text!r}")
        return value

    return parse


def _real(accept, expected: str):
    """A parser for a float that ``accept`` takes (text that is no number is refused)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


thread_count = positive(int, "whole number of threads")
non_negative_float = _real(lambda v: not v < 0, "a non-negative number")
budget = _real(lambda v: v >= 0, "a budget >= 0")  # an attack's
unit_interval = _real(lambda v: 0 < v <= 1, "a number in (0, 1]")  # nucleus mass, confidence threshold


def probability(text: str) -> float:
    """A probability in [0, 1) (dropout)."""
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text!r}")
    return value


def existing(kind: str):
    """A parser for the path of an existing "file" or "folder"."""

    def check(text: str) -> Path:
        path = Path(text)
        if not (path.is_file() if kind == "file" else path.is_dir()):
            raise argparse.ArgumentTypeError(f"no such {kind}: {text!r}")
        return path

    return check


def pools(text: str) -> tuple:
    """Pooling factors: comma-separated positive whole numbers ("4,4")."""
    try:
        factors = tuple(int(p) for p in text.split(","))
    except ValueError:
        factors = ()
    if not factors or min(factors) < 1:
        raise argparse.ArgumentTypeError(f"expected pooling factors like 4,4, got {text!r}")
    return factors


def json_path(text: str) -> Path:
    """A file to write, in a folder that exists."""
    path = Path(text)
    if not path.resolve().parent.is_dir():
        raise argparse.ArgumentTypeError(f"the folder of {text!r} does not exist")
    return path


def bench_family(name: str) -> str:
    from ..benchmarks import FAMILIES

    if name not in FAMILIES:
        raise argparse.ArgumentTypeError(f"unknown benchmark family {name!r}; choose from {', '.join(FAMILIES)}")
    return name
