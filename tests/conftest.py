import os
import sys

import pytest
import torch
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))  # tests/accuracy.py


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# Fuzzing budgets of tests/test_fuzz.py (pytest --hypothesis-profile=NAME): "dev" for
# quick local runs (the default, random), "ci" for .ci/run (derandomized: the same
# examples on every run, so CI never fails by chance; new ground is broken by "dev"
# and "long" runs, which are random), "long" for a soak run.
settings.register_profile("dev", max_examples=25, deadline=None, print_blob=True)
settings.register_profile("ci", max_examples=100, deadline=None, print_blob=True, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=2000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("dev")
