"""The ``ssmkit`` command (also ``python -m ssmkit``).

``ssmkit info`` says how this build was made and what it runs on; ``ssmkit bench``
times the kernels against their baselines (see :mod:`ssmkit.benchmarks`); ``ssmkit
compare`` compares models by their data kernels (see :mod:`ssmkit.eval.compare`);
``ssmkit train sashimi``, ``ssmkit generate`` and ``ssmkit eval samples`` train SaShiMi,
sample from it and score the samples.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from . import _C, benchmarks, train
from .eval import cli as eval_cli
from .eval import compare
from .eval import samples as eval_samples


def _torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


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


def info(args: argparse.Namespace) -> int:
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
        ("torch", _torch_line(_torch_or_none())),
        ("numpy", numpy.__version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"ssmkit {build['version']}")
    for name, value in rows:
        # Multi-line values (one CUDA device per line) stay under their column.
        print(f"  {name:<{width}}  " + value.replace("\n", "\n" + " " * (width + 4)))
    return 0


def bench(args: argparse.Namespace) -> int:
    torch = _torch_or_none()
    if torch is None:
        print("ssmkit bench: the benchmarks need PyTorch; install it first, e.g. pip install torch", file=sys.stderr)
        return 1
    if args.threads is not None:
        # The baselines run in torch: give them the same threads as ssmkit.
        _C.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not (_C.build_info()["cuda_compiled"] and torch.cuda.is_available()):
        why = "this build of ssmkit has no CUDA kernels (reinstall with SSMKIT_CUDA=ON)" if not _C.build_info()[
            "cuda_compiled"] else "torch sees no CUDA GPU"  # fmt: skip
        print(f"ssmkit bench: --device cuda: {why}", file=sys.stderr)
        return 2
    machine = benchmarks.machine_info() | {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    print(
        f"ssmkit {machine['ssmkit_version']} on {machine['cpu']} ({machine['logical_cpus']} logical CPUs): "
        f"{machine['ssmkit_threads']} ssmkit threads, ISA {machine['cpu_isa']}; "
        f"torch {machine['torch']} with {machine['torch_threads']} threads",
        flush=True,
    )
    if args.device == "cuda":
        peaks = benchmarks.device_peaks("cuda")
        machine |= {"gpu": torch.cuda.get_device_name(), "gpu_peaks": peaks}
        print(
            f"on {machine['gpu']}: FP32 peak {peaks['flop'] / 1e12:.1f} TFLOP/s, memory bandwidth "
            f"{peaks['byte'] / 1e12:.2f} TB/s (from the device's attributes)",
            flush=True,
        )
    cases = benchmarks.load_cases(args.families, quick=args.quick, device=args.device)
    results = benchmarks.run(cases, quick=args.quick, progress=True, device=args.device)
    print(benchmarks.format_table(results))
    if args.json is not None:
        report = {"machine": machine, "quick": args.quick, "results": results}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


# Argument types: a bad value is a usage error (message, exit code 2) before anything runs.
def _family(name: str) -> str:
    if name not in benchmarks.FAMILIES:
        raise argparse.ArgumentTypeError(f"unknown benchmark family {name!r}; choose from {', '.join(benchmarks.FAMILIES)}")
    return name


def _json_path(text: str) -> Path:
    path = Path(text)
    if not path.resolve().parent.is_dir():
        raise argparse.ArgumentTypeError(f"the folder of {text!r} does not exist")
    return path


def _thread_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number of threads, got {text!r}")
    return count


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssmkit", description="Fast structured state space model primitives.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info_parser = commands.add_parser("info", help="how this build was made and what it runs on")
    info_parser.set_defaults(handler=info)

    bench_parser = commands.add_parser(
        "bench",
        help="time the kernels against their baselines",
        description="Time each kernel against the naive PyTorch reference (and pykeops when installed), "
        "side by side in one run; throughput is in work units per second, 'x ssmkit' is how many "
        "times faster ssmkit is than each implementation.",
    )
    bench_parser.add_argument(
        "families", nargs="*", type=_family, metavar="FAMILY", help=f"kernel families to time (default: all of {', '.join(benchmarks.FAMILIES)})"
    )
    bench_parser.add_argument("--quick", action="store_true", help="small shapes and short timing: a smoke run")
    bench_parser.add_argument("--json", type=_json_path, metavar="FILE", help="also write the results to FILE as JSON")
    bench_parser.add_argument("--threads", type=_thread_count, metavar="N", help="threads for ssmkit and torch")
    bench_parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu",
        help="where the kernels and the torch baselines run (cuda: the current GPU, with the fraction of its peak)",
    )  # fmt: skip
    bench_parser.set_defaults(handler=bench)

    train.add_parser(commands)  # train classify, train sashimi
    eval_samples.add_generate_parser(commands)
    eval_cli.add_parser(commands)  # eval robustness, eval samples
    compare.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.handler(args)
