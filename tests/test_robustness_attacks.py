"""Attacks of ssmkit.eval.robustness: budget 0 changes nothing, PGD never leaves its ball,
and on a trained classifier the attacks raise the loss and, at a large budget, drive
accuracy to about zero (a plain torch classifier here; an ssmkit S4 classifier below)."""

import pytest
import torch
from robustness_data import tone_dataset, trained_classifier

from ssmkit.eval import robustness as rb

ATTACKS = [("fgsm", "linf"), ("fgsm", "l2"), ("pgd", "linf"), ("pgd", "l2")]


@pytest.fixture(scope="module")
def task():
    items, _ = tone_dataset(48, seed=2)
    x = torch.stack([x for x, _ in items])
    y = torch.tensor([label for _, label in items])
    return trained_classifier(), x, y


def loss_and_accuracy(model, x, y):
    with torch.no_grad():
        logits = model(x)
    return torch.nn.functional.cross_entropy(logits, y).item(), (logits.argmax(1) == y).double().mean().item()


def distance(x_adv, x, norm):
    d = x_adv.double() - x.double()  # exact for float32 inputs
    return d.abs().flatten(1).amax(1) if norm == "linf" else d.flatten(1).norm(dim=1)


@pytest.mark.parametrize("method, norm", ATTACKS)
def test_budget_zero_changes_nothing(task, method, norm):
    model, x, y = task
    x_adv = rb.Attack(method, 0.0, norm=norm).perturb(model, x, y)
    assert torch.equal(x_adv, x)


@pytest.mark.parametrize("method, norm", ATTACKS)
@pytest.mark.parametrize("eps", [1e-6, 0.05, 0.7])
def test_attack_never_leaves_its_ball(task, method, norm, eps):
    model, x, y = task
    budget = eps if norm == "linf" else eps * 8  # L2 over 64 samples: comparable size
    attack = rb.Attack(method, budget, norm=norm, steps=5, step_size=budget)  # big steps push on the ball
    x_adv = attack.perturb(model, x, y)
    assert x_adv.dtype == x.dtype and x_adv.shape == x.shape
    assert (distance(x_adv, x, norm) <= budget).all(), distance(x_adv, x, norm).max().item()
    bounded = rb.Attack(method, budget, norm=norm, steps=5, bounds=(-0.5, 0.5)).perturb(model, x.clamp(-0.5, 0.5), y)
    assert (distance(bounded, x.clamp(-0.5, 0.5), norm) <= budget).all()
    assert bounded.abs().max() <= 0.5


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_a_budget_below_the_float_spacing_is_still_kept(task, norm):
    """Around 1000, float32 values are 6.1e-5 apart: x + 4e-5 rounds onto the neighbour
    6.1e-5 away, outside the ball, so the attack must settle back on x."""
    model, x, y = task
    x, eps = x + 1000, 4e-5
    assert (distance(x + eps, x, "linf") > eps).any()  # the naive step leaves the ball
    x_adv = rb.Attack("pgd", eps, norm=norm, steps=3, step_size=eps).perturb(model, x, y)
    assert (distance(x_adv, x, norm) <= eps).all()


@pytest.mark.parametrize("method, norm", ATTACKS)
def test_attack_raises_the_loss_and_a_large_budget_breaks_the_model(task, method, norm):
    model, x, y = task
    clean_loss, clean_accuracy = loss_and_accuracy(model, x, y)
    assert clean_accuracy == 1.0
    scale = 1 if norm == "linf" else 8
    losses = [loss_and_accuracy(model, rb.Attack(method, eps * scale, norm=norm).perturb(model, x, y), y)[0] for eps in (0.02, 0.1)]
    assert clean_loss < losses[0] < losses[1]
    if method == "pgd":
        _, accuracy = loss_and_accuracy(model, rb.Attack("pgd", 1.0 * scale, norm=norm).perturb(model, x, y), y)
        assert accuracy <= 0.05


def test_pgd_is_at_least_as_strong_as_fgsm(task):
    model, x, y = task
    fgsm = loss_and_accuracy(model, rb.Attack("fgsm", 0.1).perturb(model, x, y), y)[0]
    pgd = loss_and_accuracy(model, rb.Attack("pgd", 0.1, steps=10).perturb(model, x, y), y)[0]
    assert pgd >= fgsm


def test_seeded_start_and_padding_untouched(task):
    model, x, y = task
    attack = rb.Attack("pgd", 0.1, steps=3, seed=3)
    assert torch.equal(attack.perturb(model, x, y), attack.perturb(model, x, y))
    assert not torch.equal(attack.perturb(model, x, y), rb.Attack("pgd", 0.1, steps=3, seed=4).perturb(model, x, y))
    lengths = torch.full((len(x),), 40)
    padded = x.clone()
    padded[:, 40:] = 0
    for norm in ("linf", "l2"):
        x_adv = rb.Attack("pgd", 0.3, norm=norm, steps=3).perturb(model, padded, y, lengths)
        assert torch.equal(x_adv[:, 40:], padded[:, 40:])
        assert not torch.equal(x_adv[:, :40], padded[:, :40])


def test_gradients_run_through_an_ssmkit_s4_classifier():
    """Autograd of the input through ssmkit's kernels (S4 DPLR layer: Cauchy backward)."""
    from ssmkit.models import SequenceClassifier

    model = SequenceClassifier(1, 3, d_model=8, n_layers=1, d_state=8, dropout=0.0).eval()
    items, _ = tone_dataset(12, seed=5)
    x = torch.stack([x for x, _ in items])
    y = torch.tensor([label for _, label in items])
    clean_loss, _ = loss_and_accuracy(model, x, y)
    for norm, eps in (("linf", 0.05), ("l2", 0.4)):
        x_adv = rb.Attack("pgd", eps, norm=norm, steps=3).perturb(model, x, y)
        assert (distance(x_adv, x, norm) <= eps).all()
        assert loss_and_accuracy(model, x_adv, y)[0] > clean_loss


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "cw"}, "method: expected one of fgsm, pgd, got 'cw'"),
        ({"norm": "l1"}, "norm: expected one of linf, l2, got 'l1'"),
        ({"eps": -1}, "eps: expected a budget >= 0, got -1"),
        ({"steps": 0}, "steps: expected a positive whole number, got 0"),
        ({"bounds": (1, -1)}, "bounds: expected (lo, hi) with lo < hi"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError) as info:
        rb.Attack(**kwargs)
    assert message in str(info.value)


@pytest.fixture
def one_ssmkit_thread():
    """ssmkit's OpenMP pool and torch's spin against each other on a busy 2-core machine."""
    import ssmkit

    threads = ssmkit.get_num_threads()
    ssmkit.set_num_threads(1)
    yield
    ssmkit.set_num_threads(threads)


def test_pgd_on_a_trained_fsdd_classifier(one_ssmkit_thread):
    """Spoken 0 versus 1 from raw FSDD audio (all six speakers): an S4D classifier trained
    here for a few seconds, then attacked on the test takes."""
    from ssmkit.data import fsdd_root
    from ssmkit.data.audio import WavFolder
    from ssmkit.models import SequenceClassifier
    from ssmkit.models.waveform import PatchClassifier

    root = fsdd_root(required=False)
    if root is None:
        pytest.skip("FSDD not found (../shared/data/fsdd or $SSMKIT_FSDD)")

    def digits_0_and_1(split):
        ds = WavFolder(root, 8000, 4000, split=split, crop="center")
        keep = [i for i, m in enumerate(ds.metadata) if m["label"] in (0, 1)]
        return torch.stack([ds[i][0] for i in keep]), torch.tensor([ds[i][1] for i in keep])

    (x_train, y_train), (x, y) = digits_0_and_1("train"), digits_0_and_1("test")
    model = PatchClassifier(SequenceClassifier(32, 2, d_model=16, n_layers=2, d_state=16, mode="diag", dropout=0.0), 32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    epochs, batch = 6, 32
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-2, total_steps=epochs * -(-len(x_train) // batch))
    for _ in range(epochs):
        order = torch.randperm(len(x_train))
        for start in range(0, len(x_train), batch):
            chosen = order[start : start + batch]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x_train[chosen]), y_train[chosen]).backward()
            optimizer.step()
            schedule.step()
    model.eval()
    clean_loss, clean_accuracy = loss_and_accuracy(model, x, y)
    assert clean_accuracy >= 0.85  # trained: otherwise the attack has nothing to break
    small = rb.Attack("pgd", 0.003, bounds=(-1, 1)).perturb(model, x, y)
    assert (distance(small, x, "linf") <= 0.003).all()
    assert loss_and_accuracy(model, small, y)[0] > clean_loss
    large = rb.Attack("pgd", 0.1, bounds=(-1, 1)).perturb(model, x, y)
    assert (distance(large, x, "linf") <= 0.1).all()
    assert loss_and_accuracy(model, large, y)[1] <= 0.05


def test_fgsm_on_a_linear_model_is_exact():
    """logit margin m(x) = w.x + b for the true class 1: FGSM under L-inf moves every
    coordinate by eps against sign(w) (to within the float32 spacing, never beyond eps),
    which lowers the margin by eps * ||w||_1: exactly the examples with m < eps ||w||_1 flip."""
    g = torch.Generator().manual_seed(0)
    n, length, eps = 64, 50, 0.01
    w = (torch.rand(length, generator=g, dtype=torch.float64) * 0.9 + 0.1) * torch.where(torch.rand(length, generator=g) < 0.5, -1.0, 1.0)
    x = (torch.rand(n, length, generator=g) * 1.8 - 0.9).to(torch.float32)  # spacing near 1: 6e-8
    threshold = eps * w.abs().sum().item()
    # margins spread on both sides of the threshold, none within 1% of it
    margins = threshold * torch.linspace(0.2, 2.0, n, dtype=torch.float64)
    margins = margins[(margins / threshold - 1).abs() > 0.01]
    x = x[: len(margins)]
    b = margins - x.double() @ w  # per-example bias puts each margin where wanted

    class Linear(torch.nn.Module):
        def forward(self, inputs):
            index = torch.arange(len(inputs))
            margin = inputs.double() @ w + b[index]
            return torch.stack([torch.zeros_like(margin), margin], 1)

    y = torch.ones(len(x), dtype=torch.long)
    x_adv = rb.Attack("fgsm", eps, norm="linf").perturb(Linear(), x, y)
    d = x_adv.double() - x.double()
    top = torch.maximum(x.abs(), x_adv.abs())  # the float spacing where x + eps falls
    spacing = (torch.nextafter(top, torch.tensor(2.0)) - top).double()
    assert (d.abs() <= eps).all()
    assert ((d.abs() - eps).abs() <= spacing).all()  # every coordinate moved by the whole budget
    assert torch.equal(torch.sign(d), -torch.sign(w).expand_as(d))
    new_margin = x_adv.double() @ w + b
    assert torch.allclose(new_margin, margins - threshold, atol=1e-5)
    assert torch.equal(new_margin < 0, margins < threshold)
    assert (margins < threshold).sum() > 5 and (margins > threshold).sum() > 5


def test_a_step_that_rounds_past_the_budget_lands_on_the_last_value_inside():
    """x = 1 + 3 ulps (float32), eps = 2.5 ulps: x +- eps is no float; the largest move
    within the budget is 2 ulps each way, not 0 (staying put) and not 3 (outside)."""
    ulp = 2.0**-23
    x = torch.full((1, 4), 1 + 3 * ulp, dtype=torch.float32)
    attack = rb.Attack("fgsm", 2.5 * ulp, norm="linf")
    fitted = attack._fit(x, x + torch.tensor([[1.0, -1.0, 0.0, 10.0]]) * 2.5 * ulp)
    assert (fitted.double() - x.double()).div(ulp).tolist() == [[2.0, -2.0, 0.0, 2.0]]
