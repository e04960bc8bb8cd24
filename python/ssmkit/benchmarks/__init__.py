"""Minimal stand-in for the benchmarks package being written on main (replaced at merge):
only the dataclasses the family modules are written against."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Impl:
    fn: Callable[[], object]  # zero-arg callable doing one call
    work: float  # work units fn processes


@dataclass
class Case:
    family: str
    name: str
    shape: str
    unit: str  # e.g. "G state updates/s"
    impls: dict = field(default_factory=dict)  # first entry is ssmkit's; others baselines
    note: str = ""
