"""Benchmark machinery shared by ``ssmkit bench`` and the pytest-benchmark suite in bench/.

A family module (listed in :data:`FAMILIES`) builds :class:`Case` objects: one operation
at one shape, with ssmkit's implementation first and the baselines after it. Inputs are
made when the case is built; each :class:`Impl` is a zero-argument callable doing one
call, so timing measures the call and nothing else. :func:`run` first checks ssmkit's
result against the float64 ground truth by the 2x rule (:mod:`ssmkit._accuracy`; the
check is the case's ``check``, outside the timing), then times every impl of a case that
passed side by side in one process and reports throughput and the ratio to ssmkit; a
case that fails is reported, not timed. Each row is also rated against the roofline of
the machine (:func:`device_peaks`, measured at the start of a CPU run): the case's
:class:`Cost` per work unit says which limit bounds it, FMA throughput or memory
bandwidth, and how close the row comes to it.
"""

from __future__ import annotations

import gc
import importlib
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import _C

if TYPE_CHECKING:  # _accuracy imports torch; the command line does not
    from .._accuracy import Verdict


@dataclass
class Impl:
    fn: Callable[[], object]  # one call, blocking until its result is ready (synchronise CUDA inside)
    work: float  # work units fn processes (a baseline may run on a subset of rows)


@dataclass(frozen=True)
class Cost:
    """What one work unit costs ssmkit's kernel: FP32 operations (an FMA counts 2, a
    division or a transcendental function 1) and bytes of memory traffic that cannot be
    avoided (inputs read and outputs written once)."""

    flops: float
    bytes: float

    def limit(self, peaks: dict) -> tuple[float, str]:
        """(work units per second at the roofline, "flop" or "byte": the limit that bounds it)."""
        by_flop = peaks["flop"] / self.flops if self.flops else math.inf
        by_byte = peaks["byte"] / self.bytes if self.bytes else math.inf
        return (by_flop, "flop") if by_flop <= by_byte else (by_byte, "byte")


@dataclass
class Case:
    family: str  # "cauchy"
    name: str  # "forward", "backward"
    shape: str  # "rows=1024 N=32 L=2049"
    unit: str  # "G terms/s": throughput is work / seconds / 1e9
    impls: dict[str, Impl]  # ssmkit's first, then the baselines
    # ssmkit's result on the case's inputs (or a slice of them) against the float64
    # reference by the 2x rule, with the float32 reference's own error as the yardstick
    check: Callable[[], Verdict]
    note: str = ""  # e.g. "reference timed on 128 of 1024 rows"
    # What one work unit costs, for each row's fraction of the roofline; None: not rated.
    cost: Cost | None = None


# family -> module whose cases(quick: bool, device: str) -> list[Case]; the layer and
# sashimi families measure CPU runs only and give no cases for other devices.
FAMILIES: dict[str, str] = {
    "cauchy": "ssmkit.benchmarks.cauchy",
    "vandermonde": "ssmkit.benchmarks.vandermonde",
    "step": "ssmkit.benchmarks.step",
    "layer": "ssmkit.benchmarks.layer",
    "sashimi": "ssmkit.benchmarks.sashimi",
}

# Rounds of at least min_time seconds; quick mode is a smoke run, not a measurement.
TIMING = {True: {"min_time": 0.002, "repeats": 3}, False: {"min_time": 0.2, "repeats": 5}}


def load_cases(families: list[str] | None, quick: bool, device: str = "cpu", framework: str = "torch") -> list[Case]:
    """The cases of the named families (all when None or empty), in FAMILIES order if all,
    with their inputs on ``device`` ("cpu" or "cuda"). framework "jax": the same families
    through ssmkit.jax (benchmarks/jax.py; none where jax is not installed)."""
    names = list(dict.fromkeys(families)) if families else list(FAMILIES)
    unknown = [name for name in names if name not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown benchmark family {', '.join(map(repr, unknown))}; known: {', '.join(FAMILIES)}")
    if framework == "jax":
        return importlib.import_module("ssmkit.benchmarks.jax").cases(quick, device, names)
    cases: list[Case] = []
    for name in names:
        cases += importlib.import_module(FAMILIES[name]).cases(quick, device)
    return cases


def _seconds_per_call(fn: Callable[[], object], calls: int) -> float:
    # The collector would bill its pauses to whichever call triggers them, as timeit avoids.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls
    finally:
        if gc_was_enabled:
            gc.enable()


def time_impls(impls: dict[str, Impl], *, min_time: float, repeats: int) -> dict[str, dict]:
    """Median seconds per call of each impl's ``fn`` over ``repeats`` rounds, and throughput.

    One warm-up call absorbs first-call costs (allocation, thread pools, compilation);
    a second call sets how many calls make a round of at least ``min_time`` seconds, so
    short calls are timed in batches rather than at the timer's resolution. The impls'
    rounds alternate (A B C A B C ...): a change in the machine's load during the case
    falls on all of them alike, so their ratios stay fair.
    """
    calls = {}
    for name, impl in impls.items():
        impl.fn()
        calls[name] = max(1, math.ceil(min_time / max(_seconds_per_call(impl.fn, 1), 1e-9)))
    rounds: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(repeats):
        for name, impl in impls.items():
            rounds[name].append(_seconds_per_call(impl.fn, calls[name]))
    timings = {}
    for name, impl in impls.items():
        seconds = statistics.median(rounds[name])
        timings[name] = {
            "seconds": seconds,
            "seconds_min": min(rounds[name]),
            "seconds_max": max(rounds[name]),
            "rounds": repeats,
            "calls_per_round": calls[name],
            "work": impl.work,
            "throughput": impl.work / seconds / 1e9,
        }
    return timings


# What time_impls reports besides the work: None for a case that failed its check.
_TIMING_FIELDS = ("seconds", "seconds_min", "seconds_max", "rounds", "calls_per_round", "throughput")


def failed_cases(results: list[dict]) -> list[str]:
    """"family case shape: why" for each case of :func:`run`'s results that failed its check."""
    failed = {f"{r['family']} {r['case']} {r['shape']}: {r['check']}" for r in results if not r["valid"]}
    return sorted(failed)


def _report_progress(message: str) -> None:
    # On a terminal one status line is rewritten in place; in a log each step gets a line.
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + message)
    else:
        sys.stderr.write(message + "\n")
    sys.stderr.flush()


def synced(fn: Callable[[], object], device: str) -> Callable[[], object]:
    """fn, returning only once the device has finished its work (CUDA runs asynchronously)."""
    if device == "cpu":
        return fn
    import torch

    def call():
        out = fn()
        torch.cuda.synchronize()
        return out

    return call


# FP32 lanes per SM where it is not 128 (CUDA C Programming Guide, "Arithmetic Instructions").
_FP32_LANES = {(6, 0): 64, (7, 0): 64, (7, 2): 64, (7, 5): 64, (8, 0): 64}

# The CPU probes (csrc/cpu/probe.cpp), about a second together: FMA iterations per chain
# and thread, and the triad's array length (3 x 64 MiB, larger than any last-level cache).
_CPU_PROBE = {"fma_iterations": 20_000_000, "stream_floats": 1 << 24}


def device_peaks(device: str) -> dict:
    """The roofline's two limits: FP32 operations/s ("flop") and memory bytes/s ("byte"),
    with how they were found ("method").

    CPU: measured now, on ssmkit's threads with the ISA its kernels use: independent FMA
    chains in registers (best of 3), and STREAM's triad a = b + s c over three arrays far
    larger than the caches (best of 5, 12 bytes per element as STREAM counts); a case
    whose data stays in cache can go past the bandwidth limit. CUDA: from
    the device's attributes: SMs x clock x FP32 lanes per SM x 2 (an FMA is two
    operations), and memory clock x 2 (double data rate) x bus width."""
    if device == "cpu":
        measured = _C.cpu_peaks(**_CPU_PROBE)
        isa = _C.build_info()["cpu_isa"]
        mib = 4 * _CPU_PROBE["stream_floats"] / 2**20
        return {
            "flop": measured["flop"],
            "byte": measured["byte"],
            "method": f"measured now on {measured['threads']} threads: FP32 FMA chains in {isa} registers "
            f"(best of 3); STREAM triad over 3 x {mib:.0f} MiB arrays (best of 5)",
        }
    import torch

    f = _C.cuda_device_facts(torch.cuda.current_device())
    lanes = _FP32_LANES.get((f["major"], f["minor"]), 128)
    return {
        "flop": f["sm_count"] * f["clock_khz"] * 1e3 * lanes * 2,
        "byte": f["memory_clock_khz"] * 1e3 * 2 * f["memory_bus_bits"] / 8,
        "method": "from the device's attributes",
    }


def run(cases: list[Case], *, quick: bool, progress: bool, device: str = "cpu", peaks: dict | None = None) -> list[dict]:
    """Check, then time, every impl of every case; one dict per (case, impl), ready for JSON.

    ``check`` is the verdict of the case's check (on every row of the case), ``valid``
    whether it passed; a case that fails is not timed (its timing fields are None).
    ``x_ssmkit`` is ssmkit's throughput over the impl's: how many times faster ssmkit is.
    With ``peaks`` (:func:`device_peaks`), ``of_peak`` is the row's throughput over the
    roofline's at the case's cost per work unit, and ``peak_kind`` the limit that bounds
    it ("flop": FMA throughput, "byte": memory bandwidth); every row of a case is rated
    by the same cost, the work as ssmkit's kernel does it.
    """
    steps = sum(len(case.impls) for case in cases)
    step = 0
    results = []
    for case in cases:
        if progress:
            _report_progress(f"[{step + 1}/{steps}] {case.family} {case.name} {case.shape}: check")
        verdict = case.check()
        step += len(case.impls)
        if verdict.ok:
            if progress:
                _report_progress(f"[{step}/{steps}] {case.family} {case.name} {case.shape}: {', '.join(case.impls)}")
            synced_impls = {name: Impl(synced(impl.fn, device), impl.work) for name, impl in case.impls.items()}
            timings = time_impls(synced_impls, **TIMING[quick])
        else:
            timings = {name: dict.fromkeys(_TIMING_FIELDS) | {"work": impl.work} for name, impl in case.impls.items()}
        ssmkit_throughput = next(iter(timings.values()))["throughput"]
        limit, kind = case.cost.limit(peaks) if peaks and case.cost else (None, None)
        for impl_name, timing in timings.items():
            of_peak = timing["throughput"] * 1e9 / limit if limit and verdict.ok else None
            results.append(
                {
                    "family": case.family,
                    "case": case.name,
                    "shape": case.shape,
                    "impl": impl_name,
                    "unit": case.unit,
                    "check": str(verdict),
                    "valid": verdict.ok,
                    **timing,
                    "x_ssmkit": ssmkit_throughput / timing["throughput"] if verdict.ok else None,
                    "of_peak": of_peak,
                    "peak_kind": kind if of_peak is not None else None,
                    "note": case.note,
                }
            )
    if progress and steps and sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
    return results


def format_table(results: list[dict]) -> str:
    """A plain-text table of :func:`run`'s results; notes become numbered footnotes. The
    check column stands on ssmkit's row of each case; a case that failed it has no times."""
    notes: list[str] = []
    rows = []
    rated = any(r.get("of_peak") is not None for r in results)
    for r in results:
        case = r["case"]
        if r["note"]:
            if r["note"] not in notes:
                notes.append(r["note"])
            case += f" [{notes.index(r['note']) + 1}]"
        first = not rows or rows[-1][:3] != [r["family"], case, r["shape"]]
        timed = [f"{r['seconds'] * 1e3:.3f}", f"{r['throughput']:.3f} {r['unit']}", f"{r['x_ssmkit']:.2f}"] if r["valid"] else ["-"] * 3
        rows.append(
            [r["family"], case, r["shape"], r["impl"], *timed]
            + ([_peak_cell(r)] if rated else [])
            + [r["check"] if first else ""]
        )
    header = ["family", "case", "shape", "impl", "time (ms)", "throughput", "x ssmkit"]
    header += ["of peak"] if rated else []
    header += ["check"]
    numeric = {4, 5, 6, 7} if rated else {4, 5, 6}  # right-aligned so the digits line up
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    lines = [line(header), line(["-" * w for w in widths])] + [line(row) for row in rows]
    lines += [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    return "\n".join(lines)


def _peak_cell(r: dict) -> str:
    if r.get("of_peak") is None:
        return ""
    return f"{100 * r['of_peak']:.1f}% {'FMA' if r['peak_kind'] == 'flop' else 'mem BW'}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for entry in cpuinfo:
                if entry.startswith("model name"):
                    return entry.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """What the timings depend on: the CPU, the threads ssmkit uses and the ISA it picked."""
    build = _C.build_info()
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "ssmkit_threads": _C.get_num_threads(),
        "cpu_isa": build["cpu_isa"],
        "ssmkit_version": build["version"],
        "python": platform.python_version(),
    }
