"""The suite proves its own power: every known-buggy backend of tests/mutants.py is caught.

Each mutant goes through exactly what ``python -m impls check --backend mutants:NAME``
runs (the whole case table, exact and random fill, float32 and float64, then module
parity for every padding mode), and must fail: in the summary row of the feature it
breaks, only on cases where its bug can show, and on the cases it names. One mutant also
goes through the command line, whose exit code and repro line are checked, and the repro
is run to show it reproduces. A survivor is a gap in the case table or the tolerances: add
a case (impls/cases.py is append-only), never loosen a check.

``python -m tests.test_mutants`` prints the kill table (pytest writes it after this module).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import impls
from impls import checker, frontend
from impls.cases import CASES_BY_ID
from impls.checker import BAD, check_backend, summarize
from impls.parity import MODULE_CASES, PADDING_MODES, check_module

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # mutants are loaded as "mutants:NAME", as a user's module
    sys.path.insert(0, str(HERE))

import mutants  # noqa: E402

DTYPES = (torch.float32, torch.float64)
MODULE_CASES_BY_ID = {mc.id: mc.case for mc in MODULE_CASES}


@pytest.fixture(scope="module", autouse=True)
def shared_references():
    """Compute each reference once for all mutants: it depends on the filled data only.

    The float64 reference is most of the checker's time; every mutant sees the same fills.
    """
    memo: dict = {}
    compute = checker.reference_conv2d

    def reference_conv2d(x, w, bias=None, **kwargs):
        key = (_digest(x), _digest(w), _digest(bias), tuple(sorted(kwargs.items())))
        if key not in memo:
            memo[key] = compute(x, w, bias, **kwargs)
            memo[key].flags.writeable = False  # shared: a caller must not change it
        return memo[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checker, "reference_conv2d", reference_conv2d)
        yield


def _digest(array) -> tuple | None:
    if array is None:
        return None
    array = np.ascontiguousarray(array)
    return array.shape, str(array.dtype), hashlib.blake2b(array.tobytes()).hexdigest()


# Entries looked up here must not stay in impls.backends() for other tests.
pytestmark = pytest.mark.usefixtures("isolated_registry")


def run_suite(spec: str) -> list:
    """What ``python -m impls check --backend SPEC`` runs, as CaseResults."""
    entry = impls.get_backend(spec)
    assert entry.available, entry.reason
    results = check_backend(entry, dtypes=DTYPES)
    return results + [check_module(entry, mc, mode, dtype) for mc in MODULE_CASES
                      for mode in PADDING_MODES for dtype in DTYPES]


def case_of(result):
    """The Case a result ran (module parity ids are "module-id/padding_mode")."""
    return CASES_BY_ID.get(result.case) or MODULE_CASES_BY_ID[result.case.split("/")[0]]


def verdict(mutant: mutants.Mutant, results: list) -> list[str]:
    """What is wrong with how the suite caught ``mutant`` (empty: caught as it should be)."""
    bad = [r for r in results if r.status in BAD]
    if not bad:
        return [f"survived: {mutant.bug}"]
    problems = []
    if mutant.feature and summarize(results)[mutant.feature]["failed"] == 0:
        problems.append(f"no failure in the {mutant.feature!r} row")
    outside = [r for r in bad if not mutant.only_where(case_of(r))
               or (mutant.feature and mutant.feature not in r.features)]
    problems += [f"fails where its bug cannot show: {r.repro()}" for r in outside[:3]]
    failed_cases = {r.case for r in bad}
    problems += [f"not caught by {c}" for c in mutant.caught_by if c not in failed_cases]
    return problems


def kill_row(mutant: mutants.Mutant, results: list) -> str:
    """mutant, verdict, failing/all comparisons, its feature row, the first case it fails."""
    bad = [r for r in results if r.status in BAD]
    row = summarize(results).get(mutant.feature or "", {})
    in_row = (f"{mutant.feature} {row['failed']}/{row['failed'] + row['passed']}"
              if row else "-")
    first = bad[0].case if bad else "-"
    return (f"{mutant.name:24} {'killed' if bad else 'SURVIVED':8} {len(bad):4}/{len(results):<4}"
            f" {in_row:14} {first}")


@pytest.fixture(scope="module")
def kill_table(request):
    """Rows of the kill table, written to the terminal after the module's tests."""
    rows: list[str] = []
    yield rows
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin(
        "capturemanager")
    if not rows or reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():  # teardown output is captured otherwise
        reporter.write_line("")
        reporter.write_line(f"kill table, {len(rows)} mutants (failing comparisons / all; "
                            "failing / run in the feature row it breaks; first failing case):")
        for row in sorted(rows):
            reporter.write_line("  " + row)


def test_there_are_enough_mutants_and_each_says_what_catches_it():
    assert len(mutants.MUTANTS) >= 12
    for mutant in mutants.MUTANTS.values():
        assert mutant.bug, f"{mutant.name}: the docstring's first line must state the bug"
        assert mutant.caught_by, f"{mutant.name}: name the cases that must catch it"
        assert set(mutant.caught_by) <= set(CASES_BY_ID), mutant.name


@pytest.mark.parametrize("name", sorted(mutants.MUTANTS))
def test_mutant_is_caught_where_its_bug_shows(name, kill_table):
    mutant = mutants.MUTANTS[name]
    results = run_suite(f"mutants:{name}")
    kill_table.append(kill_row(mutant, results))
    problems = verdict(mutant, results)
    assert not problems, f"{name} ({mutant.bug}):\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("name", sorted(mutants.FRONT_END_MUTANTS))
def test_front_end_mutant_is_caught(name, kill_table, monkeypatch):
    """The front end's "same" handling, broken, under a correct backend (torch)."""
    mutant = mutants.FRONT_END_MUTANTS[name]
    monkeypatch.setattr(frontend, "_resolve_padding", mutant.fn(frontend._resolve_padding))
    results = run_suite("torch")
    kill_table.append(kill_row(mutant, results))
    problems = verdict(mutant, results)
    assert not problems, f"{name} ({mutant.bug}):\n  " + "\n  ".join(problems)


def _nan_output(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return torch.full_like(torch.nn.functional.conv2d(input, weight, bias, stride, padding,
                                                      dilation, groups), float("nan"))


def _meta_output(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return torch.nn.functional.conv2d(input, weight, bias, stride, padding, dilation,
                                      groups).to("meta")


@pytest.mark.parametrize("fn, says", [(_nan_output, "not finite (900 NaN"),
                                      (_meta_output, "on meta, expected")])
def test_module_parity_fails_what_the_forward_check_fails(fn, says):
    """Module parity once passed an all-NaN output (NaN > bound is False) and crashed on a
    result it could not convert to NumPy; it judges like the forward check now."""
    impls.register_backend(fn, name="odd-output")
    for mode in PADDING_MODES:
        result = check_module("odd-output", MODULE_CASES[-1], mode)
        assert result.status == "failed" and says in result.reason, result
        assert result.descriptor.endswith(f"padding_mode={mode}"), result.descriptor


def cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m impls ARGS`` from the repo root, with tests/ importable (for mutants)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, (str(HERE), str(ROOT), os.environ.get("PYTHONPATH")))))
    return subprocess.run([sys.executable, "-m", "impls", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_fails_a_mutant_with_a_repro_line_that_reproduces():
    run = cli("check", "--backend", "mutants:bias_dropped")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    rows = {m[1]: (int(m[2]), int(m[3])) for m in
            re.finditer(r"(\w+)\W+(\d+)\W+(\d+)\W+(\d+)", run.stdout)}
    assert rows["bias"][1] > 0, f"no failure in the bias row:\n{run.stdout}"
    # The mutants live in tests/, which a fresh python does not search: the line says so.
    assert f"repro: PYTHONPATH={Path(__file__).resolve().parent}${{PYTHONPATH:+:$PYTHONPATH}}" \
        " python -m impls" in run.stdout
    repros = re.findall(r"repro: (?:PYTHONPATH=\S+ )?(python -m impls check .*)", run.stdout)
    assert repros and all("--backend mutants:bias_dropped --case" in r for r in repros)
    # The first repro line alone reruns that one comparison, which fails again.
    again = cli(*shlex.split(repros[0])[3:])
    assert again.returncode == 1, again.stdout + again.stderr
    assert "1 failed" in again.stdout, again.stdout


def test_a_module_parity_repro_line_runs_that_comparison():
    run = cli("check", "--backend", "torch", "--case", "module-3x3-pad1/reflect", "--mode",
              "exact", "--dtype", "float32", "--seed", "0")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "torch: 1 comparisons" in run.stdout and "all passed" in run.stdout, run.stdout


def test_cli_exit_status_says_failed_not_skipped():
    run = cli("check", "--backend", "mutants:bias_dropped", "--case", "basic-3x3-pad1",
              "--mode", "exact", "--dtype", "float32", "--no-module")
    assert run.returncode == 1 and "nothing was checked" not in run.stderr, run.stderr


def main() -> None:
    """Print the kill table: each mutant through the whole suite."""
    impls.backends()
    rows = []
    for mutant in mutants.MUTANTS.values():
        results = run_suite(f"mutants:{mutant.name}")
        rows.append((mutant, results, verdict(mutant, results)))
    resolve = frontend._resolve_padding
    for mutant in mutants.FRONT_END_MUTANTS.values():
        frontend._resolve_padding = mutant.fn(resolve)
        try:
            results = run_suite("torch")
        finally:
            frontend._resolve_padding = resolve
        rows.append((mutant, results, verdict(mutant, results)))
    for mutant, results, problems in rows:
        print(kill_row(mutant, results) + "".join("\n    " + p for p in problems))


if __name__ == "__main__":
    main()


def test_a_weight_served_stale_after_an_in_place_write_is_named_as_such():
    """The second call of a random-mode comparison doubles the weight in place (an
    optimizer step): a transform kept by address is caught and the reason says what it
    did; one kept by address *and* version counter is right, and passes."""
    case = CASES_BY_ID["basic-3x3-pad1"]
    mutants._kept_weights.clear()  # a fresh key: the first call is right, the second stale
    stale = checker.check_case("mutants:weight_kept_by_address", case, mode="random")
    assert stale.status == "failed", stale
    assert "served the weight of the first call" in stale.reason, stale.reason
    kept = {}

    def kept_by_version(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        key = (weight.data_ptr(), weight._version)
        return torch.nn.functional.conv2d(input, kept.setdefault(key, weight.clone()), bias,
                                          stride, padding, dilation, groups)

    impls.register_backend(kept_by_version, name="kept-by-version")
    assert checker.check_case("kept-by-version", case, mode="random").status == "passed"
    assert len(kept) == 2  # it did keep, and recompute after the write
