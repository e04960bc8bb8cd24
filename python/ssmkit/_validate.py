"""Checks of the library's arguments, one place for each (the command line's argparse
types are in :mod:`ssmkit.cli.types`)."""

from __future__ import annotations

import numbers


def positive_int(name: str, value, *, upper: int | None = None, upper_text: str = "") -> int:
    """``value`` as an int when it is a whole number >= 1 (and <= ``upper``, which
    ``upper_text`` explains); ValueError naming ``name`` otherwise. bool is not a number here."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if upper is not None and int(value) > upper:
        raise ValueError(f"{name}: expected at most {upper} ({upper_text}), got {value}")
    return int(value)
