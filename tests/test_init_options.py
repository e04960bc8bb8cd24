"""The initialisation options that follow the state-spaces/s4 reference: b_clip (Im B of
HiPPO-LegS clipped) and c_init="c" (the random draw is C, and C~ = C (I - dA^L))."""

import pytest
import torch

from ssmkit import hippo
from ssmkit.nn import S4
from ssmkit.nn.backend import primitives
from ssmkit.ops import reference


def test_b_clip_clips_only_the_imaginary_part_beyond_the_bound():
    exact = torch.from_numpy(hippo.legs_nplr(64)[2])
    clipped = torch.from_numpy(hippo.legs_nplr(64, b_clip=2.0)[2])
    assert torch.equal(clipped.real, exact.real)
    assert clipped.imag.abs().max() <= 2.0
    inside = exact.imag.abs() <= 2.0
    assert torch.equal(clipped.imag[inside], exact.imag[inside])
    assert torch.equal(clipped.imag[~inside], 2.0 * exact.imag[~inside].sign())
    assert int((~inside).sum()) == 11  # of 32: the count the reference's clip changes at d_state 64
    # the diagonal (S4D) LegS init clips the same B; the layer stores it
    assert torch.equal(torch.from_numpy(hippo.diag_init("legs", 64, b_clip=2.0)[1]), clipped)
    torch.manual_seed(0)
    layer = S4(3, 64, mode="diag", b_clip=2.0)
    assert torch.equal(torch.view_as_complex(layer.B.double())[1], clipped.to(torch.complex64).to(torch.complex128))


def dense_kernel(layer, C_full, L):
    """K_l = C dA^l dB from the dense bilinear matrices of the full 2N-state system."""
    dt, Lambda, P, B, _ = (t.detach().to(torch.complex128 if t.is_complex() else torch.float64) for t in layer._ssm())
    dA, dB = reference.dplr_dense(dt, Lambda, P, B)
    out, state = [], dB
    for _ in range(L):
        out.append(torch.einsum("chn,hn->ch", C_full, state.squeeze(-1) if state.dim() == 3 else state))
        state = torch.einsum("hij,hj->hi", dA, state.squeeze(-1) if state.dim() == 3 else state)
    return torch.stack(out, -1).real


@pytest.mark.parametrize("l_max", [16, None])
def test_c_init_c_draws_C_and_makes_C_tilde_for_the_kernel_length(l_max):
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(1)
        tilde = S4(2, 8, mode="dplr", l_max=l_max)
        torch.manual_seed(1)
        layer = S4(2, 8, mode="dplr", l_max=l_max, c_init="c")
        drawn = torch.view_as_complex(tilde.C.detach())  # the same draw: C~ for "tilde", C for "c"
        if l_max is None:
            assert torch.equal(layer.C, tilde.C)  # nothing fixed yet: C~ is made on the first forward
            layer(torch.randn(1, 16, 2))
        assert layer.l_kernel == 16
        # the kernel is that of the SSM with C = the draw, computed densely
        C_full = torch.cat([drawn, drawn.conj()], -1)
        torch.testing.assert_close(layer.kernel(16), dense_kernel(layer, C_full, 16), rtol=1e-9, atol=1e-10)
        # ... and not that of C~ = the draw (the default)
        assert not torch.allclose(tilde.kernel(16), layer.kernel(16), atol=1e-3)
        # the recurrent step recovers C itself: the draw
        torch.testing.assert_close(layer.step_tensors(primitives("reference", "cpu"))[1].to(torch.complex128), drawn[0], rtol=1e-9, atol=1e-10)
    finally:
        torch.set_default_dtype(torch.float32)


def test_init_option_errors_name_the_argument():
    with pytest.raises(ValueError, match='c_init: expected "tilde" \\(or "c" with mode="dplr"\\), got \'c\' with mode=\'diag\''):
        S4(2, 8, mode="diag", c_init="c")
    with pytest.raises(ValueError, match="c_init: expected"):
        S4(2, 8, c_init="C~")
    with pytest.raises(ValueError, match='b_clip: clips the HiPPO-LegS B of init="legs", got init=\'lin\''):
        S4(2, 8, mode="diag", init="lin", b_clip=2.0)
    with pytest.raises(ValueError, match="b_clip: expected a positive bound or None, got -1"):
        hippo.legs_nplr(8, b_clip=-1)


def test_hippo_linear_algebra_runs_on_one_blas_thread(monkeypatch):
    """HiPPO's eigh runs inside ssmkit._blas.one_blas_thread (where BLAS, limited to one
    thread, leaves no spinning workers behind to slow the kernels that follow), even when
    BLAS is otherwise allowed more threads (so the test means something on one core too)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = []

    def eigh(*a, **k):
        seen.append([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])
        return real_eigh(*a, **k)

    real_eigh = hippo.np.linalg.eigh
    monkeypatch.setattr(hippo.np.linalg, "eigh", eigh)
    with threadpool_limits(2, user_api="blas"):
        assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {2}
        hippo.legs_nplr(16)
    assert len(seen) == 1 and seen[0] and set(seen[0]) == {1}
