"""NumPy's BLAS on one thread, for the library's small linear algebra.

At the sizes ssmkit gives NumPy (HiPPO's eigh, the data-kernel eigensolvers) BLAS
threads cost more than they give: on a loaded 2-core machine one BLAS thread cut eigsh's
CPU time 16x, and a 200 x 200 eigh from 0.8 s to ~5 ms. And after a threaded call
OpenBLAS's workers spin on the other cores for about 0.1 s, slowing whatever runs there
next: on a 2-core machine, the first DPLR conversions after building a SaShiMi model ran
4x slower.
"""

from threadpoolctl import threadpool_limits


def one_blas_thread() -> threadpool_limits:
    """A context in which BLAS (OpenBLAS, MKL, ...) runs on one thread."""
    return threadpool_limits(1, user_api="blas")
