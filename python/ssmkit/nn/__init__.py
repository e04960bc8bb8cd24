"""S4 and S4D layers on ssmkit's kernels.

- :class:`S4`: the layer (``mode="dplr"`` for S4, ``"diag"`` for S4D), with convolution,
  stateful (chunked) and step-by-step modes.
- :func:`param_groups`: optimizer groups with S4's learning rate for the SSM parameters.
- :mod:`ssmkit.hippo`: HiPPO-LegS (NPLR) and diagonal initialisations (NumPy, shared with
  :mod:`ssmkit.jax.s4`).
- :mod:`ssmkit.nn.ssm_kernel`: the DPLR and diagonal SSM convolution kernels.
- :mod:`ssmkit.nn.backend`: the primitives a layer runs on (compiled or reference).
"""

from . import ssm_kernel
from .optim import param_groups
from .s4 import S4

__all__ = ["S4", "param_groups", "ssm_kernel"]
