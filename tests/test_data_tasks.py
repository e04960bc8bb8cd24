"""ssmkit.data.tasks: ListOps against an independent evaluator, selective copying, seeds."""

import statistics

import pytest
import torch

from ssmkit.data.tasks import LISTOPS_VOCAB, ListOps, SelectiveCopying, listops_apply


def evaluate_tokens(tokens):
    """Evaluate an LRA ListOps token list with an explicit stack (no recursion, no trees)."""
    ops = {
        "[MIN": min,
        "[MAX": max,
        "[SM": lambda xs: sum(xs) % 10,
        "[MED": lambda xs: int(statistics.median(xs)),  # LRA: int(np.median(...))
    }
    stack = [[]]  # operand lists of the open operations; the outermost collects the result
    names = []
    for token in tokens:
        if token in ops:
            names.append(token)
            stack.append([])
        elif token == "]":
            operands = stack.pop()
            assert len(operands) >= 2, "an operation with fewer than two operands"
            stack[-1].append(ops[names.pop()](operands))
        else:
            stack[-1].append(int(token))
    assert not names and len(stack) == 1 and len(stack[0]) == 1, "unbalanced expression"
    return stack[0][0]


def test_listops_values_match_an_independent_evaluator():
    ds = ListOps(60, min_length=1, max_length=300, seed=3)
    for i in range(len(ds)):
        tokens, value = ds[i]
        words = ds.texts[i].split()
        assert [LISTOPS_VOCAB[t] for t in tokens[: len(words)]] == words
        assert torch.all(tokens[len(words) :] == 0) and tokens.dtype == torch.int64
        assert value == evaluate_tokens(words), ds.texts[i]


def test_listops_lengths_and_labels_at_lra_size():
    ds = ListOps(40, seed=0)  # LRA's lengths: 500 to 2000 tokens
    lengths = [len(t.split()) for t in ds.texts]
    assert min(lengths) >= 500 and max(lengths) <= 2000 and ds.tokens.shape == (40, 2000)
    assert max(lengths) > 1500  # the long end of the range is reached
    for text, value in zip(ds.texts[:5], ds.targets[:5]):
        assert evaluate_tokens(text.split()) == value
    assert set(ds.targets.tolist()) <= set(range(10))


def test_listops_median_rounds_down():
    assert listops_apply("[MED", [2, 5]) == 3  # (2 + 5) // 2, as int(np.median([2, 5]))
    assert listops_apply("[MED", [9, 0, 4]) == 4
    assert listops_apply("[SM", [9, 9, 3]) == 1
    with pytest.raises(ValueError, match="op: expected one of"):
        listops_apply("[FIRST", [1, 2])


def test_fixed_seeds_give_identical_datasets():
    a, b, c = (ListOps(20, min_length=50, max_length=400, seed=s) for s in (7, 7, 8))
    assert a.texts == b.texts and torch.equal(a.tokens, b.tokens) and torch.equal(a.targets, b.targets)
    assert a.texts != c.texts
    x, y, z = (SelectiveCopying(30, length=16384, seed=s) for s in (5, 5, 6))
    assert all(torch.equal(x[i][0], y[i][0]) and torch.equal(x[i][1], y[i][1]) for i in range(30))
    assert not torch.equal(x.positions, z.positions)


def test_selective_copying_targets_are_the_tokens_in_order():
    ds = SelectiveCopying(50, length=1000, n_memorize=16, n_tokens=8, seed=1)
    for i in range(len(ds)):
        tokens, target = ds[i]
        assert tokens.shape == (1000,) and target.shape == (16,)
        data = tokens[tokens != 0]
        assert data.shape == (16,) and torch.equal(data - 1, target)
        assert int(target.min()) >= 0 and int(target.max()) < 8
    assert ds.vocab_size == 9 and ds.n_classes == 8


def test_task_argument_errors():
    with pytest.raises(ValueError, match="size: expected a whole number >= 1"):
        ListOps(0)
    with pytest.raises(ValueError, match="length: expected at least max_length=2000"):
        ListOps(1, length=100)
    with pytest.raises(ValueError, match="min_length, max_length"):
        ListOps(1, min_length=10, max_length=5)
    with pytest.raises(ValueError, match="n_memorize: expected at most length=4"):
        SelectiveCopying(1, length=4, n_memorize=5)
