"""Each impl of each benchmark case, timed by pytest-benchmark; one group per case. Each
case is first checked against the float64 reference (the 2x rule), as ``ssmkit bench``
does: a case that fails is not timed."""

_verdicts = {}  # id(case) -> its check's verdict: each case is checked once, before its first timing


def test_bench(benchmark, case_impl):
    case, impl_name = case_impl
    if id(case) not in _verdicts:
        _verdicts[id(case)] = case.check()
    verdict = _verdicts[id(case)]
    assert verdict.ok, f"{case.family} {case.name} {case.shape}: {verdict}"
    impl = case.impls[impl_name]
    benchmark.group = f"{case.family} {case.name} {case.shape}"
    # pytest-benchmark reports calls per second; work per call gives the throughput.
    benchmark.extra_info.update(work=impl.work, unit=case.unit, note=case.note, check=str(verdict))
    benchmark(impl.fn)
