"""ssmkit: fast structured state space model primitives (S4, S4D).

The compiled core (``ssmkit._C``) holds C++ and CUDA kernels; ``ssmkit.ops`` wraps
them as PyTorch custom operators (with autograd) and NumPy entry points.
"""

from importlib.metadata import version as _version

from . import _C
from ._C import get_num_threads, set_num_threads

# The one version is pyproject.toml's; the build passes it to _C (build_info()["version"]).
__version__: str = _version("ssmkit")

__all__ = ["__version__", "get_num_threads", "set_num_threads", "ops"]


def __getattr__(name):
    # ssmkit.ops imports torch when it is installed; load it on first use only.
    if name == "ops":
        import importlib

        return importlib.import_module(".ops", __name__)
    raise AttributeError(f"module 'ssmkit' has no attribute {name!r}")
