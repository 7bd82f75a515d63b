"""The ``auto`` backend: it runs each problem on the backend its measurements name, honestly.

Result files are written here in the sweep's JSON-lines format (benchmarks.records rows),
so each test states which backend was "measured" fastest; CONVBENCH_AUTO_RESULTS points
auto at them. The correctness of auto's outputs is tests/test_correctness.py's (it covers
every backend); here: that the decision follows the data, falls back past a backend that
cannot take the call, is judged by the chosen backend's error model, and fails clearly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import impls
from impls.backward import check_backward
from impls.builtin import auto
from impls.builtin._auto_table import SCHEMA
from impls.cases import CASES_BY_ID
from impls.checker import PASSED, descriptor, runner
from impls.memory_budget import ENV as BUDGET_ENV
from impls.spec import ConvSpec

ROOT = Path(__file__).resolve().parents[1]
SMALL_3X3 = "mb1ic16ih12oc16oh12kh3ph1"
BIG_31X31 = "mb1ic32ih64oc32oh64kh31ph15"


def row(backend: str, descriptor: str, median_s: float, status: str = "ok", **extra) -> dict:
    return {"record": "case", "backend": backend, "descriptor": descriptor,
            "median_s": median_s if status == "ok" else None, "status": status,
            "dtype": "float32", "device": "cpu", "direction": "forward", "cache": "warm",
            **extra}


@pytest.fixture
def results(tmp_path, monkeypatch):
    """write(rows) -> path, with CONVBENCH_AUTO_RESULTS pointing at it."""
    def write(rows, name="sweep.jsonl"):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        monkeypatch.setenv(auto.RESULTS_ENV, str(path))
        return path

    monkeypatch.delenv(BUDGET_ENV, raising=False)
    return write


def choose(desc: str, **kwargs) -> tuple[str, str]:
    spec = ConvSpec.parse(desc)
    return auto.choose(spec.input_shape, spec.weight_shape, spec.stride, spec.padding,
                       spec.dilation, spec.groups, **kwargs)


def test_picks_the_measured_winner(results):
    results([row("torch", SMALL_3X3, 2e-3), row("unfold", SMALL_3X3 + 'n"net:layer"', 1e-3),
             row("fft", SMALL_3X3, 5e-4, status="skipped")])
    name, why = choose(SMALL_3X3)
    assert name == "unfold"
    assert "measured on this shape" in why and "unfold 1 ms" in why


def test_rows_of_channels_last_operands_do_not_decide(results):
    """auto ranks backends on NCHW operands: a channels_last row (sweep --memory-format) of
    the same shape is another number and stays out of the ranking."""
    results([row("torch", SMALL_3X3, 2e-3), row("unfold", SMALL_3X3, 3e-3),
             row("unfold", SMALL_3X3, 1e-4, memory_format="channels_last")])
    assert choose(SMALL_3X3)[0] == "torch"


def test_unseen_shape_takes_the_nearest_measured_one(results):
    results([row("unfold", SMALL_3X3, 1e-3), row("torch", SMALL_3X3, 2e-3),
             row("fft", BIG_31X31, 1e-2), row("torch", BIG_31X31, 5e-2)])
    name, why = choose("mb1ic32ih60oc32oh60kh29ph14")
    assert name == "fft" and "nearest measured shape mb1ic32ih64oc32oh64kh31ph15" in why
    assert choose("mb1ic24ih12oc24oh12kh3ph1")[0] == "unfold"


def test_a_refusing_winner_gives_way_to_the_next(results):
    results([row("winograd-f4", SMALL_3X3, 1e-4), row("unfold", SMALL_3X3, 1e-3),
             row("torch", SMALL_3X3, 2e-3)])
    assert choose(SMALL_3X3)[0] == "winograd-f4"
    name, why = choose("mb1ic16ih12oc16oh12kh3ph2dh1")  # dilation 2: not Winograd's
    assert name == "unfold" and "winograd-f4 does not support dilation" in why


def test_an_over_budget_winner_gives_way_to_the_next(results, monkeypatch):
    results([row("unfold", SMALL_3X3, 1e-3), row("torch", SMALL_3X3, 2e-3)])
    monkeypatch.setenv(BUDGET_ENV, "1KiB")
    name, why = choose(SMALL_3X3)
    assert name == "torch" and "memory budget" in why
    x, w = torch.randn(1, 16, 12, 12), torch.randn(16, 16, 3, 3)
    torch.testing.assert_close(impls.conv2d(x, w, padding=1, backend="auto"),
                               torch.nn.functional.conv2d(x, w, padding=1))


def test_never_itself_nor_an_unknown_plug_in_and_torch_closes(results, isolated_registry):
    results([row("auto", SMALL_3X3, 1e-5), row("nosuch.module:conv", SMALL_3X3, 1e-4),
             row("fft", SMALL_3X3, 1e-3)])
    name, why = choose(SMALL_3X3, dtype=torch.float16)  # fft has no float16
    assert name == "torch"
    assert "nosuch.module:conv unavailable" in why and "fft does not support float16" in why
    assert "auto 0.01 ms" not in why  # auto's own rows never enter the table


def test_results_variable_overrides_the_built_in_table(results, monkeypatch):
    monkeypatch.delenv(auto.RESULTS_ENV, raising=False)
    default, why = choose(BIG_31X31)
    assert "the built-in table" in why
    other = next(b for b in ("unfold", "fft") if b != default)
    path = results([row(other, BIG_31X31, 1e-3), row(default, BIG_31X31, 2e-3)])
    name, why = choose(BIG_31X31)
    assert name == other and str(path) in why


def test_far_from_every_measurement_the_crossover_rule_decides(results):
    results([row("unfold", SMALL_3X3, 1e-3)])
    name, why = choose("mb1ic64ih256oc64oh256kh15ph7")  # 225 taps: far from a 3x3
    assert name == "fft" and "crossover rule" in why
    name, why = choose(SMALL_3X3, device="cuda")  # nothing measured on a GPU
    assert name == "torch" and "nothing measured on cuda" in why


def test_malformed_results_fail_clearly_and_not_at_import(tmp_path, monkeypatch):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(row("torch", SMALL_3X3, 1e-3)) + "\n{not json\n"
                   + json.dumps(row("unfold", SMALL_3X3, 1e-3)) + "\n")
    monkeypatch.setenv(auto.RESULTS_ENV, str(bad))
    x, w = torch.randn(1, 16, 12, 12), torch.randn(16, 16, 3, 3)
    with pytest.raises(ValueError, match=rf"{auto.RESULTS_ENV}: .*bad.jsonl:2: not JSON"):
        impls.conv2d(x, w, backend="auto")
    missing = tmp_path / "missing.jsonl"
    monkeypatch.setenv(auto.RESULTS_ENV, str(missing))
    with pytest.raises(ValueError, match="cannot read .*missing.jsonl"):
        impls.conv2d(x, w, backend="auto")
    bad.write_text(json.dumps({"record": "case", "backend": "torch"}) + "\n")
    monkeypatch.setenv(auto.RESULTS_ENV, str(bad))
    with pytest.raises(ValueError, match="a case row with no descriptor"):
        impls.conv2d(x, w, backend="auto")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))))
    env[auto.RESULTS_ENV] = str(missing)
    listing = subprocess.run([sys.executable, "-m", "impls", "list"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0 and "auto" in listing.stdout, listing.stderr


def test_a_run_cut_off_mid_line_is_still_read(results, tmp_path):
    path = results([row("unfold", SMALL_3X3, 1e-3)])
    path.write_text(path.read_text() + '{"record": "case", "backend": "tor')
    assert choose(SMALL_3X3)[0] == "unfold"


def test_the_decision_is_made_once_per_problem(results, monkeypatch):
    results([row("unfold", SMALL_3X3, 1e-3)])
    calls = []
    decide = auto._decide
    monkeypatch.setattr(auto, "_decide", lambda *a: calls.append(a) or decide(*a))
    x, w = torch.randn(1, 16, 12, 12), torch.randn(16, 16, 3, 3)
    for _ in range(3):
        impls.conv2d(x, w, padding=1, backend="auto")
    assert len(calls) == 1


def test_results_are_judged_by_the_chosen_backends_error_model(results):
    case = CASES_BY_ID["basic-3x3-pad1"]
    results([row("fft", descriptor(case), 1e-4), row("torch", descriptor(case), 1e-3)])
    entry = impls.get_backend("auto")
    assert runner(entry, case, torch.float32, "cpu").name == "fft"
    from impls.checker import check_case

    for mode in ("exact", "random"):
        result = check_case("auto", case, mode)
        assert result.status == PASSED, result.repro()
        assert result.bound > 0  # fft's bound, not the exact backends' zero
    result = check_backward("auto", case, "backward-weights", "random")
    assert result.status == PASSED, result.repro()


def test_build_table_writes_what_auto_reads(results, tmp_path, monkeypatch):
    run = {"record": "run", "commit_info": {"id": "0123456789abcdef", "dirty": True}}
    sweep = results([run, row("unfold", SMALL_3X3, 1e-3), row("torch", SMALL_3X3, 3e-3),
                     row("unfold", SMALL_3X3, 2e-3, shape_set="again")])
    out = tmp_path / "table.json"
    assert auto.main(["build-table", str(sweep), "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == SCHEMA and doc["entries"][0]["descriptor"] == SMALL_3X3
    assert doc["commits"] == ["0123456789ab+dirty"]  # which code the table's times are of
    assert doc["entries"][0]["ranking"] == [["unfold", 1e-3], ["torch", 3e-3]]  # the fastest
    monkeypatch.setenv(auto.RESULTS_ENV, str(out))
    assert choose(SMALL_3X3)[0] == "unfold"


def test_the_built_in_table_is_well_formed_and_followed(monkeypatch):
    monkeypatch.delenv(auto.RESULTS_ENV, raising=False)
    monkeypatch.setenv(BUDGET_ENV, "unlimited")
    table = auto._load_table("")
    assert table.entries, "impls/builtin/auto_table.json has no entries"
    for entry in table.entries:
        winner = impls.get_backend(entry.ranking[0][0])
        if winner.unsupported(device=entry.device):  # e.g. a GPU entry on this machine
            continue
        name, why = auto.choose(*entry.problem, dtype=getattr(torch, entry.dtype),
                                device=entry.device)
        assert name == winner.name and "measured on this shape" in why, why
