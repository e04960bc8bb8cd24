"""``ssmkit bench``: check each kernel against the reference, then time it against its
baselines (see :mod:`ssmkit.benchmarks`)."""

from __future__ import annotations

import argparse
import json
import sys

from .. import _C, benchmarks
from .command import Command, set_threads, torch_or_none
from .types import bench_family, json_path, thread_count


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "families", nargs="*", type=bench_family, metavar="FAMILY", help=f"kernel families to time (default: all of {', '.join(benchmarks.FAMILIES)})"
    )
    p.add_argument("--quick", action="store_true", help="small shapes and short timing: a smoke run")
    p.add_argument("--json", type=json_path, metavar="FILE", help="also write the results to FILE as JSON")
    p.add_argument("--threads", type=thread_count, metavar="N", help="threads for ssmkit and torch")
    p.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu",
        help="where the kernels and the torch baselines run (cuda: the current GPU)",
    )  # fmt: skip
    p.add_argument(
        "--framework", choices=["torch", "jax"], default="torch",
        help="jax: each kernel through ssmkit.jax under jit, against its jitted jnp reference and the torch path",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    torch = torch_or_none()
    if torch is None:
        print("ssmkit bench: the benchmarks need PyTorch; install it first, e.g. pip install torch", file=sys.stderr)
        return 1
    set_threads(args.threads)  # the baselines run in torch: the same threads as ssmkit
    if args.device == "cuda" and not (_C.build_info()["cuda_compiled"] and torch.cuda.is_available()):
        why = "this build of ssmkit has no CUDA kernels (reinstall with SSMKIT_CUDA=ON)" if not _C.build_info()[
            "cuda_compiled"] else "torch sees no CUDA GPU"  # fmt: skip
        print(f"ssmkit bench: --device cuda: {why}", file=sys.stderr)
        return 2
    if args.framework == "jax":
        from ..benchmarks import jax as jax_cases

        if not jax_cases.available() or args.device != "cpu":
            why = 'needs JAX: pip install "ssmkit[jax]"' if not jax_cases.available() else "runs on the CPU only"
            print(f"ssmkit bench: --framework jax {why}", file=sys.stderr)
            return 2
    machine = benchmarks.machine_info() | {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    print(
        f"ssmkit {machine['ssmkit_version']} on {machine['cpu']} ({machine['logical_cpus']} logical CPUs): "
        f"{machine['ssmkit_threads']} ssmkit threads, ISA {machine['cpu_isa']}; "
        f"torch {machine['torch']} with {machine['torch_threads']} threads",
        flush=True,
    )
    peaks = benchmarks.device_peaks(args.device)
    machine["peaks"] = peaks
    if args.device == "cuda":
        machine["gpu"] = torch.cuda.get_device_name()
    where = f"on {machine['gpu']}" if args.device == "cuda" else "CPU"
    print(
        f"{where} limits: FP32 {peaks['flop'] / 1e9:,.1f} GFLOP/s, memory bandwidth {peaks['byte'] / 1e9:,.1f} GB/s "
        f"({peaks['method']}); 'of peak': each row's throughput over the roofline's at its case's "
        "flop and byte count, and the limit that bounds it (data that stays in cache can pass the bandwidth limit)",
        flush=True,
    )
    cases = benchmarks.load_cases(args.families, quick=args.quick, device=args.device, framework=args.framework)
    results = benchmarks.run(cases, quick=args.quick, progress=True, device=args.device, peaks=peaks)
    print(benchmarks.format_table(results))
    if args.json is not None:
        report = {"machine": machine, "quick": args.quick, "results": results}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = benchmarks.failed_cases(results)
    if failed:
        print(f"ssmkit bench: {len(failed)} case(s) failed their check against the reference, not timed: "
              + "; ".join(failed), file=sys.stderr)  # fmt: skip
        return 1
    return 0


COMMAND = Command(
    help="time the kernels against their baselines",
    description="Time each kernel against the naive PyTorch reference (and pykeops when installed), "
    "side by side in one run; throughput is in work units per second, 'x ssmkit' is how many "
    "times faster ssmkit is than each implementation. Before timing, each case's result is checked "
    "against the float64 ground truth (the 2x rule, column 'check'); a case that fails is not timed, and "
    "the command exits with status 1. Column 'of peak' rates each row against the machine's roofline, "
    "FMA throughput and memory bandwidth measured at the start of the run (from the attributes on a GPU).",
    arguments=arguments,
    run=run,
)
