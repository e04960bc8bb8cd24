"""ssmkit for JAX: the compiled kernels as XLA custom calls, under jit, grad and vmap.

The primitives of :mod:`ssmkit.ops` with the same names, arguments and meanings, as
``jax.custom_vjp`` functions whose kernels run through XLA's FFI (``jax.ffi.ffi_call``;
the handlers are csrc/ffi/handlers.cpp). Gradients follow JAX's convention for complex
inputs (the conjugate of PyTorch's). :mod:`ssmkit.jax.reference` defines each in
``jax.numpy``. Needs ``pip install "ssmkit[jax]"``; ``import ssmkit`` never imports jax.
"""

try:
    import jax  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError('ssmkit.jax needs JAX: pip install "ssmkit[jax]" (or pip install jax)') from e

from . import ops as _ops
from .ops import *  # noqa: F401,F403

__all__ = [*_ops.__all__, "reference"]


def __getattr__(name):
    if name == "reference":
        import importlib

        return importlib.import_module(".reference", __name__)
    raise AttributeError(f"module 'ssmkit.jax' has no attribute {name!r}")
