"""ssmkit and PyTorch share one OpenMP runtime whichever is imported first.

Release wheels leave ``libgomp.so.1`` out of the wheel (``auditwheel repair --exclude
libgomp.so.1``, pyproject.toml's ``[tool.cibuildwheel]``), so that ssmkit's kernels and
torch's bundled copy are one runtime: the dynamic loader loads the first ``libgomp.so.1``
it is asked for (torch's own, or the system's) and gives it to both. Each import order
runs in a fresh interpreter: the runtime is chosen once per process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ORDERS = {"torch first": ("torch", "ssmkit"), "ssmkit first": ("ssmkit", "torch")}

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/maps and libgomp: Linux")

SHARED_RUNTIME = """
import {0}, {1}
import ssmkit, torch

maps = sorted({{line.split()[-1] for line in open("/proc/self/maps") if "libgomp" in line}})
assert len(maps) == 1, f"expected one libgomp mapped, found {{maps}}"
# One runtime: torch's thread count (a per-thread OpenMP setting) is ssmkit's.
for n in (3, 1):
    torch.set_num_threads(n)
    assert ssmkit.get_num_threads() == n, (n, ssmkit.get_num_threads())
"""


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("order", ORDERS)
def test_one_runtime(order):
    first, second = ORDERS[order]
    done = run_python(SHARED_RUNTIME.format(first, second))
    assert done.returncode == 0, f"{order}:\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("order", ORDERS)
def test_threads_fork_determinism(order):
    """tests/test_threads.py (Python threads, fork after OpenMP, DataLoader workers,
    bitwise repeatability, thread-count independence) in a process that imported
    ``order``'s module first."""
    first, second = ORDERS[order]
    tests = Path(__file__).with_name("test_threads.py")
    code = f"import {first}, {second}, sys, pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', {str(tests)!r}]))"
    done = run_python(code)
    assert done.returncode == 0, f"{order}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert " passed" in done.stdout.splitlines()[-1], done.stdout[-2000:]
