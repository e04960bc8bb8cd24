"""pytest-benchmark suite over the cases of ``ssmkit bench`` (run: ``pytest bench``).

``--quick`` takes the small smoke-run shapes; with ``--benchmark-disable`` each impl
runs once, which is how CI checks that the benchmarks still work. The cases of
``ssmkit bench --framework jax`` are included where jax is installed.
"""

import pytest

from ssmkit.benchmarks import jax as jax_cases, load_cases


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", help="ssmkit bench's small smoke-run shapes")


def pytest_generate_tests(metafunc):
    if "case_impl" in metafunc.fixturenames:
        quick = metafunc.config.getoption("quick")
        # the ssmkit.jax cases (benchmarks/jax.py) too, where jax is installed
        cases = load_cases(None, quick=quick) + load_cases(None, quick=quick, framework="jax")
        pairs = [(case, name) for case in cases for name in case.impls]
        ids = [f"{case.family}-{case.name}-{case.shape.replace(' ', ',')}-{name.replace(' ', '_')}" for case, name in pairs]
        if not jax_cases.available():
            pairs.append(pytest.param(None, marks=pytest.mark.skip(reason="jax is not installed: no ssmkit.jax cases")))
            ids.append("jax")
        metafunc.parametrize("case_impl", pairs, ids=ids)
