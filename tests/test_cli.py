"""The ssmkit command: info, bench --quick --json, and usage errors."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ssmkit
from ssmkit.cli import main

SSMKIT_SCRIPT = Path(sys.executable).with_name("ssmkit")  # the console script beside this Python


def run(*command):
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", [[str(SSMKIT_SCRIPT)], [sys.executable, "-m", "ssmkit"]], ids=["script", "module"])
def test_info_prints_the_runtime_isa(command):
    done = run(*command, "info")
    assert done.returncode == 0, done.stderr
    isa = ssmkit._C.build_info()["cpu_isa"]
    assert re.search(rf"CPU ISA +{isa} \(compiled: ", done.stdout), done.stdout
    assert f"ssmkit {ssmkit.__version__}" in done.stdout
    sanitizers = ssmkit._C.build_info()["sanitizers"] or "none"
    assert re.search(rf"sanitizers +{sanitizers}\n", done.stdout), done.stdout


def test_bench_quick_writes_json(tmp_path):
    out = tmp_path / "out.json"
    done = run(sys.executable, "-m", "ssmkit", "bench", "--quick", "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert "x ssmkit" in done.stdout  # the table's header
    report = json.loads(out.read_text())
    assert report["quick"] is True
    assert report["machine"]["cpu_isa"] == ssmkit._C.build_info()["cpu_isa"]
    fields = {"family", "case", "shape", "impl", "unit", "seconds", "throughput", "work", "x_ssmkit", "note"}
    for result in report["results"]:
        assert fields <= result.keys()
        assert result["seconds"] > 0 and result["throughput"] > 0
    ssmkit_cases = {(r["case"], r["shape"]) for r in report["results"] if r["family"] == "cauchy" and r["impl"] == "ssmkit"}
    all_cases = {(r["case"], r["shape"]) for r in report["results"] if r["family"] == "cauchy"}
    assert {case for case, _ in all_cases} == {"forward", "backward"}
    assert ssmkit_cases == all_cases
    assert all(r["x_ssmkit"] == 1.0 for r in report["results"] if r["impl"] == "ssmkit")


def test_bench_quick_framework_jax(tmp_path):
    """--framework jax: each case checked, then ssmkit.jax timed beside its jnp baseline and the torch path."""
    pytest.importorskip("jax")
    out = tmp_path / "out.json"
    done = run(sys.executable, "-m", "ssmkit", "bench", "--quick", "--framework", "jax", "cauchy", "layer",
               "--json", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())["results"]
    impls = {(r["family"], r["case"]): set() for r in results}
    for r in results:
        assert r["valid"] and r["seconds"] > 0, r
        impls[(r["family"], r["case"])].add(r["impl"])
    assert impls == {("cauchy", "forward"): {"ssmkit.jax", "jnp reference", "torch ssmkit"},
                     ("cauchy", "backward"): {"ssmkit.jax", "jnp reference", "torch ssmkit"},
                     ("layer", "S4D fwd+bwd"): {"ssmkit.jax", "jnp layer", "torch ssmkit"}}  # fmt: skip


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "no-such-family"], "unknown benchmark family 'no-such-family'"),
        (["bench", "--threads", "0"], "expected a positive whole number of threads"),
        (["bench", "--json", "/no/such/folder/out.json"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_command_line_loads_without_torch():
    """Every command's options are declared without importing torch (it loads when a command runs)."""
    code = "import sys; from ssmkit.cli import parser; parser(); print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    done = run(sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_one_module_per_command():
    from ssmkit import cli

    assert list(cli.COMMANDS) == ["info", "bench", "train", "generate", "eval", "compare"]
    for name, command in cli.COMMANDS.items():
        module = getattr(cli, "evaluate" if name == "eval" else name)
        assert module.COMMAND is command and module.__name__ == f"ssmkit.cli.{name}"
    assert list(cli.COMMANDS["train"].subcommands) == ["classify", "sashimi"]
    assert list(cli.COMMANDS["eval"].subcommands) == ["samples", "robustness"]


def _imported_modules(path: Path, package: str) -> set:
    """The absolute names of the modules a source file imports (relative imports resolved)."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("area", ["eval", "models"])
def test_evaluation_and_models_do_not_import_the_trainers(area):
    root = Path(ssmkit.__file__).parent
    for path in (root / area).rglob("*.py"):
        package = ".".join(("ssmkit",) + path.parent.relative_to(root).parts)
        trainers = {m for m in _imported_modules(path, package) if m == "ssmkit.train" or m.startswith("ssmkit.train.")}
        assert not trainers, f"{path.relative_to(root)} imports {trainers}"
