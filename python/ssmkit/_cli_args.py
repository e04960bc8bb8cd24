"""argparse value checks shared by the ``ssmkit`` subcommands (one place for each)."""

from __future__ import annotations

import argparse
from pathlib import Path


def positive(kind=int):
    """A parser for a positive int (a "whole number") or float."""
    what = "whole number" if kind is int else "number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {what}, got {text!r}")
        return value

    return parse


def existing(kind: str):
    """A parser for the path of an existing "file" or "folder"."""

    def check(text: str) -> Path:
        path = Path(text)
        if not (path.is_file() if kind == "file" else path.is_dir()):
            raise argparse.ArgumentTypeError(f"no such {kind}: {text!r}")
        return path

    return check
