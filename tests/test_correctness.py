"""Every backend against the float64 reference over the whole case table.

Both fill modes (exact integers: bit-for-bit for exact backends; random normal: the
tolerance table of impls.tolerances), in every dtype a backend declares (float32, float64,
float16, bfloat16; with --device cuda also float32 under TF32: see conftest.PRECISIONS). A
backend's declared gaps become skips with its reason; a failure's message is the one-line repro.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from impls.cases import CASES
from impls.checker import FAILED, PASSED, SKIPPED, CaseResult, check_case, judge
from impls.fill import MODES


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_forward_matches_reference(backend, case, mode, precision, device):
    dtype, tf32 = precision
    if device.startswith("cuda"):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
    result = check_case(backend, case, mode, dtype, device, seed=0, tf32=tf32)
    if result.status == SKIPPED:
        pytest.skip(result.reason)
    assert result.ok, result.repro()


def test_torch_is_held_to_bit_exactness_on_the_cpu_only():
    """cuDNN may pick an FFT or Winograd engine, so on CUDA torch gets the "cudnn" bound:
    the loosest of those methods', never tighter than direct's (no GPU needed to check)."""
    import numpy as np

    import impls
    from impls.checker import problem, runner
    from impls.tolerances import error_bound

    case = next(c for c in CASES if (c.r, c.s) == (3, 3) and c.bias)
    torch_entry = impls.get_backend("torch")
    assert runner(torch_entry, case, torch.float32, "cpu").exact
    on_gpu = runner(torch_entry, case, torch.float32, "cuda:0")
    assert (on_gpu.exact, on_gpu.error_model) == (False, "cudnn")
    assert impls.get_backend("torch").capabilities()["exact_on"] == {"cuda": False}

    rng = np.random.default_rng(0)
    x, w = rng.normal(size=case.input_shape), rng.normal(size=case.weight_shape)
    ref, absref = rng.normal(size=(4, 4)), rng.uniform(1, 2, size=(4, 4))
    bounds = {m: error_bound(m, torch.float32, "random", problem(case, x, w), ref, absref)
              for m in ("direct", "fft", "winograd-f4", "cudnn")}
    assert all((bounds["cudnn"] >= bounds[m]).all() for m in ("direct", "fft", "winograd-f4"))


@pytest.mark.parametrize("name", ["torch", "auto"])
def test_a_known_stall_is_skipped_with_its_reason_also_through_a_dispatcher(name):
    """torch's CPU float16 depthwise conv hangs on the 31x31 case (Backend.stalls); the
    checker runs cases in-process, so it must skip it, also when auto hands it to torch."""
    from impls.cases import CASES_BY_ID

    case = CASES_BY_ID["large-kernel-31-depthwise"]
    result = check_case(name, case, "exact", torch.float16, "cpu")
    assert result.status == SKIPPED and "does not finish" in result.reason
    assert check_case(name, case, "exact", torch.bfloat16, "cpu").ok


@pytest.mark.parametrize("out_hw, kernel, channels, stalls", [
    ((20, 31), 15, 2, True), ((31, 20), 15, 2, False), ((32, 32), 14, 2, False),
    ((32, 32), 31, 2, True), ((30, 30), 31, 2, False), ((31, 31), 15, 16, True),
    ((31, 31), 15, 17, False), ((56, 56), 31, 128, False), ((31, 31), 15, 1, False)])
def test_the_declared_stall_is_the_measured_region(out_hw, kernel, channels, stalls):
    """The edges measured on torch 2.13.0+cpu (see impls.builtin.torch_native.stalls): the
    rule must compute the output width the way conv2d does, with padding and stride."""
    from impls.builtin.torch_native import stalls as rule

    pad = kernel // 2
    size = tuple(o - 2 * pad + kernel - 1 for o in out_hw)
    args = ((1, channels, *size), (channels, 1, kernel, kernel), (1, 1), (pad, pad), (1, 1),
            channels)
    assert bool(rule(*args, torch.float16, "cpu")) == stalls
    assert not rule(*args, torch.bfloat16, "cpu") and not rule(*args, torch.float16, "cuda")


def test_no_shape_of_the_built_in_sweep_sets_is_a_declared_stall():
    """README says so: the stalls rule (2 to 16 channels) leaves every built-in set's
    depthwise shapes (64 and 128 channels) to be measured, in every direction."""
    from benchmarks import shapes
    from impls.builtin.torch_native import stalls as rule

    for name in shapes.shape_sets():
        for entry in shapes.shape_set(name):
            s = entry.spec
            args = (s.input_shape, s.weight_shape, s.stride, s.padding, s.dilation, s.groups)
            assert not rule(*args, torch.float16, "cpu"), (name, s.name)


def test_a_verdict_names_the_error_at_the_element_it_judged():
    """The element furthest over its bound is named with its own error and bound; the
    largest error, elsewhere under a looser bound, is reported beside it, not paired with
    another element's place and bound."""
    result = CaseResult(backend="b", case="c", mode="random", dtype="float32", device="cpu",
                        seed=0, status="")
    judge(result, np.array([0.5, 0.02]), np.zeros(2), np.array([1.0, 0.01]))
    assert result.status == FAILED and result.where == (1,)
    assert (result.error, result.bound, result.max_error) == (0.02, 0.01, 0.5)
    assert result.detail() == "|err|=0.02 at (1,) (bound 0.01); max|err|=0.5 elsewhere"
    # Passing: named by its share of its bound (0.5 of 1), not by the largest excess, which
    # fell on the tightest bound (0 of 0.1).
    judge(result, np.array([0.5, 0.0]), np.zeros(2), np.array([1.0, 0.1]))
    assert result.status == PASSED and result.where == (0,) and result.error == 0.5
