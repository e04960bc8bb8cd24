"""The devices the op tests run on: "cpu", plus "cuda" when torch sees a GPU and this
build of ssmkit has its CUDA kernels."""

import pytest
import torch

import ssmkit

CUDA_BUILD = bool(ssmkit._C.build_info()["cuda_compiled"])
HAVE_CUDA = CUDA_BUILD and torch.cuda.is_available()
DEVICES = ["cpu"] + (["cuda"] if HAVE_CUDA else [])

NO_CUDA_REASON = (
    "needs a CUDA GPU and a CUDA build of ssmkit"
    + ("" if CUDA_BUILD else " (this build has no CUDA kernels: SSMKIT_CUDA=ON pip install .)")
    + ("" if torch.cuda.is_available() else " (torch sees no GPU)")
)
requires_cuda = pytest.mark.skipif(not HAVE_CUDA, reason=NO_CUDA_REASON)
