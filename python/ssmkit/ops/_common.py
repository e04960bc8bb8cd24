"""Helpers shared by the op modules: input kinds, shapes and tensor preparation."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

try:
    import torch
except ImportError:  # the NumPy entry points work without torch
    torch = None


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


def batch_shape(op: str, shapes: Mapping[str, tuple], layouts: Mapping[str, str]) -> tuple:
    """Broadcast the leading dimensions (all but the last) of each named shape."""
    for name, shape in shapes.items():
        if len(shape) < 1:
            raise ValueError(f"{name}: expected an array of shape {layouts[name]}, got shape {tuple(shape)}")
    try:
        return tuple(np.broadcast_shapes(*(tuple(s[:-1]) for s in shapes.values())))
    except ValueError:
        desc = ", ".join(f"{n} of shape {tuple(s)}" for n, s in shapes.items())
        raise ValueError(f"{op}: the leading dimensions of the inputs must broadcast together; got {desc}") from None


def plain(t):
    """A tensor the compiled core can read through DLPack: detached, no lazy conj/neg bits."""
    return t.detach().resolve_conj().resolve_neg()


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def check_complex_tensor(name: str, t, like: tuple[str, object] | None = None) -> None:
    """Raise TypeError unless t is complex64/complex128 (and of the same dtype as `like`).

    Used by fake kernels, which never reach the compiled core's own checks."""
    if t.dtype not in (torch.complex64, torch.complex128):
        raise TypeError(f"{name}: expected a complex64 or complex128 tensor, got {_dtype_name(t.dtype)}")
    if like is not None and t.dtype != like[1].dtype:
        raise TypeError(f"{name}: expected {_dtype_name(like[1].dtype)} like {like[0]}, got {_dtype_name(t.dtype)}")


def sum_to(t, shape):
    """Sum a gradient computed at the broadcast shape back to an input's shape."""
    return t if tuple(t.shape) == tuple(shape) else t.sum_to_size(shape)
