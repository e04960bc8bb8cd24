"""The compiled core's error paths: every failure is a Python exception naming the
argument (TypeError, ValueError, MemoryError), never an abort, an exit or a message
only on stderr. Each path is provoked directly through ssmkit._C and through ssmkit.ops."""

from __future__ import annotations

import math
import ctypes
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import ssmkit
from ssmkit import _C, ops

C64 = np.complex64


def cauchy_args(N=3, L=4):
    v = np.ones((2, N), C64)
    return v, np.ones(L, C64), np.ones(N, C64) * (-1 + 1j), np.empty((2, L), C64)


# ---- what is not an array ----------------------------------------------------------


class NotACapsule:
    def __dlpack__(self, *args, **kwargs):
        return "not a capsule"

    def __dlpack_device__(self):
        return (1, 0)


class RaisesInDlpack:
    def __dlpack__(self, *args, **kwargs):
        raise ValueError("producer refuses")

    def __dlpack_device__(self):
        return (1, 0)


@pytest.mark.parametrize(
    "obj, exc, fragment",
    [
        (None, TypeError, "v: expected an array, got None"),
        (object(), TypeError, "v: expected an array (an object with __dlpack__"),
        ("text", TypeError, "v: expected an array"),
        (NotACapsule(), TypeError, "v: __dlpack__() did not return a DLPack capsule"),
        (RaisesInDlpack(), ValueError, "producer refuses"),  # the producer's own error, unchanged
        (np.ones((2, 3), np.int8), TypeError, "v: expected a complex64 or complex128 array, got int8"),
        (np.ones((2, 3), np.float16), TypeError, "v: expected a complex64 or complex128 array, got float16"),
        (torch.ones(2, 3, dtype=torch.bfloat16), TypeError, "v: expected a complex64 or complex128 array, got bfloat16"),
        (np.ones((2, 3), bool), TypeError, "v: expected a complex64 or complex128 array, got bool"),
    ],
)
def test_not_an_array(obj, exc, fragment):
    v, z, w, out = cauchy_args()
    with pytest.raises(exc) as info:
        _C.cauchy(obj, z, w, out)
    assert fragment in str(info.value)


def _versioned_capsule(major):
    """A "dltensor_versioned" capsule with the given major version (built with ctypes)."""

    class Tensor(ctypes.Structure):
        _fields_ = [("data", ctypes.c_void_p), ("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32),
                    ("ndim", ctypes.c_int32), ("code", ctypes.c_uint8), ("bits", ctypes.c_uint8),
                    ("lanes", ctypes.c_uint16), ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
                    ("byte_offset", ctypes.c_uint64)]  # fmt: skip

    class Managed(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32), ("ctx", ctypes.c_void_p),
                    ("deleter", ctypes.c_void_p), ("flags", ctypes.c_uint64), ("dl_tensor", Tensor)]  # fmt: skip

    data = (ctypes.c_float * 2)(1.0, 0.0)  # one complex64 value, 1
    shape = (ctypes.c_int64 * 1)(1)
    m = Managed(major, 0, None, None, 0, Tensor(ctypes.addressof(data), 1, 0, 1, 5, 64, 1, ctypes.addressof(shape), None, 0))
    new = ctypes.pythonapi.PyCapsule_New
    new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    keep = (data, shape, m)  # alive as long as the producer object
    return new(ctypes.addressof(m), b"dltensor_versioned", None), keep


class FutureDlpack:
    def __init__(self, major):
        self.capsule, self.keep = _versioned_capsule(major)

    def __dlpack__(self, *args, **kwargs):
        return self.capsule

    def __dlpack_device__(self):
        return (1, 0)


def test_dlpack_versions():
    v, z, w, out = cauchy_args(N=1, L=4)
    with pytest.raises(TypeError, match="v: unsupported DLPack version 2"):
        _C.cauchy(FutureDlpack(2), z, w, out)
    # version 1 of the same hand-made capsule is read like any array: v = [1] (complex64)
    out = np.empty(4, C64)
    _C.cauchy(FutureDlpack(1), z, np.full(1, -1 + 0j, C64), out, True)
    assert np.array_equal(out, np.ones(4, C64))  # 1/(1 - (-1)) twice (conjugate pairs)


def test_dlpack_producer_that_refuses_strides():
    """NumPy's __dlpack__ refuses strides that are not whole elements (BufferError);
    the buffer protocol then reports them with the argument's name."""
    raw = np.zeros(40, np.uint8)
    odd = np.lib.stride_tricks.as_strided(raw[:24].view(C64), shape=(2,), strides=(12,))
    v, z, w, out = cauchy_args(N=2)
    with pytest.raises(ValueError, match="^w: expected strides that are multiples of the item size"):
        _C.cauchy(v, z, odd, out)
    with pytest.raises(ValueError, match="^w: expected strides"):
        ops.cauchy(v, z, odd)


# ---- shapes, outputs and sizes --------------------------------------------------------


def test_too_many_leading_dimensions():
    v = np.ones((1,) * 9 + (3,), C64)
    _, z, w, _ = cauchy_args()
    with pytest.raises(ValueError, match="at most 8 leading dimensions"):
        _C.cauchy(v, z, w, np.empty((1,) * 9 + (4,), C64))
    with pytest.raises(ValueError, match="at most 8 leading dimensions"):
        ops.cauchy(v, z, w)


@pytest.mark.parametrize(
    "out, exc, fragment",
    [
        (np.empty((2, 5), C64), ValueError, "out: expected an output of shape (2, 4), got (2, 5)"),
        (np.empty((2, 4), np.complex128), TypeError, "out: expected complex64 like v"),
        (np.empty((2, 8), C64)[:, ::2], ValueError, "out: expected a contiguous output"),
        (np.empty((2, 4), C64).view(), ValueError, "out: expected a writable output"),
    ],
)
def test_output_checks(out, exc, fragment):
    v, z, w, _ = cauchy_args()
    if "writable" in fragment:
        out.flags.writeable = False
    with pytest.raises(exc) as info:
        _C.cauchy(v, z, w, out)
    assert fragment in str(info.value)


def test_scratch_allocation_failure_is_memory_error():
    """A scratch buffer the machine cannot give (16 TB for N = 2^40 terms, given as
    stride-0 views of one element) is a MemoryError, not a crash. (Under ASan this needs
    ASAN_OPTIONS=allocator_may_return_null=1, as .ci/run sets.)"""
    N = 1 << 40
    one = np.ones(1, C64)
    v = np.lib.stride_tricks.as_strided(one, shape=(N,), strides=(0,))
    w = np.lib.stride_tricks.as_strided(one * (-1 + 1j), shape=(N,), strides=(0,))
    z = np.ones(3, C64)
    with pytest.raises(MemoryError):
        _C.cauchy_backward(np.ones(3, C64), v, z, w, None, np.empty(3, C64), None, True)


def test_set_num_threads_errors():
    with pytest.raises(ValueError, match="num_threads: expected a positive thread count, got 0"):
        ssmkit.set_num_threads(0)
    with pytest.raises(TypeError):
        ssmkit.set_num_threads("2")


def test_wrong_python_types_for_flags():
    v, z, w, out = cauchy_args()
    with pytest.raises(TypeError):
        _C.cauchy(v, z, w, out, "yes")
    with pytest.raises(TypeError):
        _C.discretize(np.ones(1, np.float32), np.ones((1, 1), C64), np.ones((1, 1), C64),
                      np.empty((1, 1), C64), np.empty((1, 1), C64), 3)  # fmt: skip
    with pytest.raises(ValueError, match='method: expected "zoh" or "bilinear", got "euler"'):
        _C.discretize(np.ones(1, np.float32), np.ones((1, 1), C64), np.ones((1, 1), C64),
                      np.empty((1, 1), C64), np.empty((1, 1), C64), "euler")  # fmt: skip


# ---- nothing on stderr, no abort ----------------------------------------------------

ERRORS_SCRIPT = textwrap.dedent(
    """
    import numpy as np, torch, ssmkit
    from ssmkit import _C, ops
    c = np.ones((2, 3), np.complex64)
    calls = [
        lambda: _C.cauchy(None, c, c, c),
        lambda: _C.cauchy(c, c, c, np.empty((9, 9), np.complex64)),
        lambda: _C.cauchy(c.real.copy(), c, c, c),
        lambda: _C.vandermonde(c, c, -1, np.empty((2, 0), np.float32)),
        lambda: _C.ssm_step(c, c, c, c, c, None, c, c),
        lambda: _C.ssm_scan(c, c, c, c, None, None, c, c),
        lambda: _C.ssm_scan_backward(c, c, c, c, None, None, c, None, None, None, None, None, None, None),
        lambda: _C.dplr_step(c, c, c, c, c, c, c, None, c, c),
        lambda: _C.dplr_untruncated_C(np.float32([1, 1]), c, c[:, None].copy(), c, 0, c.copy()),
        lambda: _C.discretize(np.float32([-1, 1]), c, c, c.copy(), c.copy(), "zoh"),
        lambda: _C.discretize_backward(np.float32([1, 1]), c, c, None, None, None, None, None, "x"),
        lambda: _C.vandermonde_backward(c, c, c, None, None, True),
        lambda: _C.vandermonde_transpose_backward(c, c, c, c[:, :2].copy(), None, None, None),
        lambda: _C.cauchy_backward(c, c, c[:, :2].copy(), c, None, None, None),
        lambda: _C.set_num_threads(-1),
        lambda: ops.cauchy(torch.ones(3), torch.ones(3), torch.ones(3)),
        lambda: ops.ssm_scan(torch.ones(2, 3), torch.ones(2, 2), torch.ones(2, 2), torch.ones(2, 2)),
        lambda: ops.dplr_setup(torch.ones(2), torch.ones(2, 3, dtype=torch.complex64), torch.ones(2, 1, 3), torch.ones(2, 3)),
    ]
    for call in calls:
        try:
            call()
        except (TypeError, ValueError) as e:
            print(type(e).__name__, str(e).split(":")[0])
        else:
            raise SystemExit("no error from a bad call")
    """
)


def test_errors_are_exceptions_and_silent():
    r = subprocess.run([sys.executable, "-c", ERRORS_SCRIPT], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == "", f"the compiled core wrote to stderr: {r.stderr}"
    assert len(r.stdout.splitlines()) == ERRORS_SCRIPT.count("lambda:")


# ---- the fake kernels' checks (torch.compile, the meta device) --------------------------
# They never reach the compiled core, so they check what it checks, from each op's
# description (ssmkit/ops/_spec.py), with messages naming the argument.


def meta(*shape, dtype=torch.complex64):
    return torch.empty(shape, dtype=dtype, device="meta")


F32, F64 = torch.float32, torch.float64
STEP = (meta(4, 3), meta(4, 3), meta(4, 3))  # dA, dB, dC: (H, N)


@pytest.mark.parametrize(
    "call, exc, fragment",
    [
        (lambda: ops.cauchy(meta(2, 3, dtype=F32), meta(4), meta(3)), TypeError,
         "v: expected a complex64 or complex128 tensor, got float32"),
        (lambda: ops.cauchy(meta(2, 3), meta(4), meta(3, dtype=torch.complex128)), TypeError,
         "w: expected complex64 like v, got complex128"),
        (lambda: ops.cauchy(meta(2, 3), meta(4), meta(2)), ValueError, "w: expected shape (..., N) with N = 3 as in v"),
        (lambda: ops.cauchy(meta(2, 3), meta(3, 4), meta(3)), ValueError, "must broadcast together"),
        (lambda: ops.cauchy(meta(3), meta(4), torch.ones(3, dtype=torch.complex64)), ValueError,
         "w: expected a tensor on meta like v, got one on cpu"),
        (lambda: ops.vandermonde(meta(2, 3), meta(4), 5), ValueError, "x: expected shape (..., N) with N = 3 as in v"),
        (lambda: ops.vandermonde_transpose(meta(5, dtype=F64), meta(3), meta(3)), TypeError,
         "u: expected float32 or complex64 to match v, got float64"),
        (lambda: ops.discretize(meta(4, dtype=F64), meta(4, 3), meta(4, 3)), TypeError,
         "dt: expected float32 (the real dtype of A), got float64"),
        (lambda: ops.discretize(meta(3, dtype=F32), meta(4, 3), meta(4, 3)), ValueError,
         "dt: expected shape (H,) with H = 4 as in A"),
        (lambda: ops.ssm_step(meta(2, 4, 3), meta(2, 4, dtype=F64), *STEP), TypeError,
         "u: expected float32 (the real dtype of dA), got float64"),
        (lambda: ops.ssm_step(meta(2, 4, 3), meta(3, 4, dtype=F32), *STEP), ValueError,
         "u: expected shape (batch, H) with batch = 2 as in state"),
        (lambda: ops.ssm_step(meta(2, 4, 3), meta(2, 4, dtype=F32), *STEP, meta(3, dtype=F32)), ValueError,
         "D: expected shape (H,) with H = 4 as in dA"),
        (lambda: ops.ssm_scan(meta(2, 4, dtype=F32), *STEP), ValueError, "u: expected an array of shape (batch, L, H)"),
        (lambda: ops.ssm_scan(meta(2, 5, 4, dtype=F32), *STEP, None, meta(2, 4, 2)), ValueError,
         "state: expected shape (batch, H, N) with N = 3 as in dA"),
        (lambda: ops.dplr_step(meta(2, 4, 3), meta(2, 4, dtype=F32), (*STEP[:2], meta(4, 1, 3),
                                                                       meta(4, 1, 3, dtype=F32)), STEP[2]),
         TypeError, "Q: expected complex64 like dA, got float32"),
        (lambda: ops.dplr_untruncated_C(meta(4, dtype=F64), meta(4, 3), meta(4, 1, 3), meta(4, 3), 8), TypeError,
         "dt: expected float32 (the real dtype of Lambda), got float64"),
        (lambda: ops.dplr_untruncated_C(meta(4, dtype=F32), meta(4, 3), meta(4, 1, 2), meta(4, 3), 8), ValueError,
         "P: expected shape (H, r, N) with N = 3 as in Lambda"),
        (lambda: ops.fft_conv(meta(2, 5, 4), meta(1, 4, 5, dtype=F32)), TypeError,
         "u: expected a float32 or float64 tensor, got complex64"),
        (lambda: ops.fft_conv(meta(2, 5, 4, dtype=F32), meta(1, 4, 5, dtype=F64)), TypeError,
         "k: expected float32 (the real dtype of u), got float64"),
        (lambda: ops.fft_conv(meta(2, 5, 4, dtype=F32), meta(1, 3, 5, dtype=F32)), ValueError,
         "k: expected shape (c, H, L) with H = 4 as in u"),
    ],
)
def test_fake_kernels_check_like_the_core(call, exc, fragment):
    with pytest.raises(exc) as info:
        call()
    assert fragment in str(info.value)


def test_fake_kernels_give_the_kernels_results():
    """On the meta device each op's results have the shapes and dtypes of the CPU kernel's."""
    c, r = torch.complex64, torch.float32
    cpu = {
        "cauchy": lambda t: ops.cauchy(t(2, 3), t(5), t(1, 3)),
        "vandermonde": lambda t: ops.vandermonde(t(2, 3), t(3), 7),
        "vandermonde complex": lambda t: ops.vandermonde(t(2, 3), t(3), 7, conj_pairs=False),
        "vandermonde_transpose": lambda t: ops.vandermonde_transpose(t(2, 5, dtype=r), t(3), t(1, 3)),
        "discretize": lambda t: ops.discretize(t(4, dtype=r).abs() + 1, t(4, 3), t(4, 3)),
        "ssm_step": lambda t: ops.ssm_step(t(2, 4, 3), t(2, 4, dtype=r), t(4, 3), t(4, 3), t(4, 3), t(4, dtype=r)),
        "ssm_scan": lambda t: ops.ssm_scan(t(2, 5, 4, dtype=r), t(4, 3), t(4, 3), t(4, 3)),
        "dplr_step": lambda t: ops.dplr_step(t(2, 4, 3), t(2, 4, dtype=r),
                                             (t(4, 3), t(4, 3), t(4, 1, 3), t(4, 1, 3)), t(4, 3)),
        "dplr_untruncated_C": lambda t: ops.dplr_untruncated_C(t(4, dtype=r), t(4, 3), t(4, 2, 3), t(4, 3), 8),
        "fft_conv": lambda t: ops.fft_conv(t(3, 5, 4, dtype=r), t(2, 4, 5, dtype=r)),
    }  # fmt: skip
    for name, call in cpu.items():
        want = call(lambda *s, dtype=c: torch.ones(s, dtype=dtype))
        got = call(lambda *s, dtype=c: torch.ones(s, dtype=dtype, device="meta"))
        want, got = (want,) if torch.is_tensor(want) else want, (got,) if torch.is_tensor(got) else got
        assert [(t.shape, t.dtype) for t in got] == [(t.shape, t.dtype) for t in want], name
        assert all(t.device.type == "meta" for t in got), name


@pytest.mark.parametrize("bad", [0.0, -0.5, -math.inf, math.inf, math.nan])
def test_step_sizes_must_be_positive_and_finite(bad):
    """dt is data: the CPU paths read it and refuse a step that is not positive and finite,
    naming the first bad entry (torch, NumPy, and dplr_setup's own check)."""
    A, B = -0.5 + 1j * torch.arange(3.0).expand(2, 3), torch.ones(2, 3, dtype=torch.complex64)
    A = A.to(torch.complex64)
    dt = torch.tensor([0.1, bad])
    with pytest.raises(ValueError, match=r"^dt: expected positive, finite step sizes, got dt\[1\] = "):
        ops.discretize(dt, A, B)
    with pytest.raises(ValueError, match=r"^dt: expected positive, finite step sizes, got dt\[1\] = "):
        ops.discretize(dt.numpy(), A.numpy(), B.numpy())
    with pytest.raises(ValueError, match=r"^dt: expected positive, finite step sizes, got dt\[1\] = "):
        ops.dplr_setup(dt, A, torch.ones(2, 1, 3, dtype=torch.complex64), B)
