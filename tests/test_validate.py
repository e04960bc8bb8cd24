"""ssmkit._validate: the library's argument checks."""

import numpy as np
import pytest

from ssmkit._validate import positive_int


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.int32(1)])
def test_positive_int_accepts_whole_numbers(value):
    assert positive_int("n", value) == value and type(positive_int("n", value)) is int


@pytest.mark.parametrize("value", [0, -2, 2.0, 2.5, True, "3", None])
def test_positive_int_rejects_the_rest(value):
    with pytest.raises(ValueError, match=f"n: expected a positive integer, got {value!r}"):
        positive_int("n", value)


def test_positive_int_upper_bound():
    assert positive_int("k", 4, upper=4, upper_text="fewer than the 5 items") == 4
    with pytest.raises(ValueError, match=r"k: expected at most 4 \(fewer than the 5 items\), got 5"):
        positive_int("k", 5, upper=4, upper_text="fewer than the 5 items")
