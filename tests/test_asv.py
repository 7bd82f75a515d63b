"""The asv suite (benchmarks/asv_bench/) imports, skips with reasons, and measures.

Fast: one tiny shape is timed; ``asv check`` (discovery of the whole suite in this Python,
a few seconds) runs where asv is installed (the ``bench`` extra) and is skipped otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import impls
from benchmarks.asv_bench import THREADS_VARIABLE, conv2d, thread_count
from impls.registry import FEATURES
from impls.spec import ConvSpec

ROOT = Path(__file__).resolve().parents[1]
TINY = "mb1ic4ih8oc4oh8kh3ph1"


def test_params_cover_backends_and_shapes():
    backends, shapes = conv2d.Forward.params
    assert conv2d.Forward.param_names == ["backend", "shape"]
    assert {"naive", "unfold", "fft", "torch", "triton"} <= set(backends)
    assert len(shapes) == len(conv2d.SHAPES) > 0
    for descriptor in shapes:
        assert ConvSpec.parse(descriptor).descriptor() == descriptor


@pytest.mark.parametrize(("name", "shape", "reason"), [
    ("naive", conv2d.Forward.params[1][0], "budget"),  # ResNet conv1: 118M multiply-adds
    ("not-a-backend", TINY, "unknown backend"),
])
def test_setup_skips_with_a_reason(name, shape, reason):
    # ("backend" is taken: conftest parametrises that name over every registered backend.)
    with pytest.raises(NotImplementedError, match=reason):
        conv2d.Forward().setup(name, shape)


def test_an_unavailable_backend_is_skipped_with_its_reason():
    # Not through the registry: a "pkg.mod:fn" lookup would stay registered for later tests.
    entry = impls.Backend(name="gpu_only", fn=lambda *args: None, probe=lambda: "no GPU here")
    assert "no GPU here" in conv2d.skip_reason(entry, ConvSpec.parse(TINY))


def test_a_problem_outside_the_method_is_skipped():
    entry = impls.Backend(name="only1x1", fn=lambda *args: None,
                          accepts=lambda *problem: "kernels other than 1x1")
    assert "kernels other than 1x1" in conv2d.skip_reason(entry, ConvSpec.parse(TINY))


def test_triton_interpreter_is_not_timed(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(NotImplementedError, match="triton"):
        conv2d.Forward().setup("triton", TINY)


def test_backward_has_a_direction_parameter_over_a_subset_of_the_shapes():
    from impls.backward import DIRECTIONS

    backends, shapes, directions = conv2d.Backward.params
    assert conv2d.Backward.param_names == ["backend", "shape", "direction"]
    assert backends == conv2d.Forward.params[0]
    assert set(shapes) < set(conv2d.Forward.params[1]) and len(shapes) == 4
    assert tuple(directions) == DIRECTIONS


def test_backward_skips_what_lacks_autograd_or_exceeds_the_budget():
    entry = impls.Backend(name="no_grad", fn=lambda *args: None,
                          features=FEATURES - {"autograd"})
    spec = ConvSpec.parse(TINY)
    assert conv2d.skip_reason(entry, spec) == ""  # forward: fine
    assert "autograd" in conv2d.skip_reason(entry, spec, "backward-data")
    dw3 = ConvSpec.parse(conv2d.Backward.params[1][2])  # forward: within naive's budget
    naive = impls.get_backend("naive")
    assert conv2d.skip_reason(naive, dw3) == ""
    assert "budget" in conv2d.skip_reason(naive, dw3, "backward-data")


@pytest.mark.parametrize("direction", conv2d.BACKWARD_DIRECTIONS)
def test_backward_times_one_gradient_on_a_tiny_shape(direction):
    bench = conv2d.Backward()
    bench.setup("torch", TINY, direction)
    grads = bench.call()
    expected = (1, 4, 8, 8) if direction == "backward-data" else (4, 4, 3, 3)
    assert [tuple(g.shape) for g in grads] == [expected]  # only the asked-for gradient
    assert bench.time_backward("torch", TINY, direction) is None
    bench.peakmem_backward("torch", TINY, direction)
    assert bench.track_gflops("torch", TINY, direction) > 0


def test_time_peakmem_and_gflops_run_on_a_tiny_shape():
    bench = conv2d.Forward()
    bench.setup("torch", TINY)
    assert bench.time_forward("torch", TINY) is None
    bench.peakmem_forward("torch", TINY)
    assert bench.track_gflops("torch", TINY) > 0
    assert conv2d.Forward.track_gflops.unit == "GFLOP/s"


def test_thread_count_follows_the_variable(monkeypatch):
    monkeypatch.setenv(THREADS_VARIABLE, "3")
    assert thread_count() == conv2d.track_threads() == 3
    monkeypatch.setenv(THREADS_VARIABLE, "0")
    with pytest.raises(ValueError, match=THREADS_VARIABLE):
        thread_count()


def test_machine_name_carries_the_thread_count(monkeypatch):
    pytest.importorskip("asv")
    from benchmarks.asv_bench.machine import machine_fields

    monkeypatch.setenv(THREADS_VARIABLE, "3")
    fields = machine_fields()
    assert "-3t" in fields["machine"] and "3 torch threads" in fields["cpu"]
    assert {"os", "arch", "num_cpu", "ram"} <= set(fields)
    assert machine_fields("ci")["machine"] == "ci"


def test_asv_conf_points_at_the_suite():
    conf = json.loads("\n".join(line for line in (ROOT / "asv.conf.json").read_text().splitlines()
                                if not line.lstrip().startswith("//")))
    assert (ROOT / conf["benchmark_dir"] / "conv2d.py").is_file()
    assert conf["matrix"]["req"]["torch"] == ["2.13.0"]
    assert all("--no-deps" in command for command in conf["build_command"])


def test_asv_check_discovers_the_suite():
    pytest.importorskip("asv")
    # ASV_PYTHONPATH: asv drops PYTHONPATH; this lets the check run on an uninstalled checkout.
    env = {**os.environ, "ASV_PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "asv", "check", "--environment",
                             f"existing:{sys.executable}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No problems found" in result.stdout
