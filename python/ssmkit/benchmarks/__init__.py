"""Benchmark interface (minimal stand-in; the real package is written on main)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class Impl:
    fn: Callable[[], object]  # zero-arg callable doing one call
    work: float  # work units fn processes (a baseline may run on a subset of rows)


@dataclass
class Case:
    family: str
    name: str
    shape: str
    unit: str
    impls: dict[str, Impl]  # first entry is ssmkit's; others baselines
    note: str = ""
