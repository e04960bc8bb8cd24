"""Helpers shared by the op modules: input kinds, devices, streams and tensor preparation."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TypeVar

import numpy as np

try:
    import torch
except ImportError:  # the NumPy entry points work without torch
    torch = None  # type: ignore[assignment]

# What the ops take and give: torch tensors in, tensors out; NumPy arrays in, arrays out
# (CuPy arrays work too, through the same path as NumPy's, but are not in the type).
Array = TypeVar("Array", "torch.Tensor", np.ndarray)


def is_tensor(x) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def use_torch(op: str, args: Mapping[str, object]) -> bool:
    """True if the call goes through torch (all tensors), False for arrays; mixing fails."""
    kinds = {name: is_tensor(a) for name, a in args.items()}
    if all(kinds.values()):
        return True
    if not any(kinds.values()):
        return False
    tensors = [n for n, k in kinds.items() if k]
    others = [f"{n} ({type(args[n]).__name__})" for n, k in kinds.items() if not k]
    raise TypeError(
        f"{op}: expected all inputs to be torch tensors or all to be arrays; got tensors for "
        f"{', '.join(tensors)} and {', '.join(others)}"
    )


def as_array(name: str, x):
    """An array-like for the compiled core: keeps DLPack/buffer objects, converts the rest."""
    if hasattr(x, "__dlpack__") or isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except Exception as e:  # noqa: BLE001 - report what could not be converted
        raise TypeError(f"{name}: expected an array, got {type(x).__name__}") from e


def run_core(fn, ref, *args):
    """Calls the compiled core's fn(*args) where tensor ref lives.

    On a GPU: with ref's device current (torch exports a CUDA tensor through DLPack only
    from its own device) and on torch's current stream there, read at every call (never
    cached, so user streams and CUDA graph capture are honoured). The core does not
    synchronise: the tensors are ready on that stream, as for any torch op."""
    if ref.device.type == "cuda":
        with torch.cuda.device(ref.device):
            return fn(*args, stream=torch.cuda.current_stream(ref.device).cuda_stream)
    return fn(*args)


def array_module(x):
    """numpy, or cupy for a CuPy array (imported only when one is passed)."""
    if type(x).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


def device_of(x):
    """A context making x's device current while outputs are allocated (CuPy allocates on
    the current device); does nothing for NumPy arrays."""
    xp = array_module(x)
    return contextlib.nullcontext() if xp is np else x.device


def array_stream(x) -> int:
    """The CUDA stream for a call on array x: CuPy's current stream for a CuPy array, else 0."""
    xp = array_module(x)
    return 0 if xp is np else xp.cuda.get_current_stream().ptr


def plain(t):
    """A tensor the compiled core can read through DLPack: detached, no lazy conj/neg bits."""
    return t.detach().resolve_conj().resolve_neg()


_PLAIN_TYPES = () if torch is None else (torch.Tensor, torch.nn.Parameter)


def direct_call_ok(tensors) -> bool:
    """True when tensors can skip the torch.ops dispatch and go to the op's kernel directly.

    The dispatch costs tens of microseconds a call, more than the work of the per-sample
    ops (ssm_step, dplr_step), and its first call in a process imports torch._dynamo
    (about a second), which a first generation would otherwise pay. Allowed only in eager
    mode (not traced by torch.compile), outside autograd, for plain contiguous CPU tensors
    without lazy conj/neg bits (so nothing needs a copy); None entries are skipped.
    Anything else, arrays included, takes the general path, which has the same semantics.
    """
    if torch is None or torch.compiler.is_compiling():
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is None:
            continue
        if (type(t) not in _PLAIN_TYPES or not t.is_cpu or (grad and t.requires_grad)
                or not t.is_contiguous() or t.is_conj() or t.is_neg()):  # fmt: skip
            return False
    return True


def sum_to(t, shape):
    """Sum a gradient computed at the broadcast shape back to an input's shape."""
    return t if tuple(t.shape) == tuple(shape) else t.sum_to_size(shape)
