"""pytest-benchmark suite over the cases of ``ssmkit bench`` (run: ``pytest bench``).

``--quick`` takes the small smoke-run shapes; with ``--benchmark-disable`` each impl
runs once, which is how CI checks that the benchmarks still work.
"""

from ssmkit.benchmarks import load_cases


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", help="ssmkit bench's small smoke-run shapes")


def pytest_generate_tests(metafunc):
    if "case_impl" in metafunc.fixturenames:
        cases = load_cases(None, quick=metafunc.config.getoption("quick"))
        pairs = [(case, name) for case in cases for name in case.impls]
        ids = [f"{case.family}-{case.name}-{case.shape.replace(' ', ',')}-{name.replace(' ', '_')}" for case, name in pairs]
        metafunc.parametrize("case_impl", pairs, ids=ids)
