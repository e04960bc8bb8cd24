"""The 2x rule as the package states it (ssmkit._accuracy) and ``ssmkit bench``'s use of
it: every case is checked before it is timed, and a case that fails is reported, not
timed, and makes the command exit with status 1."""

import math

import pytest
import torch

from accuracy import assert_close_2x
from ssmkit import benchmarks
from ssmkit._accuracy import judge_2x, judge_all
from ssmkit.benchmarks import Case, Cost, Impl
from ssmkit.cli import main


def truth_and_low(n=64, seed=0):
    truth = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return truth, truth.float()


def test_judge_2x_passes_within_twice_the_reference_error():
    truth, low = truth_and_low()
    verdict = judge_2x("x", low, truth, low)
    assert verdict.ok and verdict.err == verdict.ref_err and verdict.floor == 1e-6
    assert str(verdict).startswith("ok (err ") and "<= 2x ref" in str(verdict)
    scale = truth.abs().max().item()
    off = low.clone()
    off[3] += 3 * scale * (verdict.ref_err + 1e-6)  # past 2 x reference error + floor
    failed = judge_2x("x", off, truth, low)
    assert not failed.ok and failed.err > failed.bound
    assert str(failed).startswith("FAILED: x: max error ")
    with pytest.raises(AssertionError, match="x: max error .* > 2 x reference error"):
        assert_close_2x("x", off, truth, low)


@pytest.mark.parametrize(
    "out, truth, low, message",
    [
        (torch.zeros(3), torch.zeros(4, dtype=torch.float64), None, r"y: shape \(3,\) != \(4,\)"),
        (torch.tensor([math.nan, 0.0]), torch.zeros(2, dtype=torch.float64), torch.zeros(2), "y: NaN pattern differs"),
        (torch.tensor([math.inf, 0.0]), torch.zeros(2, dtype=torch.float64), torch.zeros(2), "y: Inf pattern differs"),
        (torch.tensor([-math.inf]), torch.tensor([math.inf], dtype=torch.float64), torch.zeros(1), "y: Inf signs differ"),
        (torch.zeros(2), torch.zeros(2, dtype=torch.float64), None, "y: a single-precision result needs"),
    ],
)
def test_judge_2x_reports_why_it_fails(out, truth, low, message):
    verdict = judge_2x("y", out, truth, low)
    assert not verdict.ok
    with pytest.raises(AssertionError, match=message):
        assert_close_2x("y", out, truth, low)


def test_double_precision_is_held_to_its_floor():
    truth, _ = truth_and_low()
    assert judge_2x("d", truth + 1e-13, truth).ok
    assert not judge_2x("d", truth + 1e-10, truth).ok


def test_judge_all_names_the_first_failure_or_the_tightest_pass():
    truth, low = truth_and_low()
    tight = low.clone()
    tight[0] += 2.5e-7 * truth.abs().max().item()
    verdict = judge_all([("loose", low, truth, low), ("tight", tight, truth, low)])
    assert verdict.ok and verdict.name == "tight"
    verdict = judge_all([("a", low, truth, low), ("b", low + 1, truth, low), ("c", low + 2, truth, low)])
    assert not verdict.ok and verdict.name == "b"


def _failing_case():
    def never():
        raise AssertionError("a case that failed its check must not be timed")

    truth, low = truth_and_low()
    impls = {"ssmkit": Impl(never, 1.0), "baseline": Impl(never, 1.0)}
    return Case("fake", "broken", "n=64", "G things/s", impls, lambda: judge_2x("out", low + 1, truth, low))


def _passing_case():
    truth, low = truth_and_low()
    impls = {"ssmkit": Impl(lambda: low * 2, 64.0), "baseline": Impl(lambda: low * 2, 64.0)}
    return Case("fake", "fine", "n=64", "G things/s", impls, lambda: judge_2x("out", low, truth, low))


def test_run_checks_before_timing_and_does_not_time_a_failed_case():
    results = benchmarks.run([_passing_case(), _failing_case()], quick=True, progress=False)
    fine, broken = results[:2], results[2:]
    assert all(r["valid"] and r["seconds"] > 0 and r["check"].startswith("ok (") for r in fine)
    assert all(not r["valid"] and r["seconds"] is None and r["x_ssmkit"] is None for r in broken)
    assert all(r["check"].startswith("FAILED: out: max error") for r in broken)
    table = benchmarks.format_table(results).splitlines()
    assert table[0].split()[-1] == "check"
    ssmkit_row, baseline_row = (line for line in table if "broken" in line)
    assert "FAILED: out: max error" in ssmkit_row and " - " in ssmkit_row
    assert "FAILED" not in baseline_row
    assert benchmarks.failed_cases(results) == [f"fake broken n=64: {broken[0]['check']}"]


def test_bench_exits_1_when_a_case_fails_its_check(monkeypatch, capsys):
    monkeypatch.setattr(benchmarks, "load_cases",
                        lambda families, quick, device, framework: [_passing_case(), _failing_case()])  # fmt: skip
    assert main(["bench", "--quick"]) == 1
    out, err = capsys.readouterr()
    assert "FAILED: out: max error" in out
    assert "1 case(s) failed their check against the reference, not timed: fake broken n=64" in err
    monkeypatch.setattr(benchmarks, "load_cases", lambda families, quick, device, framework: [_passing_case()])
    assert main(["bench", "--quick"]) == 0


def test_cost_limit_is_the_bound_that_binds():
    peaks = {"flop": 100e9, "byte": 10e9}
    assert Cost(flops=20, bytes=1).limit(peaks) == (5e9, "flop")  # 5e9 units/s by FMA, 1e10 by bandwidth
    assert Cost(flops=2, bytes=4).limit(peaks) == (2.5e9, "byte")
    assert Cost(flops=0, bytes=4).limit(peaks) == (2.5e9, "byte")


def test_run_rates_every_row_against_the_roofline():
    case = _passing_case()
    case.cost = Cost(flops=10, bytes=1)
    peaks = {"flop": 10e9, "byte": 100e9}  # the FMA limit binds: 1e9 units/s
    results = benchmarks.run([case, _failing_case()], quick=True, progress=False, peaks=peaks)
    rated, unrated = results[:2], results[2:]
    for r in rated:
        assert r["peak_kind"] == "flop"
        assert r["of_peak"] == pytest.approx(r["throughput"] * 1e9 / 1e9)
    assert all(r["of_peak"] is None for r in unrated)  # no cost, and not timed
    table = benchmarks.format_table(results)
    assert "of peak" in table.splitlines()[0]
    assert f"{100 * rated[0]['of_peak']:.1f}% FMA" in table


def test_cpu_peaks_are_measured():
    peaks = benchmarks.device_peaks("cpu")
    assert peaks["flop"] > 1e8 and peaks["byte"] > 1e7  # any machine that runs the suite
    assert "measured now" in peaks["method"] and "STREAM triad" in peaks["method"]
