"""Generated long-range classification tasks: ListOps and selective copying.

Both are torch Datasets of ``(tokens, target)`` with tokens an int64 tensor of shape
(length,) (0 is padding) and are generated in full at construction from a seed, so the
same arguments give the same dataset on every machine and in every process.

- ``ListOps``: the Long Range Arena grammar. An expression is a digit or
  ``[OP e1 e2 ... ]`` with 2 to ``max_args`` operands and OP one of MAX, MIN, MED (median,
  the mean of the two middle values rounded down when the count is even, as LRA's
  ``int(np.median(...))``) and SM (sum mod 10). Target: the value, 0-9.
- ``SelectiveCopying``: ``n_memorize`` data tokens (1..``n_tokens``) scattered among
  blanks over ``length`` positions; the target is the data tokens in order, an int64
  vector of shape (n_memorize,) of class indices 0..n_tokens-1.
"""

from __future__ import annotations

import random
from typing import Optional, Sequence, Union

import torch

# LRA's ListOps tokens (its brackets are single tokens "[MAX" and "]"); 0 is padding.
LISTOPS_OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
LISTOPS_VOCAB = ("<pad>",) + tuple(str(d) for d in range(10)) + LISTOPS_OPERATORS + ("]",)
LISTOPS_INDEX = {token: i for i, token in enumerate(LISTOPS_VOCAB)}

Tree = Union[int, tuple]  # a digit, or (operator, [operand trees])


def listops_apply(op: str, values: Sequence[int]) -> int:
    """The value of ``[op values... ]`` for operands already evaluated."""
    if op == "[MIN":
        return min(values)
    if op == "[MAX":
        return max(values)
    if op == "[SM":
        return sum(values) % 10
    if op == "[MED":
        s = sorted(values)
        mid = len(s) // 2
        return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) // 2
    raise ValueError(f"op: expected one of {', '.join(LISTOPS_OPERATORS)}, got {op!r}")


def _tree_tokens(tree: Tree, out: list) -> list:
    if isinstance(tree, int):
        out.append(str(tree))
        return out
    op, operands = tree
    out.append(op)
    for operand in operands:
        _tree_tokens(operand, out)
    out.append("]")
    return out


def _tree_value(tree: Tree) -> int:
    if isinstance(tree, int):
        return tree
    op, operands = tree
    return listops_apply(op, [_tree_value(t) for t in operands])


def _random_tree(rng: random.Random, budget: int, max_args: int, depth: int, max_depth: int) -> Tree:
    """A random expression of at most ``budget`` tokens (close to it when budget allows).

    The tokens left after the operator and its "]" are split at random between 2 to
    max_args operands; an operand given fewer than 4 tokens (the smallest operation)
    or past max_depth becomes a digit."""
    if budget < 4 or depth >= max_depth:
        return rng.randrange(10)
    n_args = rng.randint(2, min(max_args, budget - 2))
    inner = budget - 2
    cuts = sorted(rng.sample(range(1, inner), n_args - 1))  # n_args positive shares of inner
    shares = [b - a for a, b in zip([0] + cuts, cuts + [inner])]
    operands = [_random_tree(rng, share, max_args, depth + 1, max_depth) for share in shares]
    return (rng.choice(LISTOPS_OPERATORS), operands)


def listops_expression(rng: random.Random, min_length: int, max_length: int, max_args: int = 5, max_depth: int = 20):
    """One expression as (tokens, value) with min_length <= len(tokens) <= max_length."""
    if not 1 <= min_length <= max_length:
        raise ValueError(f"min_length, max_length: expected 1 <= min_length <= max_length, got {min_length}, {max_length}")
    # A tree uses ~85% of its budget (operands given 2-3 tokens become digits), so budgets
    # run a fifth past max_length and trees outside [min_length, max_length] are redrawn.
    while True:
        tree = _random_tree(rng, rng.randint(min_length, max_length + max_length // 5), max_args, 1, max_depth)
        tokens = _tree_tokens(tree, [])
        if min_length <= len(tokens) <= max_length:
            return tokens, _tree_value(tree)


def _check_count(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or value < low:
        raise ValueError(f"{name}: expected a whole number >= {low}, got {value!r}")
    return int(value)


class ListOps(torch.utils.data.Dataset):
    """``size`` ListOps expressions of min_length..max_length tokens, right-padded to ``length``.

    Items: (tokens int64 (length,), value int in 0..9). ``texts[i]`` is the expression as text.
    """

    n_classes = 10
    vocab = LISTOPS_VOCAB

    def __init__(
        self,
        size: int,
        *,
        min_length: int = 500,
        max_length: int = 2000,
        length: Optional[int] = None,
        max_args: int = 5,
        max_depth: int = 20,
        seed: int = 0,
    ):
        size = _check_count("size", size)
        max_args = _check_count("max_args", max_args, 2)
        length = max_length if length is None else _check_count("length", length)
        if length < max_length:
            raise ValueError(f"length: expected at least max_length={max_length} (the padded length), got {length}")
        rng = random.Random(seed)
        self.length = length
        self.texts, values = [], []
        tokens = torch.zeros(size, length, dtype=torch.uint8)  # 16 token ids; int64 on access
        for i in range(size):
            words, value = listops_expression(rng, min_length, max_length, max_args, max_depth)
            self.texts.append(" ".join(words))
            tokens[i, : len(words)] = torch.tensor([LISTOPS_INDEX[w] for w in words], dtype=torch.uint8)
            values.append(value)
        self.tokens = tokens
        self.targets = torch.tensor(values, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self.tokens[index].long(), int(self.targets[index])


class SelectiveCopying(torch.utils.data.Dataset):
    """Selective copying: remember ``n_memorize`` tokens scattered over ``length`` positions.

    Inputs use 0 as the blank and 1..n_tokens for data; targets are the data tokens in
    order as class indices (token - 1). Items: (tokens int64 (length,), target int64 (n_memorize,)).
    """

    def __init__(self, size: int, *, length: int = 4096, n_memorize: int = 16, n_tokens: int = 8, seed: int = 0):
        size = _check_count("size", size)
        length = _check_count("length", length)
        n_memorize = _check_count("n_memorize", n_memorize)
        n_tokens = _check_count("n_tokens", n_tokens, 2)
        if n_memorize > length:
            raise ValueError(f"n_memorize: expected at most length={length}, got {n_memorize}")
        g = torch.Generator().manual_seed(seed)
        self.length, self.n_memorize, self.n_tokens = length, n_memorize, n_tokens
        self.n_classes = n_tokens
        self.vocab_size = n_tokens + 1
        data = torch.randint(1, n_tokens + 1, (size, n_memorize), generator=g)
        # Where the data tokens go: n_memorize distinct positions per row, in increasing order.
        # Rows are built on access: at length 16384 a stored dataset would take gigabytes.
        self.positions = torch.stack([torch.randperm(length, generator=g)[:n_memorize].sort().values for _ in range(size)])
        self.data = data
        self.targets = data - 1

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        tokens = torch.zeros(self.length, dtype=torch.int64)
        tokens[self.positions[index]] = self.data[index]
        return tokens, self.targets[index]
