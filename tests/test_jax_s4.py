"""Tests of ssmkit.jax.s4, the S4/S4D layer for JAX: the same function as the torch layer
(ssmkit.nn.S4) for the same parameters, in float64 and by the 2x rule in float32; gradients
in every parameter against jax.grad of the layer on the jnp reference primitives and
against torch autograd; scan, chunked scan and step against the convolution; jit; the
initialisation; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from accuracy import assert_close_2x
from conftest import untruncated_C_long_double

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from ssmkit.jax import s4  # noqa: E402
from ssmkit.nn import S4  # noqa: E402

H, D_STATE, L = 4, 8, 16
LAYERS = [("diag", False, None), ("diag", True, None), ("diag", False, "bilinear"), ("dplr", False, None),
          ("dplr", True, None)]  # fmt: skip
LAYER_IDS = [f"{m}{'-bidir' if b else ''}{'-' + d if d else ''}" for m, b, d in LAYERS]
BACKENDS = ["compiled", "reference"]


def torch_layer(mode, bidirectional, discretization, dtype=torch.float64, **kw):
    """A small torch layer with randomised output biases, in `dtype`, l_max = L for DPLR."""
    torch.manual_seed(0)
    layer = S4(H, D_STATE, mode=mode, bidirectional=bidirectional, discretization=discretization,
               l_max=L if mode == "dplr" else None, **kw)  # fmt: skip
    with torch.no_grad():
        layer.output_linear.bias.normal_(0, 0.5)
    return layer.to(dtype).eval()


def inputs(batch=2, length=L, dtype=np.float64, seed=1):
    return np.random.default_rng(seed).standard_normal((batch, length, H)).astype(dtype)


def converted(layer, backend):
    params, config = s4.from_torch(layer)
    return params, s4.S4Config(**{**config.__dict__, "backend": backend})


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layer_args", LAYERS, ids=LAYER_IDS)
def test_apply_equals_the_torch_layer_in_float64(layer_args, backend):
    layer = torch_layer(*layer_args)
    x = inputs()
    with torch.no_grad():
        want = layer(torch.from_numpy(x))[0].numpy()
    with jax.enable_x64(True):
        params, config = converted(layer, backend)
        got = np.asarray(s4.apply(params, jnp.asarray(x), config))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * np.abs(want).max())


@pytest.mark.parametrize("layer_args", LAYERS, ids=LAYER_IDS)
def test_apply_in_float32_within_2x_of_the_reference(layer_args):
    """float32 with ssmkit's kernels against the float64 torch layer (same parameters): within
    twice the error of the float32 torch layer on the reference primitives."""
    layer = torch_layer(*layer_args, dtype=torch.float32, backend="reference")
    x = inputs(dtype=np.float32)
    params, config = converted(layer, "compiled")
    got = torch.from_numpy(np.array(s4.apply(params, jnp.asarray(x), config)))
    with torch.no_grad():
        low = layer(torch.from_numpy(x))[0]
        truth = layer.double()(torch.from_numpy(x).double())[0]
    assert_close_2x("S4 apply", got, truth, low)


def _loss(params, x, weights, config):
    return jnp.sum(s4.apply(params, x, config) * weights)


@pytest.mark.parametrize("layer_args", LAYERS, ids=LAYER_IDS)
def test_parameter_gradients_equal_the_reference_layer_and_torch(layer_args):
    layer = torch_layer(*layer_args)
    x, weights = inputs(), inputs(seed=2)
    loss = (layer(torch.from_numpy(x))[0] * torch.from_numpy(weights)).sum()
    names = [n for n, _ in layer.named_parameters()]
    torch_grads = dict(zip(names, torch.autograd.grad(loss, list(layer.parameters()))))
    with jax.enable_x64(True):
        params, config = converted(layer, "compiled")
        grads = jax.grad(_loss)(params, jnp.asarray(x), jnp.asarray(weights), config)
        _, ref_config = converted(layer, "reference")
        ref_grads = jax.grad(_loss)(params, jnp.asarray(x), jnp.asarray(weights), ref_config)
    flat, ref_flat = dict(s4._flat(grads)), dict(s4._flat(ref_grads))
    assert sorted(flat) == sorted(names)
    for name in names:
        want = torch_grads[name].numpy()
        scale = np.abs(want).max()
        assert scale > 0, name
        np.testing.assert_allclose(np.asarray(flat[name]), np.asarray(ref_flat[name]), rtol=0, atol=1e-9 * scale,
                                   err_msg=f"{name} against the reference primitives")  # fmt: skip
        np.testing.assert_allclose(np.asarray(flat[name]), want, rtol=0, atol=1e-9 * scale,
                                   err_msg=f"{name} against torch autograd")  # fmt: skip


UNIDIRECTIONAL = [a for a in LAYERS if not a[1]]
UNI_IDS = [i for a, i in zip(LAYERS, LAYER_IDS) if not a[1]]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layer_args", UNIDIRECTIONAL, ids=UNI_IDS)
def test_scan_from_a_state_equals_the_torch_layer_and_chunks(layer_args, backend):
    layer = torch_layer(*layer_args)
    x = inputs(length=12)
    rng = np.random.default_rng(3)
    start = (rng.standard_normal((2, H, D_STATE // 2)) + 1j * rng.standard_normal((2, H, D_STATE // 2))) / 4
    with torch.no_grad():
        want_y, want_state = (t.numpy() for t in layer(torch.from_numpy(x), state=torch.from_numpy(start)))
    with jax.enable_x64(True):
        params, config = converted(layer, backend)
        y, end = s4.scan(params, jnp.asarray(x), jnp.asarray(start), config)
        np.testing.assert_allclose(np.asarray(y), want_y, rtol=0, atol=1e-10 * np.abs(want_y).max())
        np.testing.assert_allclose(np.asarray(end), want_state, rtol=0, atol=1e-10 * np.abs(want_state).max())
        # two chunks give the same as one; from zero, the same as the convolution
        y1, mid = s4.scan(params, jnp.asarray(x[:, :5]), jnp.asarray(start), config)
        y2, end2 = s4.scan(params, jnp.asarray(x[:, 5:]), mid, config)
        np.testing.assert_allclose(np.concatenate([y1, y2], 1), want_y, rtol=0, atol=1e-10 * np.abs(want_y).max())
        np.testing.assert_allclose(np.asarray(end2), want_state, rtol=0, atol=1e-10 * np.abs(want_state).max())
        zero = s4.default_state(config, 2, jnp.complex128)
        conv = s4.apply(params, jnp.asarray(x), config)
        np.testing.assert_allclose(np.asarray(s4.scan(params, jnp.asarray(x), zero, config)[0]), np.asarray(conv),
                                   rtol=0, atol=1e-10 * float(jnp.abs(conv).max()))  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layer_args", UNIDIRECTIONAL, ids=UNI_IDS)
def test_steps_equal_the_convolution(layer_args, backend):
    layer = torch_layer(*layer_args)
    x = inputs()
    with jax.enable_x64(True):
        params, config = converted(layer, backend)
        want = np.asarray(s4.apply(params, jnp.asarray(x), config))
        tensors = s4.step_tensors(params, config)
        state, ys = s4.default_state(config, 2, jnp.complex128), []
        for t in range(L):
            y, state = s4.step(tensors, params, jnp.asarray(x[:, t]), state, config)
            ys.append(y)
    np.testing.assert_allclose(np.stack(ys, 1), want, rtol=0, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("L_kernel", [7, 64, 2048])
def test_untruncated_C_long_double(L_kernel):
    """The step's C from C~ (the custom call ssmkit.jax.dplr_untruncated_C, and the dense
    definition of the reference primitives) against a long-double dense solve."""
    rng = np.random.default_rng(0)
    Hs, N, r = 3, 8, 2
    Lambda = -0.1 - rng.random((Hs, N)) + 10j * rng.standard_normal((Hs, N))
    P, C = (rng.standard_normal((*s, 2)) @ [1, 1j] / 2 for s in ((Hs, r, N), (Hs, N)))
    dt = np.exp(rng.random(Hs) * 4 - 5)
    truth = torch.from_numpy(untruncated_C_long_double(dt, Lambda, P, C, L_kernel))
    with jax.enable_x64(True):
        for backend in BACKENDS:
            got = s4.primitives(backend).untruncated_C(*map(jnp.asarray, (dt, Lambda, P, C)), L_kernel)
            assert_close_2x(f"untruncated C {backend}", torch.from_numpy(np.asarray(got)), truth)


@pytest.mark.parametrize("layer_args", LAYERS, ids=LAYER_IDS)
def test_jit_and_value_and_grad(layer_args):
    params, config = converted(torch_layer(*layer_args, dtype=torch.float32), "compiled")
    x, weights = jnp.asarray(inputs(dtype=np.float32)), jnp.asarray(inputs(dtype=np.float32, seed=2))
    eager = s4.apply(params, x, config)
    jitted = jax.jit(s4.apply, static_argnames="config")(params, x, config=config)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=0, atol=1e-5 * float(jnp.abs(eager).max()))
    value, grads = jax.jit(jax.value_and_grad(_loss), static_argnames="config")(params, x, weights, config=config)
    want = jax.grad(_loss)(params, x, weights, config)
    assert np.isclose(float(value), float(_loss(params, x, weights, config)), rtol=1e-5)
    for (name, g), (_, w) in zip(s4._flat(grads), s4._flat(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=0, atol=1e-5 * float(jnp.abs(w).max()),
                                   err_msg=name)  # fmt: skip


@pytest.mark.parametrize("mode", ["diag", "dplr"])
def test_init_matches_the_torch_layer_and_round_trips(mode):
    config = s4.S4Config(H, D_STATE, mode=mode, l_max=L if mode == "dplr" else None)
    params = s4.init(jax.random.PRNGKey(0), config)
    layer = S4(H, D_STATE, mode=mode, l_max=L if mode == "dplr" else None)
    deterministic = ["Lambda_real_log", "Lambda_imag", "B"] + (["P"] if mode == "dplr" else [])
    flat = dict(s4._flat(params))
    for name, p in layer.named_parameters():
        assert flat[name].shape == tuple(p.shape) and flat[name].dtype == jnp.float32, name
        if name in deterministic:
            np.testing.assert_allclose(np.asarray(flat[name]), p.detach().numpy(), rtol=1e-6, err_msg=name)
    dt = np.exp(np.asarray(params["log_dt"]))
    assert np.all((dt >= config.dt_min * (1 - 1e-6)) & (dt <= config.dt_max * (1 + 1e-6)))
    s4.to_torch(params, config, layer)
    back, back_config = s4.from_torch(layer)
    assert back_config == config
    back = dict(s4._flat(back))
    assert sorted(back) == sorted(flat)
    for name, a in flat.items():
        np.testing.assert_array_equal(np.asarray(a), np.asarray(back[name]), err_msg=name)


def test_bad_options_and_input_name_the_argument():
    with pytest.raises(ValueError, match="mode: expected"):
        s4.S4Config(H, mode="full")
    with pytest.raises(ValueError, match="l_max: expected a positive integer"):
        s4.S4Config(H, mode="dplr")
    with pytest.raises(ValueError, match="backend: expected"):
        s4.S4Config(H, mode="diag", backend="torch")
    config = s4.S4Config(H, D_STATE, mode="dplr", l_max=8)
    params = s4.init(jax.random.PRNGKey(0), config)
    with pytest.raises(ValueError, match=r"x: expected shape \(batch, length, d_model\) with d_model = 4"):
        s4.apply(params, jnp.zeros((2, 8, 3)), config)
    with pytest.raises(TypeError, match="x: expected float32"):
        s4.apply(params, jnp.zeros((2, 8, H), jnp.int32), config)
    with pytest.raises(ValueError, match="x: expected a length of at most l_max = 8"):
        s4.apply(params, jnp.zeros((2, 9, H)), config)
    with pytest.raises(ValueError, match=r"state: expected a complex64 array of shape \(2, 4, 4\)"):
        s4.scan(params, jnp.zeros((2, 8, H)), jnp.zeros((3, H, 4), jnp.complex64), config)
