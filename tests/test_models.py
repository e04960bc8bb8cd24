"""ssmkit.models.SequenceClassifier: shapes, pooling and padding masks, gradients,
torch.compile, parameter groups, bad input."""

import warnings

import pytest
import torch

from ssmkit.models import SequenceClassifier
from ssmkit.nn import S4, param_groups


def small(**kw):
    args = dict(d_model=8, n_layers=2, d_state=8, dropout=0.0) | kw
    return SequenceClassifier(kw.pop("d_input", 3), 5, **{k: v for k, v in args.items() if k != "d_input"})


@pytest.mark.parametrize("mode", ["dplr", "diag"])
@pytest.mark.parametrize("prenorm", [True, False])
def test_shapes_and_gradients_reach_every_parameter(mode, prenorm):
    m = small(mode=mode, prenorm=prenorm, dropout=0.1)
    x = torch.randn(4, 30, 3)
    logits = m(x)
    assert logits.shape == (4, 5) and m.embed(x).shape == (4, 8)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert sum(isinstance(mod, S4) for mod in m.modules()) == 2


def test_decoder_reads_the_embedding():
    m = small().eval()
    x = torch.randn(2, 12, 3)
    assert torch.allclose(m(x), m.decoder(m.embed(x)))


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_padding_mask_makes_padding_irrelevant(pool):
    """Right padding with a mask gives the logits of the unpadded sequence (causal layers)."""
    m = small(pool=pool).eval()
    a, b = torch.randn(1, 10, 3), torch.randn(1, 17, 3)
    padded = torch.cat([torch.cat([a, 100 * torch.randn(1, 7, 3)], 1), b])
    mask = torch.arange(17).unsqueeze(0) < torch.tensor([[10], [17]])
    with torch.no_grad():
        both = m(padded, mask=mask)
        assert torch.allclose(both[0], m(a)[0], atol=1e-5) and torch.allclose(both[1], m(b)[0], atol=1e-5)


def test_token_ids_and_raw_scalars():
    tokens = small(d_input=20, embedding=True, mode="diag")
    assert tokens(torch.randint(0, 20, (3, 25))).shape == (3, 5)
    audio = small(d_input=1)
    x = torch.randn(2, 40)
    assert torch.equal(audio(x), audio(x.unsqueeze(-1)))  # (batch, length) means one feature


def test_torch_compile_fullgraph():
    warnings.filterwarnings("ignore", message=".*complex operators.*")  # inductor's note on complex ops
    torch._dynamo.reset()
    for mode in ("dplr", "diag"):
        m = SequenceClassifier(3, 5, d_model=8, n_layers=1, d_state=4, mode=mode, l_max=16, dropout=0.0)
        x = torch.randn(2, 16, 3)
        want = m(x)
        got = torch.compile(m, fullgraph=True)(x)
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), mode
        got.sum().backward()
        assert all(p.grad is not None for p in m.parameters()), mode


def test_trains_with_param_groups():
    torch.manual_seed(0)
    m = small(mode="diag", n_layers=1)
    opt = torch.optim.AdamW(param_groups(m, lr=1e-2, weight_decay=0.01))
    x, y = torch.randn(16, 20, 3), torch.randint(0, 5, (16,))
    x[torch.arange(16), :, 0] += y.float().unsqueeze(-1)  # a learnable signal
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(
    "args,kwargs,match",
    [
        ((0, 5), {}, "d_input"),
        ((3, 0), {}, "n_classes"),
        ((3, 5), {"n_layers": 0}, "n_layers"),
        ((3, 5), {"pool": "max"}, "pool"),
        ((3, 5), {"d_state": 5}, "d_state"),
    ],
)
def test_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SequenceClassifier(*args, **kwargs)


def test_bad_inputs():
    m = small()
    with pytest.raises(ValueError, match=r"x: expected shape \(batch, length, 3\)"):
        m(torch.randn(2, 10, 4))
    with pytest.raises(ValueError, match="mask: expected a bool tensor of shape"):
        m(torch.randn(2, 10, 3), mask=torch.ones(2, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="token ids"):
        small(d_input=20, embedding=True)(torch.randn(2, 10))
