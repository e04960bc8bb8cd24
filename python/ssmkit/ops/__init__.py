"""ssmkit primitives: torch custom ops (with autograd) and NumPy entry points.

Every op is described once, in its family's module, by an ``Op`` (``ops/_spec.py``: its
arguments, shapes and results), from which its custom ops, fake kernel, checks and result
allocation follow. Every op has a pure-PyTorch definition in :mod:`ssmkit.ops.reference`.
"""

from .cauchy import cauchy
from .dplr import DPLRFactors, dplr_setup, dplr_step
from .step import discretize, ssm_scan, ssm_step
from .vandermonde import vandermonde, vandermonde_transpose

__all__ = [
    "cauchy", "vandermonde", "vandermonde_transpose",
    "discretize", "ssm_step", "ssm_scan", "dplr_setup", "dplr_step", "DPLRFactors", "reference",
]


def __getattr__(name):
    if name == "reference":  # needs torch; import on first use
        import importlib

        return importlib.import_module(".reference", __name__)
    raise AttributeError(f"module 'ssmkit.ops' has no attribute {name!r}")
