"""What a module of :mod:`ssmkit.cli` declares: its command (or group of subcommands),
and the set-up steps several commands share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Command:
    """One ``ssmkit`` command: its help line, description, options and what runs it; or,
    with ``subcommands``, a group (``ssmkit train JOB``) whose choice goes to ``dest``."""

    help: str
    description: str | None = None
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    run: Callable[[argparse.Namespace], int] | None = None
    subcommands: dict[str, Command] = field(default_factory=dict)
    dest: str | None = None
    metavar: str | None = None

    def add_to(self, commands, name: str) -> None:
        """Add this command as ``name`` to the subparsers ``commands``."""
        parser = commands.add_parser(name, help=self.help, description=self.description)
        if self.subcommands:
            group = parser.add_subparsers(dest=self.dest, required=True, metavar=self.metavar)
            for sub_name, sub in self.subcommands.items():
                sub.add_to(group, sub_name)
        else:
            if self.arguments is not None:
                self.arguments(parser)
            parser.set_defaults(handler=self.run)


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


def set_threads(threads: int | None) -> None:
    """Give torch and ssmkit ``threads`` CPU threads (None: leave them as they are)."""
    if threads is None:
        return
    import torch

    from .. import set_num_threads

    set_num_threads(threads)
    torch.set_num_threads(threads)
