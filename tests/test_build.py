"""What the compiled core reports about itself, its run-time settings, and that each of
its headers compiles on its own."""

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ssmkit


def test_build_info_fields():
    info = ssmkit._C.build_info()
    assert info["version"] == ssmkit.__version__
    for key in ("compiler", "cpu_isa", "cpu_isas_compiled"):
        assert isinstance(info[key], str) and info[key]
    compiled = info["cpu_isas_compiled"].split(",")
    assert "baseline" in compiled  # one build must run on any CPU of the architecture
    assert info["cpu_isa"] in compiled
    assert isinstance(info["openmp"], bool) and isinstance(info["cuda_compiled"], bool)
    assert isinstance(info["num_threads"], int) and info["num_threads"] >= 1
    assert isinstance(info["sanitizers"], str)  # "" unless built with SSMKIT_SANITIZE


def test_build_is_the_installed_distribution():
    # the compiled core and the installed package metadata come from one build
    assert ssmkit._C.build_info()["version"] == importlib.metadata.version("ssmkit")


def test_isa_cap_from_environment():
    # SSMKIT_CPU_ISA=baseline is read once, at import, and always honoured.
    code = "import ssmkit; print(ssmkit._C.build_info()['cpu_isa'])"
    env = dict(os.environ, SSMKIT_CPU_ISA="baseline")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "baseline"


def test_num_threads_roundtrip():
    n = ssmkit.get_num_threads()
    try:
        ssmkit.set_num_threads(1)
        assert ssmkit.get_num_threads() == 1
        assert ssmkit._C.build_info()["num_threads"] == 1
    finally:
        ssmkit.set_num_threads(n)
    assert ssmkit.get_num_threads() == n


@pytest.mark.parametrize("bad", [0, -3])
def test_num_threads_rejects_non_positive(bad):
    with pytest.raises(ValueError, match="positive thread count"):
        ssmkit.set_num_threads(bad)


@pytest.mark.skipif(
    shutil.which("nvcc") is None or ssmkit._C.build_info()["cuda_requested"] == "OFF",
    reason="no nvcc on PATH, or built with SSMKIT_CUDA=OFF: a CPU-only build is expected",
)
def test_cuda_sources_are_compiled_when_nvcc_is_present():
    # SSMKIT_CUDA=AUTO (the default) builds the CUDA kernels whenever nvcc is found; CI
    # has nvcc but no GPU, so this is what keeps the CUDA sources compiling there.
    info = ssmkit._C.build_info()
    assert info["cuda_compiled"], "nvcc is on PATH but this build of ssmkit has no CUDA kernels"
    assert info["cuda_architectures"] and info["cuda_version"]


ROOT = Path(__file__).resolve().parents[1]
HEADERS = sorted(p.relative_to(ROOT).as_posix() for d in ("csrc/include/ssmkit", "csrc/cpu") for p in (ROOT / d).glob("*.h"))
CXX = os.environ.get("CXX") or next(filter(None, map(shutil.which, ("c++", "g++", "clang++"))), None)
needs_cxx = pytest.mark.skipif(CXX is None or not HEADERS, reason="no C++ compiler on PATH, or no csrc/ beside tests/")


def compile_alone(source):
    """Compiles source as a translation unit of its own, as the per-ISA kernels are built
    (csrc/include on the include path, SSMKIT_ISA set); returns the compiler's result."""
    cmd = [CXX, "-std=c++17", "-fsyntax-only", "-x", "c++", f"-I{ROOT / 'csrc/include'}", "-DSSMKIT_ISA=baseline", "-"]
    return subprocess.run(cmd, input=source, capture_output=True, text=True, timeout=120)


@needs_cxx
@pytest.mark.parametrize("header", HEADERS)
def test_header_compiles_alone(header):
    # Every header includes what it uses and opens its own namespaces: included first
    # and alone, it compiles.
    r = compile_alone(f'#include "{ROOT / header}"\n')
    assert r.returncode == 0, f"{header} does not compile on its own:\n{r.stderr}"


@needs_cxx
def test_header_check_sees_errors():
    # the check above would pass vacuously if the compiler accepted anything
    r = compile_alone(f'#include "{ROOT / "csrc/include/ssmkit/ssmkit.h"}"\nssmkit::Batch b = undeclared_name;\n')
    assert r.returncode != 0 and "undeclared_name" in r.stderr
