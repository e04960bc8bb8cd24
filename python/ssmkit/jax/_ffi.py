"""Registers the compiled core's XLA FFI handlers with JAX, once, on first use: for the
CPU always, for CUDA when the build has CUDA kernels and JAX has a GPU."""

from __future__ import annotations

import threading

import jax

from .. import _C

_lock = threading.Lock()
_registered = False


def _register() -> None:
    global _registered
    with _lock:
        if _registered:
            return
        for name, capsule in _C.ffi_targets("cpu").items():
            jax.ffi.register_ffi_target(name, capsule, platform="cpu")
        cuda = _C.ffi_targets("CUDA")
        if cuda:
            try:
                has_gpu = bool(jax.devices("cuda"))
            except RuntimeError:  # no CUDA backend in this jaxlib, or no device
                has_gpu = False
            if has_gpu:
                for name, capsule in cuda.items():
                    jax.ffi.register_ffi_target(name, capsule, platform="CUDA")
        _registered = True


def target(op: str) -> str:
    """The FFI target name of an op of the core (registering the handlers first)."""
    if not _registered:
        _register()
    return "ssmkit_" + op
