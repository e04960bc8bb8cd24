"""Each impl of each benchmark case, timed by pytest-benchmark; one group per case."""


def test_bench(benchmark, case_impl):
    case, impl_name = case_impl
    impl = case.impls[impl_name]
    benchmark.group = f"{case.family} {case.name} {case.shape}"
    # pytest-benchmark reports calls per second; work per call gives the throughput.
    benchmark.extra_info.update(work=impl.work, unit=case.unit, note=case.note)
    benchmark(impl.fn)
