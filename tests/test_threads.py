"""Concurrency and determinism of the CPU ops: Python threads calling ops at once (the
kernels release the GIL), ops inside DataLoader worker processes (forked after the
parent has used OpenMP), repeatability and independence of the thread count."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from accuracy import assert_close_2x

import ssmkit
from ssmkit import ops
from ssmkit.ops import reference as ref

C64, C128 = torch.complex64, torch.complex128


def workload(seed: int):
    """One call of every op (forward and backward) on inputs from `seed`, at sizes where
    the kernels split work over threads; returns (name -> function of the inputs, inputs)."""
    g = torch.Generator().manual_seed(seed)

    def c(*shape, scale=1.0):
        return torch.randn(*shape, dtype=C64, generator=g) * scale

    H, N, L, batch = 8, 16, 300, 2
    A = torch.complex(-0.5 - torch.rand(H, N, generator=g), math.pi * torch.arange(N).float().expand(H, N))
    dt = torch.exp(torch.rand(H, generator=g) * 4 - 6)
    dA, dB = ops.discretize(dt, A, c(H, N))
    P = c(H, 1, N, scale=N**-0.5)
    inputs = {
        "v": c(H, N), "w": A, "z": torch.exp(2j * math.pi * torch.arange(L) / L).to(C64),
        "x": A * dt[:, None], "u": torch.randn(batch, L, H, generator=g), "dt": dt, "A": A, "B": c(H, N),
        "dA": dA, "dB": dB, "dC": c(H, N, scale=N**-0.5), "D": torch.randn(H, generator=g),
        "state": c(batch, H, N), "P": P, "gcauchy": c(H, L), "gvdm": torch.randn(H, L, generator=g),
    }  # fmt: skip

    def grads(out, ins, g):
        ins = [t.detach().requires_grad_() for t in ins]
        return (out(*ins),) + torch.autograd.grad(out(*ins), ins, g)

    calls = {
        "cauchy": lambda i: grads(lambda v, w: ops.cauchy(v, i["z"], w), (i["v"], i["w"]), i["gcauchy"]),
        "vandermonde": lambda i: grads(lambda v, x: ops.vandermonde(v, x, L), (i["v"], i["x"]), i["gvdm"]),
        "vandermonde_transpose": lambda i: grads(
            lambda v, x: ops.vandermonde_transpose(i["gvdm"], v, x), (i["v"], i["x"]), i["v"]),
        "discretize": lambda i: ops.discretize(i["dt"], i["A"], i["B"], method="bilinear"),
        "ssm_step": lambda i: ops.ssm_step(i["state"], i["u"][:, 0], i["dA"], i["dB"], i["dC"], i["D"]),
        "ssm_scan": lambda i: grads(lambda u, dA: ops.ssm_scan(u, dA, i["dB"], i["dC"], i["D"], i["state"])[0],
                                    (i["u"], i["dA"]), i["u"]),
        "dplr_step": lambda i: ops.dplr_step(i["state"], i["u"][:, 0], ops.dplr_setup(i["dt"], i["A"], i["P"], i["B"]),
                                             i["dC"], i["D"]),
        "dplr_untruncated_C": lambda i: (ops.dplr_untruncated_C(i["dt"], i["A"], i["P"], i["dC"], L),),
    }  # fmt: skip
    return calls, inputs


def run_all(seed: int) -> dict:
    calls, inputs = workload(seed)
    return {name: [t.detach() for t in fn(inputs)] for name, fn in calls.items()}


def assert_same(a: dict, b: dict, what: str):
    for name in a:
        for i, (x, y) in enumerate(zip(a[name], b[name])):
            assert torch.equal(x, y), f"{name}[{i}]: {what} differs bitwise"


def test_eight_python_threads_match_serial():
    seeds = list(range(8))
    serial = {s: run_all(s) for s in seeds}
    results, errors = {}, []
    start = threading.Barrier(len(seeds))

    def worker(seed):
        try:
            start.wait()  # all threads enter the kernels together
            for _ in range(2):
                results.setdefault(seed, []).append(run_all(seed))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    assert not errors, errors
    for s in seeds:
        for r in results[s]:
            assert_same(serial[s], r, f"thread (seed {s}) vs serial")


def test_gil_is_released():
    """Another Python thread makes progress while a long kernel runs."""
    v, w = torch.randn(64, 64, dtype=C64), torch.randn(64, 64, dtype=C64)
    z = torch.randn(20000, dtype=C64)
    ticks = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(1)
            done.wait(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        ticks.clear()
        for _ in range(3):
            ops.cauchy(v, z, w)
        ticks_during = len(ticks)
    finally:
        done.set()
        t.join()
    assert ticks_during > 0, "no other Python thread ran while the kernels did: is the GIL held?"


class OpsDataset(torch.utils.data.Dataset):
    """Each item runs every op in the worker process."""

    def __init__(self, threads=None):
        self.threads = threads

    def __len__(self):
        return 4

    def __getitem__(self, i):
        if self.threads:
            ssmkit.set_num_threads(self.threads)  # ask for a team in the worker
        return run_all(i)


@pytest.mark.parametrize(
    "context, threads",
    [("fork", None), ("fork", 2), pytest.param("spawn", 2, marks=pytest.mark.slow)],  # spawn: ~1 min of imports
)
def test_dataloader_workers(context, threads):
    """DataLoader workers (num_workers=2) give the parent's results. The parent has used
    its OpenMP team before forking: in a forked worker GNU OpenMP cannot start a team
    on the forking thread, so ssmkit runs there on one thread (threads=2 asks for more)."""
    expected = [run_all(i) for i in range(4)]
    loader = torch.utils.data.DataLoader(
        OpsDataset(threads), batch_size=None, num_workers=2, multiprocessing_context=context, timeout=300
    )
    got = list(loader)
    assert len(got) == 4
    for i, r in enumerate(got):
        assert_same(expected[i], r, f"DataLoader worker ({context}) vs parent")


def _threads_then_run(seed):
    ssmkit.set_num_threads(2)
    return ssmkit.get_num_threads(), run_all(seed)


def test_fork_pool_after_openmp():
    """A multiprocessing fork pool after the parent used OpenMP: no hang, same results,
    and the forked workers report the one thread they run on."""
    import multiprocessing

    expected = [run_all(i) for i in range(2)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        got = pool.map_async(_threads_then_run, range(2)).get(timeout=300)
    for i, (n, r) in enumerate(got):
        assert n == 1
        assert_same(expected[i], r, "forked worker vs parent")


@pytest.fixture
def restore_threads():
    n, nt = ssmkit.get_num_threads(), torch.get_num_threads()
    yield
    ssmkit.set_num_threads(n)
    torch.set_num_threads(nt)


def test_repeatable_bitwise():
    first = run_all(0)
    for _ in range(3):
        assert_same(first, run_all(0), "a repeated call")


def test_one_and_all_threads_agree(restore_threads):
    """1 thread and all threads: both within the 2x rule of the complex128 reference."""
    many = max(2, torch.get_num_threads(), ssmkit.get_num_threads())
    calls, inputs = workload(1)
    truth_in = {k: t.to(C128 if t.is_complex() else torch.float64) for k, t in inputs.items()}
    for n in (1, many):
        ssmkit.set_num_threads(n)
        assert ssmkit.get_num_threads() == n
        for name, fn in calls.items():
            out = [t.detach() for t in fn(inputs)]
            truth = [t.detach() for t in fn_reference(name, truth_in)]
            low = [t.detach() for t in fn_reference(name, inputs)]
            for i, (o, t, lo) in enumerate(zip(out, truth, low)):
                assert_close_2x(f"{name}[{i}] with {n} threads", o, t, lo)


def fn_reference(name, i):
    """The reference counterpart of workload()'s calls (same outputs, same order)."""
    L = i["u"].shape[1]

    def grads(out, ins, g):
        ins = [t.detach().requires_grad_() for t in ins]
        return (out(*ins),) + torch.autograd.grad(out(*ins), ins, g)

    if name == "cauchy":
        return grads(lambda v, w: ref.cauchy(v, i["z"], w), (i["v"], i["w"]), i["gcauchy"])
    if name == "vandermonde":
        return grads(lambda v, x: ref.vandermonde(v, x, L, exact_exponent=x.dtype == C128), (i["v"], i["x"]), i["gvdm"])
    if name == "vandermonde_transpose":
        return grads(lambda v, x: ref.vandermonde_transpose(i["gvdm"], v, x, exact_exponent=x.dtype == C128),
                     (i["v"], i["x"]), i["v"])  # fmt: skip
    if name == "discretize":
        return ref.discretize(i["dt"], i["A"], i["B"], "bilinear")
    if name == "ssm_step":
        return ref.ssm_step(i["state"], i["u"][:, 0], i["dA"], i["dB"], i["dC"], i["D"])
    if name == "ssm_scan":
        return grads(lambda u, dA: ref.ssm_scan(u, dA, i["dB"], i["dC"], i["D"], i["state"])[0], (i["u"], i["dA"]), i["u"])
    if name == "dplr_step":
        return ref.dplr_step(i["state"], i["u"][:, 0], i["dt"], i["A"], i["P"], i["B"], i["dC"], i["D"])
    if name == "dplr_untruncated_C":
        return (ref.dplr_untruncated_C(i["dt"], i["A"], i["P"], i["dC"], L),)
    raise KeyError(name)
