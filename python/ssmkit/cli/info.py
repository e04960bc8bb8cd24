"""``ssmkit info``: how this build was made and what it runs on."""

from __future__ import annotations

import argparse
import os
import platform
import sys

from .. import _C, benchmarks
from .command import Command, torch_or_none


def _cuda_build_line(build: dict) -> str:
    if not build["cuda_compiled"]:
        return "not compiled (CPU-only build; rebuild with a CUDA compiler on PATH, SSMKIT_CUDA=ON)"
    return f"compiled with CUDA {build['cuda_version']} for {build['cuda_architectures']}"


def _cuda_devices_line() -> str:
    devices = _C.cuda_devices().strip()
    if not devices or devices.startswith("error:"):
        reason = devices.removeprefix("error:").strip()
        return "none visible" + (f" ({reason})" if reason else "")
    return devices


def _torch_line(torch) -> str:
    if torch is None:
        return "not installed (ssmkit.ops needs it for tensors; NumPy arrays work without it)"
    if not torch.cuda.is_available():
        cuda = "CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, no device visible"
        return f"{torch.__version__} ({cuda})"
    names = ", ".join(f"{i}: {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count()))
    return f"{torch.__version__} (CUDA {torch.version.cuda}; {names})"


def run(args: argparse.Namespace) -> int:
    import numpy

    build = _C.build_info()
    isa_cap = os.environ.get("SSMKIT_CPU_ISA")
    rows = [
        ("compiler", build["compiler"]),
        (
            "CPU ISA",
            f"{build['cpu_isa']} (compiled: {build['cpu_isas_compiled'].replace(',', ', ')}"
            + (f"; capped by SSMKIT_CPU_ISA={isa_cap}" if isa_cap else "")
            + ")",
        ),
        ("CPU", f"{benchmarks.machine_info()['cpu']}, {os.cpu_count()} logical CPUs"),
        ("OpenMP", f"{'yes' if build['openmp'] else 'no'}, {build['num_threads']} threads"),
        ("CUDA code", _cuda_build_line(build)),
        ("sanitizers", build["sanitizers"] or "none"),
        ("CUDA devices", _cuda_devices_line()),
        ("torch", _torch_line(torch_or_none())),
        ("numpy", numpy.__version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"ssmkit {build['version']}")
    for name, value in rows:
        # Multi-line values (one CUDA device per line) stay under their column.
        print(f"  {name:<{width}}  " + value.replace("\n", "\n" + " " * (width + 4)))
    return 0


COMMAND = Command(help="how this build was made and what it runs on", run=run)
