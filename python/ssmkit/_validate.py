"""Checks of the library's arguments, one place for each (the command line's argparse
types are in :mod:`ssmkit.cli.types`)."""

from __future__ import annotations

import numbers


def positive_int(name: str, value, *, upper: int | None = None, upper_text: str = "") -> int:
    """``value`` as an int when it is a whole number >= 1 (and <= ``upper``, which
    ``upper_text`` explains); ValueError naming ``name`` otherwise. bool is not a number here."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if upper is not None and int(value) > upper:
        raise ValueError(f"{name}: expected at most {upper} ({upper_text}), got {value}")
    return int(value)


S4_MODES = ("dplr", "diag")
S4_ACTIVATIONS = ("gelu", "relu", "silu", "tanh", "identity")


def s4_options(d_state, mode, init, dt_min, dt_max, dropout, activation, discretization) -> str:
    """The checks of an S4 layer's options, for the torch (:class:`ssmkit.nn.S4`) and the JAX
    layer (:mod:`ssmkit.jax.s4`) alike; returns the discretization (None: the mode's default)."""
    if isinstance(d_state, bool) or not isinstance(d_state, int) or d_state < 2 or d_state % 2:
        raise ValueError(f"d_state: expected an even integer >= 2 (conjugate pairs), got {d_state!r}")
    if mode not in S4_MODES:
        raise ValueError(f'mode: expected "dplr" or "diag", got {mode!r}')
    if mode == "dplr" and init != "legs":
        raise ValueError(f'init: mode="dplr" supports init="legs" (HiPPO-LegS NPLR), got {init!r}')
    if not (isinstance(dt_min, (int, float)) and isinstance(dt_max, (int, float)) and 0 < dt_min <= dt_max):
        raise ValueError(f"dt_min, dt_max: expected 0 < dt_min <= dt_max, got dt_min={dt_min!r}, dt_max={dt_max!r}")
    if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
    if activation not in S4_ACTIVATIONS:
        raise ValueError(f"activation: expected one of {', '.join(map(repr, S4_ACTIVATIONS))}, got {activation!r}")
    if discretization is None:
        discretization = "bilinear" if mode == "dplr" else "zoh"
    if discretization not in ("zoh", "bilinear") or (mode == "dplr" and discretization != "bilinear"):
        allowed = '"bilinear"' if mode == "dplr" else '"zoh" or "bilinear"'
        raise ValueError(f"discretization: mode={mode!r} takes {allowed}, got {discretization!r}")
    return discretization
