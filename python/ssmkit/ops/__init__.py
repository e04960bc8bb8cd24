"""ssmkit primitives: torch custom ops (with autograd) and NumPy entry points.

Every op is described once, in its family's module, by an ``Op`` (``ops/_spec.py``: its
arguments, shapes and results), from which its custom ops, fake kernel, checks and result
allocation follow. Every op has a pure-PyTorch definition in :mod:`ssmkit.ops.reference`.
"""

from . import cauchy as _cauchy, dplr as _dplr, fft_conv as _fft_conv, step as _step, vandermonde as _vandermonde
from .cauchy import *  # noqa: F401,F403 (each family module's __all__)
from .dplr import *  # noqa: F401,F403
from .fft_conv import *  # noqa: F401,F403
from .step import *  # noqa: F401,F403
from .vandermonde import *  # noqa: F401,F403

__all__ = [*_cauchy.__all__, *_vandermonde.__all__, *_step.__all__, *_dplr.__all__, *_fft_conv.__all__, "reference"]


def __getattr__(name):
    if name == "reference":  # needs torch; import on first use
        import importlib

        return importlib.import_module(".reference", __name__)
    raise AttributeError(f"module 'ssmkit.ops' has no attribute {name!r}")
