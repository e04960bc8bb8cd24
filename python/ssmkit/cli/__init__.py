"""The ``ssmkit`` command (also ``python -m ssmkit``), one module per command.

``ssmkit info`` says how this build was made and what it runs on (:mod:`.info`);
``ssmkit bench`` checks the kernels against the reference and times them against their
baselines (:mod:`.bench`, see :mod:`ssmkit.benchmarks`); ``ssmkit train classify`` and
``ssmkit train sashimi`` train models (:mod:`.train`); ``ssmkit generate`` samples from
SaShiMi (:mod:`.generate`); ``ssmkit eval samples`` and ``ssmkit eval robustness``
evaluate them (:mod:`.eval`); ``ssmkit compare`` compares models by their data kernels
(:mod:`.compare`). Each module declares its :class:`~.command.Command`; the option types
are in :mod:`.types`. Nothing here imports torch: ``ssmkit info`` stays fast.
"""

from __future__ import annotations

import argparse

from . import bench, compare, generate, info, train
from . import eval as evaluate

# The commands, in the order ``ssmkit --help`` lists them.
COMMANDS = {
    "info": info.COMMAND,
    "bench": bench.COMMAND,
    "train": train.COMMAND,
    "generate": generate.COMMAND,
    "eval": evaluate.COMMAND,
    "compare": compare.COMMAND,
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ssmkit", description="Fast structured state space model primitives.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        command.add_to(commands, name)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.handler(args)
