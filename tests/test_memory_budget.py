"""The memory budget: workspace models against measured peaks, and the refusal beyond it.

A backend's workspace model (impls.registry.Backend.workspace) must bound what a call
really allocates, or the refusal protects nothing; and not by much, or it refuses what
would fit. The measurement is benchmarks.memory's (the resident-set high-water mark on
Linux), so the shapes are tens of MB: big enough that page-granular noise and allocator
slack do not dominate. naive is left out: its model is small by design and any shape where
its memory would show takes it minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import impls
from impls.backward import check_backward
from impls.cases import CASES_BY_ID
from impls.checker import SKIPPED, check_case
from impls.memory_budget import ENV, budget, parse_bytes

MiB = 2**20
#: (backend, input shape, weight shape, stride, padding, dilation, groups)
MODEL_CASES = [
    ("unfold", (2, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, 1),
    ("unfold", (1, 128, 56, 56), (128, 1, 7, 7), 1, 3, 1, 128),
    ("unfold", (4, 32, 64, 64), (32, 32, 5, 5), 1, 4, 2, 1),
    ("fft", (1, 256, 28, 28), (256, 256, 5, 5), 1, 2, 1, 1),
    ("fft", (1, 128, 56, 56), (128, 1, 31, 31), 1, 15, 1, 128),
    ("fft", (2, 64, 56, 56), (64, 64, 3, 3), 2, 1, 1, 1),
    ("winograd-f2", (2, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, 1),
    ("winograd-f2", (4, 32, 56, 56), (128, 32, 3, 3), 1, 1, 1, 1),  # 2 chunks, K > 3C
    ("winograd-f4", (1, 256, 29, 29), (256, 256, 3, 3), 1, 1, 1, 1),
    ("winograd-f4x1", (8, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, 1),
    ("winograd-f4x1", (8, 96, 62, 62), (96, 32, 3, 3), 1, 1, 1, 3),  # 2 chunks, cropped
]
#: The model may miss what it does not count (allocator pages, library scratch) by this
#: much, and may overstate (copies scipy or torch might avoid) by at most this factor.
UNDER_SLACK, OVER_FACTOR = 1.15, 2.0
#: Run in a fresh process: one call's peak (benchmarks.memory) and the model's bytes.
_MEASURE = """
import json, sys, torch, impls
from benchmarks.memory import peak_memory
from impls.frontend import normalize
name, x, w, stride, padding, dilation, groups = json.loads(sys.argv[1])
entry = impls.get_backend(name)
call = normalize(torch.randn(x), torch.randn(w), None, stride, padding, dilation, groups)
run = lambda: entry.fn(call.input, call.weight, None, call.stride, call.padding,
                       call.dilation, call.groups)
run()  # first-call caches (FFT plans, transform matrices) are not the call's workspace
measured, method = min(peak_memory(run, "cpu") for _ in range(2))
model, what = entry.workspace(*call.problem(), torch.float32.itemsize)
print(json.dumps([measured, method, model, what]))
"""


#: (input shape, weight shape, stride, padding, dilation, groups) of triton's CUDA model test.
TRITON_CASES = [
    ((2, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, 1),
    ((1, 128, 28, 28), (256, 128, 1, 1), 2, 0, 1, 1),
    ((1, 96, 30, 30), (96, 32, 3, 3), 1, 2, 2, 3),
]


@pytest.mark.parametrize("x, w, stride, padding, dilation, groups", TRITON_CASES,
                         ids=[f"{c[0][1]}x{c[0][2]}-k{c[1][2]}-s{c[2]}-g{c[5]}"
                              for c in TRITON_CASES])
def test_triton_model_is_what_a_cuda_call_allocates(device, x, w, stride, padding, dilation,
                                                    groups):
    """On CUDA the caching allocator's peak is exact, so the model (the copies of NCHW
    operands and the output in both layouts) must match it to allocator rounding."""
    if not device.startswith("cuda"):
        pytest.skip("triton's model is of its CUDA path (--device cuda); the interpreter "
                    "allocates its own")
    from benchmarks.memory import peak_memory
    from impls.frontend import normalize

    entry = impls.get_backend("triton")
    if not entry.available:
        pytest.skip(entry.reason)
    call = normalize(torch.randn(x, device=device), torch.randn(w, device=device), None,
                     stride, padding, dilation, groups)
    run = lambda: entry.fn(call.input, call.weight, None, call.stride,  # noqa: E731
                           call.padding, call.dilation, call.groups)
    run()  # compile and pick the kernel first: that is not the call's memory
    measured, _ = peak_memory(run, device)
    model, what = entry.workspace(*call.problem(), torch.float32.itemsize)
    # Never under (the allocator rounds each of the four to 512 bytes); over by at most a
    # copy the call could skip (a 1x1 weight is channels_last already).
    assert what and measured <= model + 4 * 512, (measured, model)
    assert model <= measured * 1.1 + MiB, (measured, model)


@pytest.mark.parametrize("text, expected", [
    ("1000000", 1_000_000), ("4GiB", 4 * 2**30), ("512 MiB", 512 * MiB), ("1.5GB", 1.5e9),
    ("64kib", 64 * 1024), ("unlimited", None),
])
def test_budget_values_parse(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["4x", "-1GiB", "GiB", "1e9", "12 parsecs"])
def test_bad_budget_names_the_variable(monkeypatch, text):
    monkeypatch.setenv(ENV, text)
    with pytest.raises(ValueError, match=ENV):
        impls.conv2d(torch.randn(1, 2, 5, 5), torch.randn(2, 2, 3, 3), backend="unfold")


def test_a_bad_budget_is_bad_usage_of_each_command(monkeypatch, capsys):
    """Not a failed check of every backend with a memory model (and a pass of the rest)."""
    from benchmarks.__main__ import main as bench_main
    from impls.__main__ import main as check_main

    monkeypatch.setenv(ENV, "abc")
    assert check_main(["check", "--backend", "unfold", "--case", "valid-3x3"]) == 2
    assert bench_main(["shapes", "resnet50"]) == 2
    err = capsys.readouterr().err
    assert err.count(f"{ENV}='abc' is not a byte count") == 2, err
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/test_spec.py"], capture_output=True, text=True,
                         cwd=Path(__file__).parents[1], timeout=300)
    assert run.returncode == 4 and "is not a byte count" in run.stderr, run.stderr


def test_default_budget_is_a_share_of_free_memory(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    limit, source = budget("cpu")
    if limit is None:
        pytest.skip(f"no free-memory figure here: {source}")
    assert limit > 0 and "MemAvailable" in source


def test_over_budget_raises_out_of_memory_before_allocating(monkeypatch):
    monkeypatch.setenv(ENV, "1MiB")
    x, w = torch.randn(2, 16, 32, 32), torch.randn(16, 16, 3, 3)
    with pytest.raises(torch.OutOfMemoryError) as info:
        impls.conv2d(x, w, padding=1, backend="unfold")
    message = str(info.value)
    for word in ("unfold", "column buffer", "1 MiB", ENV):
        assert word in message, message
    # A backend without a model (torch) is never refused; "unlimited" lifts the budget.
    impls.conv2d(x, w, padding=1, backend="torch")
    monkeypatch.setenv(ENV, "unlimited")
    impls.conv2d(x, w, padding=1, backend="unfold")


def test_checker_skips_over_budget_cases_with_the_reason(monkeypatch):
    monkeypatch.setenv(ENV, "1KiB")
    case = CASES_BY_ID["basic-3x3-pad1"]
    for result in (check_case("fft", case, "random"),
                   check_backward("unfold", case, "backward-data", "random")):
        assert result.status == SKIPPED, result.repro()
        assert "memory budget" in result.reason and ENV in result.reason


@pytest.mark.parametrize("name, x, w, stride, padding, dilation, groups", MODEL_CASES,
                         ids=[f"{c[0]}-{c[1][1]}x{c[1][2]}-k{c[2][2]}-s{c[3]}"
                              for c in MODEL_CASES])
def test_workspace_model_bounds_the_measured_peak(name, x, w, stride, padding, dilation,
                                                  groups):
    # A fresh process: the resident-set method counts every page the call touches, and a
    # heap shaped by the tests before it (other backends' scratch, GEMM packing buffers)
    # moved this by +50% under pytest-xdist.
    out = subprocess.run([sys.executable, "-c", _MEASURE, json.dumps(
        [name, x, w, stride, padding, dilation, groups])], capture_output=True, text=True,
        cwd=Path(__file__).parents[1], timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    measured, method, model, what = json.loads(out.stdout.strip().splitlines()[-1])
    if measured is None:
        pytest.skip(f"peak memory cannot be measured here (method {method})")
    assert what
    assert measured <= model * UNDER_SLACK + MiB, (
        f"{name} measured {measured / MiB:.1f} MiB, model {model / MiB:.1f} MiB: "
        "the model misses memory the call needs")
    assert model <= measured * OVER_FACTOR + MiB, (
        f"{name} model {model / MiB:.1f} MiB, measured {measured / MiB:.1f} MiB: "
        "the model would refuse calls that fit")
