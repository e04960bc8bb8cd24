"""The compiled step engine of SaShiMi generation (models/sashimi_engine.py, csrc/cpu/engine/):
its logits are SaShiMi.step's and the convolution's (2x rule against float64), its draws
are a plain float64 inverse-CDF reference's, it shares the state with prime and step,
and it rejects bad programs and inputs."""

import math

import pytest
import torch
import torch.nn.functional as F

import ssmkit.engine
from accuracy import assert_close_2x
from ssmkit import _C
from ssmkit.engine import eps_bits as _eps_bits, huge_page_copies as _huge_page_copies, pack_linear
from conftest import run_steps, small, tokens, twins, with_truth
from ssmkit.models import SaShiMi
from ssmkit.models.generate import sample_logits
from ssmkit.models.sashimi import START
from ssmkit.models.sashimi_engine import Engine, Recorder, supported
from ssmkit.nn import S4

OPS = _C.engine_ops

pytestmark = pytest.mark.usefixtures("one_thread")


def engine_logits(m, x, state=None):
    """Teacher-forced engine logits (batch, L, classes) for tokens x (batch, L), and the state."""
    state = state or m.default_state(x.shape[0])
    _, logits = Engine(m, state).run(x.shape[1], tokens_in=x.T.contiguous(), logits=True)
    return logits.transpose(0, 1), state


CONFIGS = [
    dict(mode="dplr", unet=True, ff=1, pool=(2, 3)),
    dict(mode="dplr", unet=False, ff=0, pool=(2, 3)),
    dict(mode="diag", unet=True, ff=0, pool=(4,)),
    dict(mode="diag", unet=False, ff=2, pool=(4,)),
    dict(mode="dplr", unet=True, ff=2, pool=(4,), n_layers=2),
    dict(mode="diag", unet=True, ff=1, pool=(2, 3), d_model=12, d_state=6),  # widths off the SIMD width
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_engine_equals_step(config):
    """Teacher forced over 5 cycles of the pooling phases: the engine's logits are the
    module step's, both held to float64 by the 2x rule. Batch 7 covers the linear
    kernel's 4-, 2- and 1-row paths."""
    m = small(config["mode"], l_max=64, **{k: v for k, v in config.items() if k != "mode"})
    assert supported(m)
    L = 5 * math.prod(config["pool"])
    x = tokens(7, L)
    out, _ = engine_logits(m, x)
    steps, _ = run_steps(m, x)
    _, m64 = twins(m)
    truth, _ = run_steps(m64, x)
    assert_close_2x("engine", out, truth, steps)
    assert (out - steps).abs().max() <= 1e-5 * steps.abs().max()


LAYOUTS = [
    dict(mode=mode, unet=unet, pool=pool, ff=ff)
    for mode in ("dplr", "diag")
    for unet in (True, False)
    for pool, ff in (((), 1), ((4,), 0), ((4, 4), 2))
]


@pytest.mark.parametrize("config", LAYOUTS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_engine_equals_step_on_every_layout(config):
    """U-Net or not, no pooling, one or two poolings, with and without feed-forward
    blocks, from a primed state (arrays that are views, made contiguous by the engine):
    over two cycles of the pooling phases and a step, the engine's logits are the module
    step's, both held to float64 by the 2x rule."""
    m = small(config["mode"], l_max=64, **{k: v for k, v in config.items() if k != "mode"})
    _, m64 = twins(m)
    x = tokens(3, 6 + 2 * math.prod(config["pool"]) + 1)
    with torch.no_grad():
        primed = [model.prime(x[:, :6])[1] for model in (m, m, m64)]
    out, state = engine_logits(m, x[:, 6:], primed[0])
    steps, stepped = run_steps(m, x[:, 6:], primed[1])
    truth, _ = run_steps(m64, x[:, 6:], primed[2])
    assert state.t == stepped.t == x.shape[1]
    assert_close_2x("engine", out, truth, steps)
    assert (out - steps).abs().max() <= 1e-5 * steps.abs().max()


def instructions(code, begin, end):
    """(op name, operand words) of each instruction in code[begin:end]."""
    names = {v: k for k, v in OPS.items()}
    out = []
    while begin < end:
        n = _C.engine_op_lengths[code[begin]]
        out.append((names[code[begin]], code[begin + 1 : begin + n]))
        begin += n
    return out


@pytest.mark.parametrize("pool", [(), (2,), (2, 3)])
def test_the_centre_section_is_marked_in_the_full_cycle_step(pool):
    """Only the program of the step where every stage steps has a section (none without
    pooling): it copies the centre's input first and ends with the up-pooling linear that
    writes upcoming[P - 1], after the up path's first read of it."""
    m = small("diag", pool=pool, n_layers=2)
    state = m.default_state(2)
    rec = Recorder(2)
    cycle = math.prod(pool)
    for t in range(1, cycle + 1):
        begin = len(rec.p.code)
        _, span = rec.program(m, state, t)
        if not pool or t < cycle:
            assert span is None
            continue
        upcoming = rec.rows(state.upcoming[-1]).view
        before, section = instructions(rec.p.code, begin, span[0]), instructions(rec.p.code, *span)
        assert before[-1][0] == "add" and before[-1][1][0] == rec.rows(state.upcoming[-1], (t - 1) % pool[-1]).view
        assert section[0][0] == "copy" and section[-1][0] == "linear" and section[-1][1][1] == upcoming
        assert sum(op == "diag_step" for op, _ in section) == sum(isinstance(block.layer, S4) for block in m.center)
    assert (span is None) == (not pool)


@pytest.mark.parametrize("mode", ["dplr", "diag"])
def test_engine_equals_convolution_4096(mode):
    """The existing teacher-forcing test, on the engine: 4096 samples against the float64
    convolution, the float32 reference-backend steps as the yardstick."""
    L = 4096
    m, ref, m64, x, truth = with_truth(mode, 2, L)
    out, _ = engine_logits(m, x)
    steps_ref, _ = run_steps(ref, x)
    assert_close_2x(f"{mode} engine", out, truth, steps_ref)


@pytest.mark.parametrize("split", [1, 6, 11])
def test_prime_engine_step_share_the_state(split):
    """prime -> step -> engine -> step -> the same engine: one state dict, updated in
    place, read by the next; held to float64 with prime -> step (the per-token API all
    the way) as the yardstick."""
    L = 45
    m, _, m64, x, truth = with_truth("dplr", 3, L, pool=(2, 3))
    with torch.no_grad():
        _, state = m.prime(x[:, :split])
        _, state_ref = m.prime(x[:, :split])
    ref, _ = run_steps(m, x[:, split:], state_ref)
    engine = Engine(m, state)
    parts, t = [], split
    for n, on_engine in ((4, False), (13, True), (5, False), (7, True)):
        chunk = x[:, t : t + n]
        if on_engine:
            parts.append(engine.run(n, tokens_in=chunk.T.contiguous(), logits=True)[1].transpose(0, 1))
        else:
            parts.append(run_steps(m, chunk, state)[0])
        t += n
        assert state.t == t
    parts.append(run_steps(m, x[:, t:], state)[0])
    assert_close_2x("prime, step, engine, step, engine, step", torch.cat(parts, 1), truth[:, split:], ref)


def python_draw(logits, temperature, top_p, u):
    """The float64 reference of a draw, written out: softmax of logits / temperature,
    the top_p nucleus (most likely first, lower index first on ties; a token stays while
    the mass before it is below top_p), then the first token whose running mass over
    the kept ones, in index order, exceeds u times their total."""
    z = [float(v) / temperature for v in logits]
    m = max(z)
    e = [math.exp(v - m) for v in z]
    total = 0.0
    for v in e:
        total += v
    p = [v / total for v in e]
    if top_p < 1:
        order = sorted(range(len(p)), key=lambda i: (-p[i], i))
        before, j = 0.0, 0
        while j < len(p) and before < top_p:
            before += p[order[j]]
            j += 1
        for i in order[j:]:
            p[i] = 0.0
    kept = 0.0
    for v in p:
        kept += v
    target, acc, last = u * kept, 0.0, 0
    for i, v in enumerate(p):
        if v == 0:
            continue
        acc += v
        last = i
        if acc > target:
            return i
    return last


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("top_p", [1.0, 0.9, 0.5, 1e-9])
def test_draws_equal_the_float64_reference(temperature, top_p):
    rows, n = 300, 64
    logits = torch.randn(rows, n) * 3
    logits[::7, 5:9] = logits[::7, 5:6]  # ties
    logits[::11] = 0.0  # uniform rows
    u = torch.rand(rows, dtype=torch.float64)
    u[:3] = torch.tensor([0.0, 1 - 2**-53, 0.5])
    out = torch.empty(rows, dtype=torch.int64)
    _C.sample_tokens(logits, u, temperature, top_p, out)
    expected = [python_draw(logits[r].tolist(), temperature, top_p, u[r].item()) for r in range(rows)]
    assert out.tolist() == expected
    # generate's step path (torch, float64) draws the same tokens
    assert sample_logits(logits, temperature, top_p, uniforms=u).tolist() == expected
    if top_p == 1e-9:  # greedy
        assert torch.equal(out, logits.argmax(-1))


def test_engine_draws_are_its_logits_draws():
    """The tokens the engine samples inside its loop are the draws of the logits it made."""
    m = small("diag", l_max=64, pool=(2, 3))
    x = tokens(3, 24)
    u = torch.rand(24, 3, dtype=torch.float64)
    state = m.default_state(3)
    samples, logits = Engine(m, state).run(24, tokens_in=x.T.contiguous(), uniforms=u, temperature=0.7, top_p=0.8, logits=True)
    draws = torch.empty(24 * 3, dtype=torch.int64)
    _C.sample_tokens(logits.reshape(-1, 256), u.reshape(-1), 0.7, 0.8, draws)
    assert torch.equal(samples.reshape(-1), draws)


def test_generate_on_the_engine_is_reproducible_and_equals_step():
    m = small("dplr", l_max=128)
    prefix = tokens(1, 21)[0]
    g = [torch.Generator().manual_seed(4) for _ in range(3)]
    a = m.generate(2, 50, prefix=prefix, generator=g[0], top_p=0.95)
    b = m.generate(2, 50, prefix=prefix, generator=g[1], top_p=0.95)
    c = m.generate(2, 50, prefix=prefix, generator=g[2], top_p=0.95, fast=False)  # SaShiMi.step
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, m.generate(2, 50, prefix=prefix, generator=torch.Generator().manual_seed(5), top_p=0.95))


def test_generate_chunks_and_progress():
    m = small("diag", l_max=600)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = m.generate(2, 600, generator=g1, progress=True)  # three engine chunks
    b = m.generate(2, 600, generator=g2, fast=False)
    assert a.shape == (2, 600) and torch.equal(a, b)


def test_supported():
    assert supported(small("diag"))
    assert not supported(small("diag").double())
    ref, _ = twins(small("dplr"))
    assert not supported(ref)  # reference-backend S4 layers
    relu = SaShiMi(**(dict(d_model=8, n_layers=1, pool=(2,), ff=0, d_state=8)))
    relu.down[0][0].layer.activation = torch.nn.ReLU()
    assert not supported(relu)


def test_huge_page_copies():
    """Equal copies in one mapping, each on its own cache line; the originals are not
    touched; without MADV_HUGEPAGE (not Linux) the tensors themselves."""
    tensors = [torch.randn(3, 5), torch.randn(17), torch.randn(64)]
    copies = _huge_page_copies(tensors)
    for t, c in zip(tensors, copies):
        assert c.shape == t.shape and torch.equal(c, t) and c.data_ptr() != t.data_ptr()
        assert c.data_ptr() % 64 == 0
    copies[0].zero_()
    assert tensors[0].abs().sum() > 0
    spans = sorted((c.data_ptr(), c.data_ptr() + 4 * c.numel()) for c in copies)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # no overlap
    assert _huge_page_copies([]) == []


def test_huge_page_copies_fallback(monkeypatch):
    monkeypatch.delattr(ssmkit.engine.mmap, "MADV_HUGEPAGE", raising=False)
    tensors = [torch.randn(4)]
    assert _huge_page_copies(tensors)[0] is tensors[0]


def test_engine_reads_its_own_copy_of_the_parameters():
    """The engine's parameters are copies made at build (on huge pages): changing the
    model afterwards does not change a built engine's logits until it is built again."""
    m = small("dplr", l_max=64, pool=(2,), n_layers=1)
    x = tokens(2, 4)
    before, _ = engine_logits(m, x)
    engine = Engine(m, m.default_state(2))
    with torch.no_grad():
        m.decoder.bias += 1
    _, same = engine.run(4, tokens_in=x.T.contiguous(), logits=True)
    after, _ = engine_logits(m, x)
    assert torch.equal(same.transpose(0, 1), before)
    assert torch.allclose(after, before + 1, atol=1e-5)


def one_op_engine(op, operands, width, batch=1, extra=()):
    """An engine of one instruction on (batch, width) arrays x (view 0), y (view 1);
    extra arrays get views 2, 3, ...; logits: a dummy (batch, 1) array."""
    x, y, dummy = torch.zeros(batch, 2 * width), torch.zeros(batch, width), torch.zeros(batch, 1)
    buffers = [x, y, dummy, *extra]
    views = [[0, 0, 2 * width], [1, 0, width], [2, 0, 1]] + [[3 + i, 0, 0] for i in range(len(extra))]
    code = [_C.engine_ops[op], *operands]
    return _C.StepEngine(buffers, code, [0, len(code)], views, batch, 2, 1), x, y


def run_once(engine, batch=1):
    return engine.run(0, 1, torch.zeros(batch, dtype=torch.int64), None, None, None, None)


def test_gelu_and_glu_accuracy():
    """The vectorised GELU (erf, erfc and exp polynomials) and GLU against float64, held
    to twice torch's float32 error (the 2x rule, relative to the largest value), and
    relative error in the negative tail, where GELU's own value is tiny."""
    n = 1 << 16
    xs = torch.cat([torch.linspace(-12, 12, n - 8), torch.tensor([0.0, -0.0, 1e-30, -1e-30, 40, -40, 1e4, -1e4])])
    engine, x, _ = one_op_engine("gelu", [0, n], n // 2)  # x holds n floats: the (1, 2 * n/2) view 0
    x[0] = xs
    run_once(engine)
    x64 = xs.double()
    truth = x64 / 2 * torch.special.erfc(-x64 / math.sqrt(2))  # (torch's float64 GELU cancels below -8)
    assert_close_2x("gelu", x[0], truth, F.gelu(xs))
    tail = (xs < -1) & (truth.abs() > 1e-35)  # normal floats
    rel = ((x[0].double() - truth).abs() / truth.abs())[tail].max().item()
    assert rel < 1e-6, rel  # measured 7.3e-7 (1 - erf(z) just below z = 1); torch float32: 1 by x = -5.5
    assert torch.isnan(run_nan("gelu"))

    engine, x, y = one_op_engine("glu", [0, 1, n // 2], n // 2)
    x[0] = torch.cat([torch.randn(n // 2), xs[torch.randperm(n)[: n // 2]]])
    run_once(engine)
    assert_close_2x("glu", y[0], F.glu(x[0].double(), -1), F.glu(x[0], -1))


def run_nan(op):
    engine, x, _ = one_op_engine(op, [0, 8], 4)
    x[0] = float("nan")
    run_once(engine)
    return x[0, 0]


def test_engine_kernels_against_float64():
    """Layer norm and the linear kernel (all row paths, widths off the SIMD width, with
    and without bias) on random data, 2x rule against float64."""
    for n_in, n_out, batch in [(64, 128, 7), (13, 37, 5), (256, 512, 2), (5, 3, 1)]:
        lin = torch.nn.Linear(n_in, n_out, bias=n_out != 37)
        packed = pack_linear(lin.weight)
        x, y = torch.randn(batch, n_in), torch.zeros(batch, n_out)
        bias = lin.bias.detach() if lin.bias is not None else torch.zeros(1)
        views = [[0, 0, n_in], [1, 0, n_out], [2, 0, 0], [3, 0, 0], [4, 0, 1]]
        code = [_C.engine_ops["linear"], 0, 1, 2, 3 if lin.bias is not None else -1, n_in, n_out]
        engine = _C.StepEngine([x, y, packed, bias, torch.zeros(batch, 1)], code, [0, len(code)], views, batch, 4, 1)
        run_once(engine, batch)
        with torch.no_grad():
            assert_close_2x(f"linear {n_in}x{n_out}", y, lin.double()(x.double()), lin.float()(x))
    norm = torch.nn.LayerNorm(37)
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
    x, y = torch.randn(3, 37) * 5 + 3, torch.zeros(3, 37)
    code = [_C.engine_ops["layer_norm"], 0, 1, 2, 3, 37, _eps_bits(norm.eps)]
    views = [[0, 0, 37], [1, 0, 37], [2, 0, 0], [3, 0, 0], [4, 0, 1]]
    engine = _C.StepEngine([x, y, norm.weight.detach(), norm.bias.detach(), torch.zeros(3, 1)], code, [0, len(code)], views, 3, 4, 1)
    with torch.no_grad():
        ref = norm(x)
        run_once(engine, 3)
        assert_close_2x("layer norm", y, norm.double()(x.double()), ref)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_norm_linear_is_layer_norm_then_linear(n_threads, threads):
    """The fused instruction against float64 (2x rule), and bit for bit the layer norm
    and linear instructions it stands for, in row mode (batch 7: the 4-, 2- and 1-row
    paths) and split over threads (batch 1)."""
    for n_in, n_out, batch, bias in [(64, 128, 7, True), (37, 13, 5, False), (256, 96, 1, True)]:
        norm, lin = torch.nn.LayerNorm(n_in), torch.nn.Linear(n_in, n_out, bias=bias)
        with torch.no_grad():
            norm.weight.normal_(), norm.bias.normal_()
        x = torch.randn(batch, n_in) * 3 + 1
        fused, apart, u = torch.zeros(batch, n_out), torch.zeros(batch, n_out), torch.zeros(batch, n_in)
        b = lin.bias.detach() if bias else torch.zeros(1)
        buffers = [x, fused, pack_linear(lin.weight), b, norm.weight.detach(), norm.bias.detach(), torch.zeros(batch, 1), u, apart]
        views = [[0, 0, n_in], [1, 0, n_out], [2, 0, 0], [3, 0, 0], [4, 0, 0], [5, 0, 0], [6, 0, 1], [7, 0, n_in], [8, 0, n_out]]
        eps, bias_view = _eps_bits(norm.eps), 3 if bias else -1
        code = [OPS["norm_linear"], 0, 1, 2, bias_view, n_in, n_out, 4, 5, eps]
        code += [OPS["layer_norm"], 0, 7, 4, 5, n_in, eps, OPS["linear"], 7, 8, 2, bias_view, n_in, n_out]
        engine = _C.StepEngine(buffers, code, [0, len(code)], views, batch, 6, 1)
        threads(n_threads)
        run_once(engine, batch)
        assert torch.equal(fused, apart)
        with torch.no_grad():
            assert_close_2x(f"norm_linear {n_in}x{n_out}", fused, lin.double()(norm.double()(x.double())), lin.float()(norm.float()(x)))
    with pytest.raises(ValueError, match="do not fit"):  # the norm's weight shorter than n_in
        _C.StepEngine(buffers[:4] + [torch.zeros(3)] + buffers[5:], code[:10], [0, 10], views, batch, 6, 1)


def test_bad_programs_and_inputs():
    x = torch.zeros(2, 8)
    gelu = _C.engine_ops["gelu"]
    with pytest.raises(ValueError, match="do not fit"):  # rows past the buffer
        _C.StepEngine([x], [gelu, 0, 9], [0, 3], [[0, 0, 8]], 2, 0, 1)
    with pytest.raises(ValueError, match="do not fit"):  # the second row past the end
        _C.StepEngine([x], [gelu, 0, 8], [0, 3], [[0, 8, 8]], 2, 0, 1)
    with pytest.raises(ValueError, match="unknown opcode"):
        _C.StepEngine([x], [99, 0, 8], [0, 3], [[0, 0, 8]], 2, 0, 1)
    with pytest.raises(ValueError, match="truncated"):
        _C.StepEngine([x], [gelu, 0], [0, 2], [[0, 0, 8]], 2, 0, 1)
    with pytest.raises(ValueError, match="view index"):
        _C.StepEngine([x], [gelu, 3, 8], [0, 3], [[0, 0, 8]], 2, 0, 1)
    with pytest.raises(ValueError, match="program_start"):
        _C.StepEngine([x], [gelu, 0, 8], [0, 2], [[0, 0, 8]], 2, 0, 1)
    with pytest.raises(TypeError, match=r"buffers\[0\]: expected float32, got float64"):
        _C.StepEngine([x.double()], [gelu, 0, 8], [0, 3], [[0, 0, 8]], 2, 0, 1)
    with pytest.raises(ValueError, match="different buffers"):
        _C.StepEngine([x], [_C.engine_ops["glu"], 0, 0, 4], [0, 4], [[0, 0, 8]], 2, 0, 1)
    m = small("diag")
    engine = Engine(m, m.default_state(2))
    with pytest.raises(ValueError, match=r"token: expected token ids in \[0, 256\), got 256"):
        engine.run(3, token=torch.tensor([0, 256]))
    with pytest.raises(ValueError, match=r"tokens_in: expected shape \(steps, batch\)"):
        engine.run(3, tokens_in=torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="uniforms: expected float64"):
        engine.run(3, uniforms=torch.rand(3, 2))
    with pytest.raises(ValueError, match="temperature"):
        engine.run(3, uniforms=torch.rand(3, 2, dtype=torch.float64), temperature=0.0)
    with pytest.raises(ValueError, match="logits: expected a contiguous CPU float32"):
        _C.sample_tokens(torch.zeros(2, 4, dtype=torch.float64), torch.rand(2, dtype=torch.float64), 1.0, 1.0, torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="not finite"):
        _C.sample_tokens(torch.tensor([[0.0, float("nan")]]), torch.rand(1, dtype=torch.float64), 1.0, 1.0, torch.zeros(1, dtype=torch.int64))
    assert engine.state.t == 0  # nothing ran


def test_non_finite_logits_stop_generation():
    m = small("diag", l_max=64)
    with torch.no_grad():
        m.decoder.bias[3] = float("nan")
    with pytest.raises(FloatingPointError, match="logits at step 0 are not finite"):
        m.generate(2, 10)


def test_rows_do_not_depend_on_the_batch_or_the_threads():
    """Each stream's logits are the same bits alone, in a batch, on one or two threads
    (threads split the streams; every kernel sums a row in one fixed order)."""
    import ssmkit

    m = small("dplr", l_max=64, pool=(2, 3), d_model=12, d_state=6)
    x = tokens(5, 18)
    alone, _ = engine_logits(m, x[2:3])
    threads = ssmkit.get_num_threads()
    try:
        ssmkit.set_num_threads(1)
        one, _ = engine_logits(m, x)
        ssmkit.set_num_threads(2)
        two, _ = engine_logits(m, x)
    finally:
        ssmkit.set_num_threads(threads)
    assert torch.equal(one, two) and torch.equal(one[2:3], alone)


@pytest.fixture
def threads():
    """ssmkit.set_num_threads, restored after the test."""
    import ssmkit

    saved = ssmkit.get_num_threads()
    yield ssmkit.set_num_threads
    ssmkit.set_num_threads(saved)


SPLIT_CONFIGS = [
    dict(mode="dplr", d_model=32, pool=(2, 2), ff=2),  # widths 32, 64, 128: linears feeding GLUs split by halves
    dict(mode="diag", d_model=36, pool=(2, 2), ff=1, unet=False),  # 36, 72, 144: not multiples of 32
    dict(mode="dplr", d_model=50, pool=(2,), ff=2, d_state=6),  # 50, 100: not multiples of 8
    dict(mode="diag", d_model=12, pool=(2, 3)),  # narrower than one split unit: one thread works
]


@pytest.mark.parametrize("config", SPLIT_CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_one_stream_split_over_threads_is_the_same_bits(config, threads):
    """Batch 1 on 2 or 3 threads splits each instruction by columns (split mode): every
    output element is computed as on one thread, so the logits, the draws and the state
    are the same bits, teacher forced and sampled."""
    m = small(config["mode"], l_max=64, **{k: v for k, v in config.items() if k != "mode"})
    x = tokens(1, 3 * math.prod(config["pool"]) + 1)
    u = torch.rand(x.shape[1], 1, dtype=torch.float64)
    runs = []
    for n in (1, 2, 3):
        threads(n)
        forced, state = engine_logits(m, x)
        start = torch.tensor([START])
        samples, sampled = Engine(m, m.default_state(1)).run(x.shape[1], token=start, uniforms=u, top_p=0.9, logits=True)
        runs.append((forced, samples, sampled, state.down[0][0].clone()))
    for other in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], other))


def test_split_mode_steps_through_the_pooling_phases_and_chunks(threads):
    """Chunks of a few steps each start at another pooling phase; on two threads
    they give the one-thread logits, and a non-finite logit still stops the run."""
    m = small("dplr", l_max=64, d_model=32, pool=(2, 2))
    x = tokens(1, 13)
    threads(1)
    whole, _ = engine_logits(m, x)
    threads(2)
    state = m.default_state(1)
    engine = Engine(m, state)
    parts = [engine.run(k - j, tokens_in=x[:, j:k].T.contiguous(), logits=True)[1] for j, k in ((0, 5), (5, 6), (6, 13))]
    assert torch.equal(torch.cat(parts).transpose(0, 1), whole)
    with torch.no_grad():
        m.decoder.bias[3] = float("nan")
    with pytest.raises(FloatingPointError, match="logits at step 0 are not finite"):
        m.generate(1, 10)


@pytest.mark.parametrize("n_threads", [2, 3])
def test_centre_section_on_its_own_thread_gives_the_one_thread_bits(n_threads, threads):
    """Split mode runs the centre stage and its up-pooling (the program's section) on
    thread 1 while thread 0 goes on alone until something needs the result. Chunks of
    1-4 steps end and start at every point of that window: the logits and every state
    array are the one-thread bits after each chunk."""
    m = small("dplr", l_max=64, d_model=32, pool=(2, 2), ff=2)
    chunks = [1, 2, 3, 1, 4, 2, 1, 1, 3, 4, 2]
    x = tokens(1, sum(chunks))
    runs = []
    for n in (1, n_threads):
        threads(n)
        state = m.default_state(1)
        engine = Engine(m, state)
        logits, states, j = [], [], 0
        for size in chunks:
            logits.append(engine.run(size, tokens_in=x[:, j : j + size].T.contiguous(), logits=True)[1])
            states.append([s.clone() for s in state.arrays()])
            j += size
        runs.append((torch.cat(logits), states))
    assert torch.equal(runs[0][0], runs[1][0])
    for one, split in zip(runs[0][1], runs[1][1]):
        assert all(torch.equal(a, b) for a, b in zip(one, split))


def test_non_finite_logits_while_the_section_runs(threads):
    """Teacher forcing a token whose embedding is NaN at each step of a cycle: the run
    stops there (thread 0 may be running alone then) on one and on two threads, with
    the same state."""
    m = small("dplr", l_max=64, d_model=32, pool=(2, 2))
    with torch.no_grad():
        m.encoder.weight[200] = float("nan")
    for j in range(6):
        x = torch.full((1, 8), 5, dtype=torch.int64)
        x[0, j] = 200
        states = []
        for n in (1, 2):
            threads(n)
            state = m.default_state(1)
            with pytest.raises(FloatingPointError, match=f"logits at step {j} are not finite"):
                Engine(m, state).run(8, tokens_in=x.T.contiguous(), uniforms=torch.rand(8, 1, dtype=torch.float64))
            states.append([s.numpy().tobytes() for s in state.arrays()])
        assert states[0] == states[1]  # bytes: NaN != NaN


def test_bad_sections():
    x = torch.zeros(2, 8)
    gelu = _C.engine_ops["gelu"]
    code = [gelu, 0, 8, gelu, 0, 8]
    _C.StepEngine([x], code, [0, 6], [[0, 0, 8]], 2, 0, 1, [3, 6])  # the second instruction
    for bad in ([0, 4], [1, 3], [3, 3], [0, 7], [0]):
        with pytest.raises(ValueError, match="sections"):
            _C.StepEngine([x], code, [0, 6], [[0, 0, 8]], 2, 0, 1, bad)


def test_split_mode_in_place_layer_norm_runs_on_one_thread(threads):
    """A layer norm in place reads all columns and writes them: no split of it can
    match one thread, so the run falls back to one thread (the same bits)."""
    width = 80
    w, b = torch.randn(width), torch.randn(width)
    eps = _eps_bits(1e-5)
    x0 = torch.randn(1, 2 * width)
    out = []
    for n in (1, 2):
        threads(n)
        engine, x, _ = one_op_engine("layer_norm", [0, 0, 3, 4, width, eps], width, extra=(w, b))
        x.copy_(x0)
        run_once(engine)
        out.append(x.clone())
    assert torch.equal(out[0], out[1])
    assert not torch.equal(out[0], x0)
    torch.testing.assert_close(out[0][:, :width], F.layer_norm(x0[:, :width], (width,), w, b, 1e-5), rtol=1e-5, atol=1e-5)


def test_split_mode_waits_for_a_parameter_written_as_rows(threads):
    """An instruction that reads as a parameter what another writes as rows (an
    embedding table that a copy refills every step, split by columns: thread 0 then
    embeds what thread 1 copied): the planner counts parameters then, and every step
    embeds that step's table."""
    width = vocab = 512  # logits: y, whose width bounds the tokens
    steps = 64
    n = vocab * width
    acc, one, table, z, y = torch.zeros(1, n), torch.ones(1, n), torch.zeros(1, n), torch.zeros(1, width), torch.zeros(1, width)
    views = [[0, 0, n], [1, 0, n], [2, 0, n], [3, 0, width], [4, 0, width], [2, 0, 0]]  # view 5: the table as a parameter
    # acc += 1, table = acc, z = table[token], logits y = z (the team always meets before
    # the logits are written: they were read by every thread's draw)
    code = [OPS["add"], 0, 1, 0, n, OPS["copy"], 0, 2, n, OPS["embed"], 3, 5, width, vocab, OPS["copy"], 3, 4, width]
    engine = _C.StepEngine([acc, one, table, z, y], code, [0, len(code)], views, 1, 4, width)
    threads(2)
    logits = torch.empty(steps, 1, width)
    last = torch.full((steps, 1), vocab - 1, dtype=torch.int64)  # the end of what thread 1 copies
    engine.run(0, steps, last[0], last, None, None, logits)
    assert torch.equal(logits[:, 0], torch.arange(1.0, steps + 1)[:, None].expand(steps, width))
    assert torch.equal(y, torch.full((1, width), float(steps)))


def test_step_time_breakdown_runs():
    from ssmkit.benchmarks.sashimi import breakdown

    times = breakdown(3, small("dplr", l_max=64), steps=4, rounds=1)
    assert set(times) == {"full step + sampling", "S4 steps", "linears", "GELU", "layer norms", "GLU", "add, copy, embed"}
    assert all(t > 0 for t in times.values())


def test_instruction_table_matches_the_opcodes_and_lengths():
    """The exported instruction table (csrc/include/ssmkit/engine_isa.h) is the one the
    engine decodes: its opcodes are engine_ops', each instruction is its opcode and one
    word per operand, and the roles are ones the emitter knows."""
    table = _C.engine_instructions()
    assert {op: opcode for op, (opcode, _) in table.items()} == _C.engine_ops
    assert len(_C.engine_op_lengths) == len(table) + 1 and _C.engine_op_lengths[0] == 0
    roles = {"rows_in", "rows_out", "rows_inout", "param", "param_opt", "integer", "f64"}
    for op, (opcode, operands) in table.items():
        assert _C.engine_op_lengths[opcode] == 1 + len(operands), op
        assert {role for _, role in operands} <= roles, op
        assert len({name for name, _ in operands}) == len(operands), op
    assert ssmkit.engine.OPS == _C.engine_ops
    assert ssmkit.engine.OPERANDS["linear"] == ("x", "out", "Wt", "bias", "n_in", "n_out")
    assert dict(table["norm_linear"][1])["eps"] == "f64" and dict(table["linear"][1])["bias"] == "param_opt"


def test_emitter_takes_operands_by_name():
    """Program.emit writes the opcode, then the operands in the table's order (the
    double's bits for an f64 operand), and rejects a missing or unknown operand or an
    unknown instruction by name."""
    p = ssmkit.engine.Program(batch=1)
    p.emit("layer_norm", width=8, eps=1e-5, bias=3, weight=2, out=1, x=0)
    p.emit("copy", out=5, x=4, width=8)
    assert p.code == [OPS["layer_norm"], 0, 1, 2, 3, 8, _eps_bits(1e-5), OPS["copy"], 4, 5, 8]
    with pytest.raises(TypeError, match=r"missing \['width'\]"):
        p.emit("copy", x=0, out=1)
    with pytest.raises(TypeError, match=r"unknown \['w'\]"):
        p.emit("copy", x=0, out=1, width=8, w=2)
    with pytest.raises(ValueError, match="unknown instruction"):
        p.emit("transpose", x=0, out=1)
    assert len(p.code) == 11  # nothing appended by the rejected ones


def test_bad_program_errors_name_the_instruction_and_operand():
    x, w = torch.zeros(2, 8), torch.zeros(7)
    linear, glu, diag = OPS["linear"], OPS["glu"], OPS["diag_step"]
    views = [[0, 0, 8], [1, 0, 0]]
    with pytest.raises(ValueError, match=r"program 0, instruction at 0 \(linear\), operand Wt = 1: 16 floats do not fit"):
        _C.StepEngine([x, w], [linear, 0, 0, 1, -1, 4, 4], [0, 7], views, 2, 0, 1)
    with pytest.raises(ValueError, match=r"instruction at 0 \(linear\), operand bias = 5: expected a view index below 2"):
        _C.StepEngine([x, w], [linear, 0, 0, 1, 5, 2, 2], [0, 7], views, 2, 0, 1)
    with pytest.raises(ValueError, match=r"instruction at 3 \(glu\), operands x and out: .* different buffers"):
        _C.StepEngine([x, w], [OPS["gelu"], 0, 8, glu, 0, 0, 4], [0, 7], views, 2, 0, 1)
    with pytest.raises(ValueError, match=r"\(diag_step\), operand state = 0: expected contiguous rows \(stride 4\), got stride 8"):
        _C.StepEngine([x, w, torch.zeros(2, 1), torch.zeros(2, 1)], [diag, 0, 2, 3, 1, 1, 1, -1, 1, 2], [0, 10],
                      views + [[2, 0, 1], [3, 0, 1]], 2, 0, 1)
    with pytest.raises(ValueError, match=r"\(diag_step\): expected H, N >= 1 and 0 <= r <= 64, got H = 0"):
        _C.StepEngine([x, w], [diag, 0, 0, 0, 1, 1, 1, -1, 0, 2], [0, 10], views, 2, 0, 1)
    with pytest.raises(ValueError, match=r"\(embed\), operand vocab = 0: expected a positive vocabulary size"):
        _C.StepEngine([x, w], [OPS["embed"], 0, 1, 4, 0], [0, 5], views, 2, 0, 1)
