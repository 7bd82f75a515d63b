"""Bring your own backend: a user's conv2d is checked without editing the repo.

A user's callable comes in as "package.module:function" or through the
``convbench.backends`` entry-point group, optionally with ``convbench_capabilities``.
These tests use examples/third_party_conv (a package of its own, never pip-installed
here: its src/ goes on sys.path, and a hand-made ``*.dist-info`` folder stands in for
the install so importlib.metadata finds its entry point) and small modules written to a
temporary directory. They check that a user's callable receives normalised arguments,
that what cannot load becomes an unavailable entry with the reason (and ``check`` exits 1
with it, not a traceback), and that declared gaps become skips with their reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import impls
from impls import registry
from impls.__main__ import main
from impls.backward import check_backend_backward
from impls.cases import CASES, CASES_BY_ID
from impls.checker import PASSED, SKIPPED, check_backend, check_case

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "third_party_conv"
EXAMPLE_SPEC = "third_party_conv.conv:conv2d"


# Entries looked up here must not stay in impls.backends() for other tests.
pytestmark = pytest.mark.usefixtures("isolated_registry")


@pytest.fixture
def example_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """write(name, source): a module importable as ``name`` for this test only."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written = []

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


def fake_install(site: Path) -> None:
    """A dist-info for the example, as pip would write it: importlib.metadata reads it."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    points = project["entry-points"][registry.ENTRY_POINT_GROUP]
    info = site / "third_party_conv-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\n"
                                   f"Version: {project['version']}\n")
    (info / "entry_points.txt").write_text(
        f"[{registry.ENTRY_POINT_GROUP}]\n"
        + "".join(f"{name} = {target}\n" for name, target in points.items()))


def cli(*args: str, path: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    """``python -m impls ARGS`` in a fresh process, with ``path`` on PYTHONPATH."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, (*map(str, path), str(ROOT), os.environ.get("PYTHONPATH")))))
    return subprocess.run([sys.executable, "-m", "impls", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


# -- the example package -------------------------------------------------------------------

def test_example_passes_the_whole_suite_from_the_command_line():
    run = cli("check", "--backend", EXAMPLE_SPEC, "--format", "json", path=(EXAMPLE / "src",))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(run.stdout)
    statuses = {r["status"] for r in report["results"]}
    assert statuses == {PASSED}, statuses
    modes = {(r["mode"], r["dtype"]) for r in report["results"]}
    assert modes == {(m, d) for m in ("exact", "random") for d in ("float32", "float64")}
    assert {"bias", "dilation", "groups", "padding", "stride",
            "padding_mode=circular"} <= set(report["summary"])
    assert report["capabilities"]["dtypes"] == ["float32", "float64"]


def test_example_found_through_its_entry_point(tmp_path, monkeypatch, example_on_path):
    fake_install(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = impls.get_backend("myconv")  # not loaded yet: a miss rescans the entry points
    assert entry.available, entry.reason
    assert entry.features == impls.FEATURES
    assert entry.dtypes == (torch.float32, torch.float64)
    assert "myconv" in [b.name for b in impls.backends()]
    x, w, b = torch.randn(2, 4, 9, 7), torch.randn(6, 2, 3, 2), torch.randn(6)
    got = impls.conv2d(x, w, b, stride=(2, 1), padding="valid", dilation=(1, 2), groups=2,
                       backend="myconv")
    want = F.conv2d(x, w, b, stride=(2, 1), dilation=(1, 2), groups=2)
    torch.testing.assert_close(got, want)


def test_entry_point_route_from_the_command_line(tmp_path):
    fake_install(tmp_path)
    path = (tmp_path, EXAMPLE / "src")
    listing = cli("list", "--format", "json", path=path)
    assert listing.returncode == 0, listing.stderr
    entries = {e["name"]: e for e in json.loads(listing.stdout)}
    assert entries["myconv"]["available"], entries["myconv"]["reason"]
    run = cli("check", "--backend", "myconv", "--case", "groups-3-rect", "--case",
              "same-even-dilated-4x2", path=path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "myconv: all passed" in run.stdout


def test_example_never_calls_torch_conv(monkeypatch, example_on_path):
    def forbidden(*args, **kwargs):
        raise AssertionError("the example must compute the conv itself")

    for module, name in ((F, "conv2d"), (torch, "conv2d"), (torch, "convolution")):
        monkeypatch.setattr(module, name, forbidden)
    cases = [CASES_BY_ID[i] for i in ("groups-4-stride-2", "dilation-3x1-pad-1x2",
                                      "same-even-kernel-2x4")]
    results = check_backend(EXAMPLE_SPEC, cases)
    assert [r.status for r in results] == [PASSED] * len(results), \
        [r.repro() for r in results if r.status != PASSED]


def test_example_supports_autograd_as_it_declares(example_on_path):
    x = torch.randn(1, 4, 6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)

    def conv(x, w, b):
        return impls.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2), groups=2,
                            backend=EXAMPLE_SPEC)

    assert torch.autograd.gradcheck(conv, (x, w, b))


# -- what a user's callable receives -------------------------------------------------------

RECORDER = """
    import torch.nn.functional as F

    calls = []

    def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        calls.append((input.shape, stride, padding, dilation, groups))
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)
"""


def test_user_callable_receives_normalised_arguments(user_module):
    name = user_module("cb_recorder", RECORDER)
    x, w = torch.randn(3, 7, 6), torch.randn(4, 3, 2, 4)  # unbatched; even kernel
    got = impls.conv2d(x, w, None, [1], "same", torch.Size([1]), np.int64(1),
                       backend=f"{name}:conv")
    (shape, stride, padding, dilation, groups), = sys.modules[name].calls
    # 4-D; PyTorch's odd "same" row/column (kernel 2x4: 1 and 3 in total) is already added.
    assert shape == (1, 3, 8, 7)
    assert (stride, padding, dilation, groups) == ((1, 1), (0, 1), (1, 1), 1)
    assert all(type(v) is int for v in (*stride, *padding, *dilation, groups))
    torch.testing.assert_close(got, F.conv2d(x, w, padding="same"))


VIEWER = """
    import torch.nn.functional as F

    def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        flat = weight.transpose(0, 1).view(-1)  # not contiguous: view raises inside torch
        return F.conv2d(input, flat.view_as(weight), bias, stride, padding, dilation, groups)
"""


def test_an_error_row_names_the_backend_s_line_that_raised(user_module):
    """"view size is not compatible..." alone does not say which of a backend's views it
    was: the reason names the deepest line outside torch the exception came through."""
    name = user_module("cb_viewer", VIEWER)
    result = check_case(f"{name}:conv", CASES_BY_ID["basic-3x3-pad1"], "exact")
    assert result.status == "error" and result.reason.startswith("RuntimeError: view size")
    assert result.reason.endswith(f"(at {sys.modules[name].__file__}:5, in conv)")


def test_a_tf32_comparison_s_repro_reruns_it_with_tf32(user_module):
    """Without --tf32 a TF32 failure's repro reran strict float32, which may pass."""
    from impls.backward import check_backward, result_from_dict
    from reports.correctness import repro

    name = user_module("cb_viewer2", VIEWER)
    forward = check_case(f"{name}:conv", CASES_BY_ID["basic-3x3-pad1"], "exact", tf32=True)
    assert forward.repro().endswith("--seed 0 --tf32 --direction forward")
    back = check_backward(f"{name}:conv", CASES_BY_ID["basic-3x3-pad1"], tf32=True)
    assert back.repro().endswith("--tf32 --direction backward-data")
    # The report reruns a failure with the checker's own command, read back from JSON.
    assert back.repro().endswith(f"repro: {back.command()}")
    assert repro(back.to_dict()) == back.command()
    assert result_from_dict(forward.to_dict()) == forward


# -- what cannot load is unavailable, with the reason --------------------------------------

BROKEN = """
    import cb_no_such_dependency  # noqa: F401

    def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        raise AssertionError("never loaded")
"""


@pytest.mark.parametrize(("spec", "reason"), [
    ("cb_no_such_package.conv:conv2d", "ModuleNotFoundError: No module named "
                                       "'cb_no_such_package'"),
    ("cb_broken:conv", "No module named 'cb_no_such_dependency'"),
    ("cb_recorder:missing", "AttributeError"),
    ("cb_recorder:calls", "is a list, not a callable"),
])
def test_what_cannot_load_is_unavailable_with_its_reason(spec, reason, user_module, capsys):
    user_module("cb_recorder", RECORDER)
    user_module("cb_broken", BROKEN)
    entry = impls.get_backend(spec)
    assert not entry.available and reason in entry.reason, entry.reason
    with pytest.raises(RuntimeError, match="unavailable"):
        impls.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2), backend=spec)
    assert main(["check", "--backend", spec]) == 2  # as the sweep: nothing could be checked
    assert reason in capsys.readouterr().err


def test_check_of_an_unloadable_backend_exits_2_with_the_reason_not_a_traceback():
    """Exit 2, bad usage, as `python -m benchmarks sweep` says of the same spec: a typo or a
    missing package. (A backend that loads but cannot run here, triton without a GPU,
    exits 1: its check failed to run.)"""
    run = cli("check", "--backend", "cb_no_such_package.conv:conv2d")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "No module named 'cb_no_such_package'" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout


def test_check_on_a_device_this_machine_lacks_exits_2_whatever_the_backend(capsys):
    """`--device cuda` without a GPU is bad usage for every backend: triton, whose probe
    says "no CUDA device" too, had exited 1 as if its check had failed."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    for backend in ("torch", "triton"):
        assert main(["check", "--backend", backend, "--device", "cuda"]) == 2
        assert "--device cuda, but" in capsys.readouterr().err


# -- declared capabilities -----------------------------------------------------------------

NO_GROUPS = """
    import torch.nn.functional as F

    def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        assert groups == 1, "declared: no groups"
        return F.conv2d(input, weight, bias, stride, padding, dilation)

    conv.convbench_capabilities = {"features": ("stride", "padding", "dilation", "bias")}
"""


def test_declared_missing_feature_skips_its_cases_with_the_reason(user_module, capsys):
    spec = f"{user_module('cb_no_groups', NO_GROUPS)}:conv"
    results = check_backend(spec, CASES)
    for result in results:
        grouped = "groups" in result.features
        assert result.status == (SKIPPED if grouped else PASSED), result.repro()
        if grouped:
            assert result.reason == f"{spec} does not support groups"
    with pytest.raises(NotImplementedError, match="does not support groups"):
        impls.conv2d(torch.ones(1, 2, 3, 3), torch.ones(2, 1, 1, 1), groups=2, backend=spec)
    assert main(["check", "--backend", spec, "--case", "groups-2", "--case", "valid-3x3"]) == 0
    out = capsys.readouterr().out
    assert f"skipped: {spec} does not support groups" in out and "all passed" in out


WRONG_GRADIENTS = """
import torch
import torch.nn.functional as F


class Doubled(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return 2 * grad


def conv(input, weight, bias, stride, padding, dilation, groups):
    return F.conv2d(Doubled.apply(input), weight, bias, stride, padding, dilation, groups)
"""


def test_a_repro_line_carries_where_a_users_module_was_found(user_module, tmp_path):
    """A repro pasted into a fresh shell must load the backend: a user's module from outside
    the working directory and site-packages brings its directory as PYTHONPATH; a
    registered name, or a module of the working directory, needs none."""
    from impls.checker import python_path

    spec = f"{user_module('cb_found_here', WRONG_GRADIENTS)}:conv"
    assert python_path(spec) == str(tmp_path.resolve())
    result = check_backend(spec, [CASES_BY_ID["valid-3x3"]], modes=("exact",))[0]
    assert result.command().startswith(  # the shell's own PYTHONPATH kept after it
        f"PYTHONPATH={tmp_path.resolve()}${{PYTHONPATH:+:$PYTHONPATH}} python -m impls ")
    assert python_path("torch") == "" and python_path("impls.builtin.naive:naive_conv2d") == ""


def test_the_default_check_covers_the_gradients_of_a_backend_with_autograd(user_module,
                                                                          capsys):
    """Right forward, doubled input gradient: "all passed" by default used to mean the
    forward pass only. Now the default checks what training uses, and the verdict line
    says what ran; --direction forward narrows it and says so."""
    spec = f"{user_module('cb_wrong_gradients', WRONG_GRADIENTS)}:conv"
    case = ["--case", "valid-3x3", "--mode", "exact", "--dtype", "float32", "--no-module"]
    assert main(["check", "--backend", spec, *case]) == 1
    out = capsys.readouterr().out
    assert "--direction backward-data" in out and "--direction backward-weights" not in out
    assert "1 failed (forward, backward-data, backward-weights; float32)" in out
    assert main(["check", "--backend", spec, *case, "--direction", "forward"]) == 0
    assert "all passed (forward; float32)" in capsys.readouterr().out


@pytest.mark.parametrize(("module", "capabilities", "reason"), [
    ("cb_caps_key", {"device": ("cpu",)}, "unknown keys ['device']; keys: ['accepts'"),
    ("cb_caps_feature", {"features": ("group",)}, "unknown features ['group']"),
    ("cb_caps_dtype", {"dtypes": ("float33",)}, "not torch dtypes: ['float33']"),
    ("cb_caps_device", {"devices": ("gpu",)}, "devices ['gpu']: the harness runs on"),
    ("cb_caps_model", {"exact": False, "error_model": "winograd"},
     "unknown error_model 'winograd'; models: direct, fft"),
    ("cb_caps_exact", {"exact": "false"}, "exact must be True or False, not 'false'"),
    ("cb_caps_macs", {"max_macs": "1e6"}, "max_macs must be a positive int or None"),
    ("cb_caps_accepts", {"accepts": "3x3"}, "accepts must be a callable or None, not str"),
    ("cb_caps_no_dtypes", {"dtypes": ()}, "dtypes is empty: name at least one"),
    ("cb_caps_no_devices", {"devices": []}, "devices is empty: name at least one"),
])
def test_bad_capabilities_make_an_unavailable_entry(module, capabilities, reason, user_module):
    name = user_module(module, f"""
        import torch.nn.functional as F

        def conv(*args):
            return F.conv2d(*args)

        conv.convbench_capabilities = {capabilities!r}
    """)
    entry = impls.get_backend(f"{name}:conv")
    assert not entry.available
    assert "bad convbench_capabilities" in entry.reason and reason in entry.reason, entry.reason


def test_capabilities_may_name_dtypes_and_give_single_strings(user_module):
    name = user_module("cb_caps_strings", """
        import torch.nn.functional as F

        def conv(*args):
            '''Only float64, only on the CPU.'''
            return F.conv2d(*args)

        conv.convbench_capabilities = {"dtypes": "float64", "devices": "cpu"}
    """)
    entry = impls.get_backend(f"{name}:conv")
    assert entry.available, entry.reason
    assert (entry.dtypes, entry.devices) == ((torch.float64,), ("cpu",))
    assert entry.description == "Only float64, only on the CPU."
    skipped = check_case(entry, CASES[0], dtype=torch.float32)
    assert skipped.status == SKIPPED and "does not support float32" in skipped.reason
    assert check_case(entry, CASES[0], dtype=torch.float64).status == PASSED


@pytest.mark.parametrize("capabilities, says", [
    ("{'accepts': lambda *problem: 1 / 0}", "ZeroDivisionError"),
    ("{'workspace': lambda *problem: 5}",
     "TypeError: cb_caps_raises:conv's workspace returned 5; it must return (bytes, what"),
    # A predicate where a reason is due: True ("accepted") read as the reason to refuse.
    ("{'accepts': lambda *problem: problem[1][2] == 3}",
     "TypeError: cb_caps_raises:conv's accepts returned True; it must return why (a str)"),
    ("{'stalls': lambda *problem: False}",
     "TypeError: cb_caps_raises:conv's stalls returned False; it must return why (a str)"),
])
def test_a_capability_callback_that_raises_is_an_error_not_a_crash(capabilities, says,
                                                                   user_module, capsys):
    """A user's accepts or workspace runs inside the checker: when it raises, each
    comparison is an ERROR naming it (exit 1), not a traceback that loses the summary."""
    name = user_module("cb_caps_raises", f"""
        import torch.nn.functional as F

        def conv(*args):
            return F.conv2d(*args)

        conv.convbench_capabilities = {capabilities}
    """)
    spec = f"{name}:conv"
    assert main(["check", "--backend", spec, "--case", "basic-3x3-pad1",
                 "--case", "module-3x3-pad1/zeros"]) == 1
    out = capsys.readouterr().out
    assert out.count("ERROR") >= 2 and "declared capabilities" in out and says in out, out
    result = check_backend_backward(spec, CASES[:1], ("backward-data",), ("exact",),
                                    (torch.float64,))[0]
    assert result.status == "error" and says in result.reason, result


def test_an_entry_point_taking_a_built_in_name_is_ignored_with_a_warning(tmp_path,
                                                                         monkeypatch):
    """Checking "torch" must check torch: a package registering that name (or a second
    package registering a taken one) is ignored, and the user is told so."""
    info = tmp_path / "shadow-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shadow\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{registry.ENTRY_POINT_GROUP}]\ntorch = shadow_mod:conv\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_SHADOWED", set())
    impls.backends()
    with pytest.warns(UserWarning, match="entry point torch = shadow_mod:conv .*ignored: "
                                         "'torch' is already a built-in backend's name"):
        registry._load_entry_points()
    assert impls.get_backend("torch").fn.__module__ == "impls.builtin.torch_native"


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default. A shell's background job (`bash
    .ci/run &`, nohup) ignores SIGINT, the ignoring is inherited, and a Python that starts
    with SIGINT ignored never turns it into KeyboardInterrupt: the check under test would
    hang on a Ctrl-C no user can send it, and the test with it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("form", ["table", "json"])
def test_an_interrupted_check_reports_what_it_checked(tmp_path, form):
    """Ctrl-C on a check stuck in a hanging kernel: the comparisons done so far are printed,
    with a verdict that says it is partial (JSON: "interrupted": true), exit 130, no
    traceback. The kernel says when it hangs, so the signal never lands mid-import."""
    hanging = tmp_path / "hanging"
    (tmp_path / "cb_hangs_later.py").write_text(textwrap.dedent(f"""
        import pathlib
        import time
        import torch.nn.functional as F

        calls = [0]

        def conv(*args):
            calls[0] += 1
            if calls[0] > 3:
                pathlib.Path({str(hanging)!r}).touch()
                time.sleep(3600)
            return F.conv2d(*args)
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, (str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH")))))
    child = subprocess.Popen([sys.executable, "-m", "impls", "check", "--backend",
                              "cb_hangs_later:conv", "--format", form], cwd=ROOT, env=env,
                             text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=_default_sigint, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not hanging.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        # To the process group, as a terminal's Ctrl-C: the check and the child running
        # the comparison (impls.isolated) both get it.
        os.killpg(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:  # nothing left sleeping behind a failed test
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode == 130, out + err
    assert "interrupted after" in err and "Traceback" not in err, err
    if form == "json":
        report = json.loads(out)
        assert report["interrupted"] and report["results"], report
    else:
        assert "of those run before the interruption (not all were)" in out, out


def test_every_way_of_declaring_is_checked_when_the_entry_is_made(isolated_registry,
                                                                   user_module):
    """Not only the capabilities dict: register_backend and a Backend object exported by a
    user's module are refused when made, not halfway through a check."""
    with pytest.raises(ValueError, match="unknown error_model 'winograd'"):
        impls.register_backend(F.conv2d, name="typo", exact=False, error_model="winograd")
    name = user_module("cb_backend_object", """
        import torch.nn.functional as F
        from impls.registry import Backend

        conv = Backend(name="mine", fn=F.conv2d, devices=("gpu",))
    """)
    entry = impls.get_backend(f"{name}:conv")
    assert not entry.available and "devices ['gpu']: the harness runs on" in entry.reason


def test_first_use_from_several_threads_finds_every_backend():
    """Threads that make the first lookups together wait for the registry to load (they
    used to see a half-filled one: "unknown backend 'unfold'; known backends: naive")."""
    run = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import threading, torch, impls
        x, w, errors = torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3), []

        def call(name):
            try:
                impls.conv2d(x, w, backend=name)
            except Exception as exc:
                errors.append(f"{name}: {exc}")

        names = ["unfold", "fft", "winograd-f2", "auto", "torch", "naive"] * 2
        threads = [threading.Thread(target=call, args=(n,)) for n in names]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print(errors)
    """)], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
        text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stdout + run.stderr


def test_a_spec_that_fails_to_load_is_not_kept(isolated_registry, user_module):
    """A mistyped "module:function" used to become a registered (unavailable) entry for
    the rest of the process: listed among the known backends, and still failing once the
    module existed."""
    import importlib

    spec = "cb_not_yet:conv"
    assert impls.get_backend(spec).load_error
    assert spec not in {e.name for e in impls.backends()}
    user_module("cb_not_yet", """
        import torch.nn.functional as F

        def conv(*args):
            return F.conv2d(*args)
    """)
    importlib.invalidate_caches()  # the failed import cached the directory's listing
    entry = impls.get_backend(spec)
    assert entry.available and spec in {e.name for e in impls.backends()}


def test_a_misspelt_function_of_an_unchanged_module_is_not_reloaded(isolated_registry):
    """The reload is for a file edited since its import: reloading torch for "torch:conv22"
    re-ran torch's __init__, which failed half-way with a message about TORCH_LIBRARY."""
    entry = impls.get_backend("torch:conv22")
    assert entry.load_error == ("cannot load: AttributeError: module 'torch' has no "
                                "attribute 'conv22'")
    assert impls.get_backend("torch.nn.functional:conv2d").available  # torch is intact


def test_a_misspelt_backend_is_bad_usage_for_the_test_suite_too():
    """It skipped every test of the backend and passed, where impls check exits 2."""
    for spec, says in (("cb_nowhere:conv", "--backend cb_nowhere:conv: cannot load"),
                       ("torhc", "unknown backend 'torhc' (did you mean 'torch'?)")):
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "tests/test_correctness.py", "--backend", spec],
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert run.returncode == 4 and says in run.stderr, run.stdout + run.stderr


def test_a_function_added_to_an_imported_module_is_found(isolated_registry, user_module):
    """The module imported, its function misspelt: once the file is fixed, the same process
    (a notebook) finds the function instead of asking the stale module again."""
    user_module("cb_misspelt", """
        import torch.nn.functional as F

        def cnov(*args):
            return F.conv2d(*args)
    """)
    spec = "cb_misspelt:conv"
    assert "has no attribute 'conv'" in impls.get_backend(spec).load_error
    user_module("cb_misspelt", """
        import torch.nn.functional as F

        def conv(*args):  # fixed, and the file's size changed: its cached bytecode is stale
            return F.conv2d(*args)
    """)
    assert impls.get_backend(spec).available


@pytest.mark.parametrize("misbehaviour, says", [
    ("time.sleep(3600)", "the comparison did not finish in 2 s (killed)"),
    ("ctypes.string_at(0)", "the comparison killed its process (signal 11)"),
    ("sys.exit(4)", "the comparison ended its process (exit status 4)"),  # not "signal 9"
])
def test_a_backend_that_hangs_or_crashes_costs_its_comparison_not_the_check(
        tmp_path, misbehaviour, says):
    """Each comparison runs in a child under --timeout (impls.isolated): a hang is killed, a
    segfault ends only its child, each is an ERROR with its repro, and the comparisons
    after it still run. In-process, either ended the check with nothing printed."""
    (tmp_path / "cb_misbehaves.py").write_text(textwrap.dedent(f"""
        import ctypes
        import sys
        import time
        import torch.nn.functional as F

        def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
            if groups > 1:
                {misbehaviour}
            print("a backend's own chatter", end="")  # never taken for a result line
            return F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    """))
    run = cli("check", "--backend", "cb_misbehaves:conv", "--case", "groups-2", "--case",
              "valid-3x3", "--mode", "exact", "--dtype", "float32", "--no-module",
              "--timeout", "2", "--format", "json", path=(tmp_path,))
    assert run.returncode == 1, run.stdout + run.stderr
    results = {r["case"]: r for r in json.loads(run.stdout)["results"]}
    assert results["groups-2"]["status"] == "error" and results["groups-2"]["reason"] == says
    assert results["valid-3x3"]["status"] == "passed"


def test_a_backend_that_hangs_on_every_call_is_given_up_after_three(tmp_path):
    """Each hang costs --timeout (120 s by default): over the whole table, about a day."""
    (tmp_path / "cb_hangs.py").write_text(textwrap.dedent("""
        import time

        def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
            time.sleep(3600)
    """))
    cases = ("valid-3x3", "groups-2", "basic-3x3-pad1", "stride-2x1-pad1", "dilation-2")
    run = cli("check", "--backend", "cb_hangs:conv", *(a for c in cases for a in ("--case", c)),
              "--mode", "exact", "--dtype", "float32", "--no-module", "--direction", "forward",
              "--timeout", "1", "--format", "json", path=(tmp_path,))
    assert run.returncode == 1, run.stdout + run.stderr
    reasons = [r["reason"] for r in json.loads(run.stdout)["results"]]
    assert reasons[:3] == ["the comparison did not finish in 1 s (killed)"] * 3, reasons
    assert reasons[3:] == ["not run: the 3 comparisons before it did not finish in 1 s each "
                           "(name cases with --case to run them)"] * 2, reasons


@pytest.mark.parametrize("misbehaviour, status, says", [
    ("time.sleep(3600)", "error", "the comparison did not finish in 2 s (killed)"),
    ("ctypes.string_at(0)", "error", "the comparison killed its process (signal 11)"),
    ("return out[..., 1:, :]", "failed", "output shape (2, 4, 8, 9), expected (2, 4, 9, 9)"),
])
def test_a_backend_that_misbehaves_on_a_nan_costs_that_comparison_only(tmp_path, misbehaviour,
                                                                       status, says):
    """The non-finite checks are not in the case table: a killed one was looked up there,
    and the check ended in a KeyError traceback with nothing printed; a wrong shape raised
    from the NaN comparison instead of failing it."""
    (tmp_path / "cb_nan.py").write_text(textwrap.dedent(f"""
        import ctypes
        import time
        import torch
        import torch.nn.functional as F

        def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
            out = F.conv2d(input, weight, bias, stride, padding, dilation, groups)
            if torch.isnan(input).any():
                {misbehaviour}
            return out
    """))
    run = cli("check", "--backend", "cb_nan:conv", "--case", "non-finite/nan", "--case",
              "valid-3x3", "--mode", "exact", "--dtype", "float32", "--no-module",
              "--timeout", "2", "--format", "json", path=(tmp_path,))
    assert run.returncode == 1, run.stdout + run.stderr
    results = {r["case"]: r for r in json.loads(run.stdout)["results"]}
    nan = results["non-finite/nan"]
    assert (nan["status"], nan["reason"]) == (status, says)
    assert nan["descriptor"].endswith("nan at input[0, 1, 4, 5]")
    assert nan["mode"] == "exact"  # --mode exact alone: its data and its row are exact-mode
    assert results["valid-3x3"]["status"] == "passed"


def test_a_name_with_colons_prints_verbatim(user_module, capsys):
    """rich turned ":a:" into an emoji and "[x]" into markup: "cb_colons:a" printed as
    "cb_colons🅰". Names, case ids and reasons are text."""
    spec = user_module("cb_colons", """
        import torch.nn.functional as F

        def a(*args):
            return F.conv2d(*args)
    """) + ":a"
    assert main(["check", "--backend", spec, "--case", "valid-3x3", "--mode", "exact",
                 "--dtype", "float32", "--no-module"]) == 0
    assert f"{spec}: all passed" in capsys.readouterr().out


def test_checking_nothing_is_a_failure_or_bad_usage_never_a_pass(capsys):
    """Options that select no comparison are bad usage (2); a backend that declares away
    every comparison asked for has nothing checked, which fails (1), as the README says."""
    assert main(["check", "--backend", "torch", "--case", "non-finite/nan", "--direction",
                 "backward-data"]) == 2
    assert "no comparison was selected" in capsys.readouterr().err
    assert main(["check", "--backend", "naive", "--case", "valid-3x3", "--dtype", "float16",
                 "--no-module"]) == 1
    assert "every comparison of naive was skipped" in capsys.readouterr().err
