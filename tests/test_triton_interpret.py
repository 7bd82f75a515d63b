"""The Triton conv kernels (forward and gradients) against float64: CPU interpreter or a GPU.

Why: CI has no GPU, but TRITON_INTERPRET=1 runs the very kernel source the GPU compiles, so
its index math, masks (padding, tile edges), strides, dilation and groups are checked here on
tiny shapes that cross every tile edge of the interpreter's 64x32x32 tile. On a machine with
CUDA (no interpreter) the same tests run the compiled kernel on the GPU, float32 strict.

Exact mode: small integers whose every partial sum is exact in fp32, so the result must equal
the reference bit for bit (half types: the reference rounded once to the dtype). Random mode:
normal data against the summation-error bound eps32 * (n + 2) * sum|x*w| (n the reduction
length C/g*R*S, any summation order), plus one rounding to the output dtype. Gradients are
checked the same way against torch autograd on F.conv2d in float64 (see "gradients" below).

What it must not do: set TRITON_INTERPRET where CUDA exists (the whole process would then
interpret), or import every built-in backend (only the one under test).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    # Same rule as conftest.py; repeated so this file also runs on its own. It must precede
    # the first import of the kernel module (triton.jit reads it at decoration).
    os.environ.setdefault("TRITON_INTERPRET", "1")

from impls.builtin import triton_conv  # noqa: E402
from impls.frontend import conv2d  # noqa: E402
from impls.reference import reference_conv2d  # noqa: E402

pytestmark = pytest.mark.triton
ENTRY = triton_conv.triton_conv2d.convbench_backend
DEVICE = "cpu" if triton_conv.INTERPRET else "cuda"

# id: (N, C, H, W, K, R, S, stride, padding, dilation, groups, bias)
CASES = {
    "3x3-pad1": (2, 4, 9, 7, 6, 3, 3, (1, 1), (1, 1), (1, 1), 1, True),
    "rect-kernel-stride-2x1": (2, 5, 11, 9, 7, 2, 3, (2, 1), (1, 0), (1, 1), 1, True),
    "dilation-2x3": (1, 3, 10, 12, 4, 3, 3, (1, 1), (2, 1), (2, 3), 1, False),
    "groups-3": (2, 6, 8, 8, 9, 3, 3, (1, 1), (1, 1), (1, 1), 3, True),
    "depthwise-stride2": (2, 8, 7, 9, 8, 3, 3, (2, 2), (1, 1), (1, 1), 8, True),
    "depthwise-x2-5x5": (1, 4, 6, 6, 8, 5, 5, (1, 1), (2, 2), (1, 1), 4, False),
    "channel-blocks-all-edges": (2, 40, 7, 6, 36, 3, 3, (1, 1), (1, 1), (1, 1), 1, True),
    "grouped-channel-blocks": (1, 72, 5, 5, 70, 3, 3, (1, 1), (1, 1), (1, 1), 2, True),
    "1x1-stride2": (2, 33, 7, 7, 40, 1, 1, (2, 2), (0, 0), (1, 1), 1, True),
    "stem-7x7-stride2": (1, 3, 16, 15, 8, 7, 7, (2, 2), (3, 3), (1, 1), 1, True),
    "kernel-fills-padded-input": (1, 3, 4, 5, 2, 6, 7, (1, 1), (1, 1), (1, 1), 1, True),
    "1x1-image-pad1": (2, 8, 1, 1, 5, 3, 3, (1, 1), (1, 1), (1, 1), 1, True),
    "stride-beyond-kernel": (1, 4, 13, 11, 3, 2, 2, (3, 3), (0, 0), (1, 1), 1, False),
    "batch-0": (0, 4, 5, 5, 3, 3, 3, (1, 1), (1, 1), (1, 1), 1, True),
    # The input gradient's stride phases: odd rows and columns that no tap reaches (stride
    # and dilation share a factor), and taps every 3rd/2nd row (stride/gcd(stride, dil)).
    "stride2-dilation2-empty-phases": (2, 6, 9, 10, 5, 3, 3, (2, 2), (2, 1), (2, 2), 1, True),
    "stride3x2-dilation2x3-groups2": (1, 4, 14, 13, 6, 5, 4, (3, 2), (2, 1), (2, 3), 2, True),
}
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@pytest.fixture(autouse=True)
def strict_fp32():
    """Strict fp32 dots on a GPU: TF32 is torch's default and would break exact mode."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = saved


def _skip_unless_runs(dtype=torch.float32):
    reason = ENTRY.unsupported(device=DEVICE, dtype=dtype)
    if reason:
        pytest.skip(reason)


def _make(case, mode, dtype, seed=0):
    n, c, h, w, k, r, s, stride, padding, dilation, groups, has_bias = case
    gen = torch.Generator().manual_seed(seed)
    shapes = [(n, c, h, w), (k, c // groups, r, s)] + ([(k,)] if has_bias else [])
    if mode == "exact":
        # |x|, |w| <= 3 over <= 360 taps: every partial sum < 2**12, exact in fp32's 24 bits.
        tensors = [torch.randint(-3, 4, shape, generator=gen).float() for shape in shapes]
    else:
        tensors = [torch.randn(shape, generator=gen) for shape in shapes]
    tensors = [t.to(dtype) for t in tensors]  # the reference sees exactly these values
    x, wt, b = tensors + [None] * (3 - len(tensors))
    return x, wt, b, (stride, padding, dilation, groups)


def _check(x, wt, b, args, mode, **kwargs):
    expect = reference_conv2d(x.double().numpy(), wt.double().numpy(),
                              None if b is None else b.double().numpy(), *args)
    dev = [t.to(DEVICE) if t is not None else None for t in (x, wt, b)]
    got = triton_conv.conv2d_forward(*dev, *args, **kwargs)
    assert got.dtype == x.dtype and tuple(got.shape) == expect.shape
    got = got.cpu().double().numpy()
    if mode == "exact":
        # Exact fp32 sums, then one rounding to the output dtype, like the kernel's cast.
        rounded = torch.from_numpy(expect).to(x.dtype).double().numpy()
        bad = got != rounded
        assert not bad.any(), f"{bad.sum()} of {bad.size} differ; first at " \
                              f"{np.argwhere(bad)[0]}: {got[bad][0]} vs {rounded[bad][0]}"
        return
    n_taps = wt.shape[1] * wt.shape[2] * wt.shape[3]
    abs_sum = reference_conv2d(np.abs(x.double().numpy()), np.abs(wt.double().numpy()),
                               None if b is None else np.abs(b.double().numpy()), *args)
    bound = (np.finfo(np.float32).eps * (n_taps + 2) * abs_sum
             + torch.finfo(x.dtype).eps * np.abs(expect))
    err = np.abs(got - expect)
    assert (err <= bound).all(), f"max error {err.max():.3g}, worst error/bound " \
                                 f"{(err / np.maximum(bound, 1e-300)).max():.3g}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("mode", ["exact", "random"])
@pytest.mark.parametrize("name", CASES)
def test_matches_reference(name, mode, dtype):
    _skip_unless_runs(dtype)
    x, wt, b, args = _make(CASES[name], mode, dtype)
    _check(x, wt, b, args, mode)


@pytest.mark.parametrize("flat_k", [False, True], ids=["channel-block-loop", "flat-loop"])
@pytest.mark.parametrize("name", ["groups-3", "channel-blocks-all-edges", "stem-7x7-stride2",
                                  "dilation-2x3"])
def test_both_reduction_loops(name, flat_k):
    """Each loop on shapes the default heuristic would give to the other one."""
    _skip_unless_runs()
    x, wt, b, args = _make(CASES[name], "exact", torch.float32, seed=1)
    _check(x, wt, b, args, "exact", flat_k=flat_k)


@pytest.mark.parametrize("layout", ["channels_last", "sliced"])
def test_input_layouts(layout):
    _skip_unless_runs()
    x, wt, b, args = _make(CASES["groups-3"], "exact", torch.float32, seed=2)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    else:
        x = torch.cat([x, x], dim=3)[..., ::2]  # every other column: non-unit strides
    _check(x, wt, b, args, "exact")


@pytest.mark.parametrize("shape", [
    (2, 3, 5, 7),     # the stem's 3 channels: one 16-row tile, mostly masked
    (2, 70, 9, 9),    # crosses the 64-row tile edge and the 64-column one
    (3, 66, 3, 3),    # a 3x3 weight (K x C x R x S): 9 "pixels" in a 16-column tile
    (1, 17, 1, 33),   # one row; channels past one 16-tile by one
])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_layout_copy_kernel(shape, dtype):
    """The transpose kernel both ways (every NCHW operand of a GPU call, and its result
    when F.conv2d's is NCHW, pass through it): torch's copy's values and strides, bit for
    bit."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3)).to(dtype).to(DEVICE)
    to_cl = triton_conv.transpose(x, to_channels_last=True)
    expect = x.contiguous(memory_format=torch.channels_last)
    assert to_cl.stride() == expect.stride() and torch.equal(to_cl, expect)
    back = triton_conv.transpose(expect, to_channels_last=False)
    assert back.is_contiguous() and torch.equal(back, x)


def test_result_in_f_conv2d_layout():
    """NCHW operands give an NCHW result, a channels_last input a channels_last one: what
    F.conv2d gives, so impls.conv2d has nothing to copy."""
    _skip_unless_runs()
    x, wt, b, args = _make(CASES["3x3-pad1"], "exact", torch.float32)
    x, wt = x.to(DEVICE), wt.to(DEVICE)
    assert triton_conv.conv2d_forward(x, wt, None, *args).is_contiguous()
    cl = x.contiguous(memory_format=torch.channels_last)
    got = triton_conv.conv2d_forward(cl, wt, None, *args)
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_takes_the_kernel_only_for_nchw_on_cuda():
    x = torch.randn(2, 4, 3, 5)
    already = x.contiguous(memory_format=torch.channels_last)
    assert triton_conv.channels_last(already) is already
    sliced = torch.stack([x, x], dim=-1)[..., 0]  # neither layout: torch's copy
    assert torch.equal(triton_conv.channels_last(sliced), x)
    assert triton_conv.channels_last(x).is_contiguous(memory_format=torch.channels_last)


def test_front_end_same_padding_unbatched():
    """Through impls.conv2d: "same" with an even kernel (extra row/column) and 3-D input."""
    _skip_unless_runs()
    x = torch.randint(-3, 4, (5, 9, 8)).float()
    wt = torch.randint(-3, 4, (6, 5, 4, 2)).float()
    got = conv2d(x.to(DEVICE), wt.to(DEVICE), padding="same", dilation=(1, 3), backend=ENTRY)
    expect = torch.nn.functional.conv2d(x, wt, padding="same", dilation=(1, 3))
    assert torch.equal(got.cpu(), expect)


def test_capabilities_follow_the_interpreter():
    assert "autograd" in ENTRY.features
    if triton_conv.INTERPRET:
        assert "cpu" in ENTRY.devices and ENTRY.max_macs
        assert torch.bfloat16 not in ENTRY.dtypes  # the interpreter's bf16 dot is garbage
    else:
        assert ENTRY.devices == ("cuda",) and ENTRY.max_macs is None


def test_probe_explains_missing_device(monkeypatch):
    monkeypatch.setattr(triton_conv, "INTERPRET", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    reason = triton_conv._probe()
    assert reason == triton_conv._NO_DEVICE or reason.startswith("triton is not")


@pytest.mark.parametrize("triton_version, numpy_version, gap", [
    ("3.6.0", "2.4.6", True),     # int() of a 1-element array: an error since NumPy 2.4
    ("3.6.0", "2.3.5", False),
    ("3.7.0", "2.4.6", False),    # 3.7 squeezes first
    ("3.10.1+git", "2.5.0", False),
])
def test_interpreter_gap_is_declared_not_hit(monkeypatch, triton_version, numpy_version, gap):
    monkeypatch.setattr(np, "__version__", numpy_version)
    reason = triton_conv._interpreter_gap(triton_version)
    assert bool(reason) == gap
    if gap:
        assert triton_version in reason and numpy_version in reason and "3.7" in reason


def test_fp32_precision_follows_cudnn_flag():
    torch.backends.cudnn.allow_tf32 = True
    assert triton_conv.fp32_input_precision() == "tf32"
    torch.backends.cudnn.allow_tf32 = False
    assert triton_conv.fp32_input_precision() == "ieee"


# ---- gradients ------------------------------------------------------------------------------
# The reference is torch autograd on F.conv2d in float64 (exact on integer data); the sum of
# |terms| behind each gradient, for the random-mode bound, is the same gradient computed
# from |x|, |w|, |grad_out|. Reduction lengths: K/g*R*S (input), N*P*Q (weight and bias).

def _reference_grads(x, wt, b, dy, args):
    leaves = [t.double().requires_grad_() for t in (x, wt) + ((b,) if b is not None else ())]
    bias = leaves[2] if b is not None else None
    out = torch.nn.functional.conv2d(leaves[0], leaves[1], bias, *args)
    return [g.numpy() for g in torch.autograd.grad(out, leaves, dy.double())]


def _grad_out(x, wt, b, args, mode, dtype, seed):
    shape = torch.nn.functional.conv2d(x.float(), wt.float(), None, *args).shape
    gen = torch.Generator().manual_seed(seed + 100)
    if mode == "exact":
        # |x|, |w|, |dy| <= 3 and every reduction here is < 2**12 terms: exact in fp32.
        return torch.randint(-3, 4, shape, generator=gen).to(dtype)
    return torch.randn(shape, generator=gen).to(dtype)


def _check_grads(x, wt, b, args, mode, seed=0, need=(True, True, True), **backward_kwargs):
    dy = _grad_out(x, wt, b, args, mode, x.dtype, seed)
    expect = _reference_grads(x, wt, b, dy, args)
    need = need[:len(expect)]
    if backward_kwargs:  # the launchers directly, to force a loop or a split
        gx = triton_conv.conv2d_backward_data(dy.to(DEVICE), wt.to(DEVICE), x.shape, *args,
                                              flat_k=backward_kwargs.get("flat_k"))
        gw, gb = triton_conv.conv2d_backward_weight(
            dy.to(DEVICE), x.to(DEVICE), wt.to(DEVICE), *args, bias_grad=b is not None,
            split=backward_kwargs.get("split"))
        got = [gx, gw, gb][:len(expect)]
    else:  # through impls.conv2d and autograd, as a training step does
        leaves = [t.to(DEVICE).requires_grad_(n) if t is not None else None
                  for t, n in zip((x, wt, b), need + (False,) * 3)]
        out = conv2d(*leaves, *args, backend=ENTRY)
        out.backward(dy.to(DEVICE))
        got = [t.grad if t is not None else None for t in leaves][:len(expect)]
    bounds = None
    if mode == "random":
        absolute = [t.abs() if t is not None else None for t in (x, wt, b, dy)]
        sums = _reference_grads(*absolute[:3], absolute[3], args)
        p, q = dy.shape[2:]
        lengths = (wt.shape[0] // args[3] * wt.shape[2] * wt.shape[3],) + (x.shape[0] * p * q,) * 2
        bounds = [np.finfo(np.float32).eps * (length + 2) * total
                  for length, total in zip(lengths, sums)]
    for name, want, grad, e, bound in zip(("input", "weight", "bias"), need, got, expect,
                                          bounds or [None] * 3):
        if not want:
            assert grad is None, f"{name} gradient computed though not asked for"
            continue
        assert grad.dtype == x.dtype and tuple(grad.shape) == e.shape, name
        grad = grad.detach().cpu().double().numpy()
        if mode == "exact":
            rounded = torch.from_numpy(e).to(x.dtype).double().numpy()
            bad = grad != rounded
            assert not bad.any(), f"{name}: {bad.sum()} of {bad.size} differ; first at " \
                                  f"{np.argwhere(bad)[0]}: {grad[bad][0]} vs {rounded[bad][0]}"
        else:
            err = np.abs(grad - e)
            bound = bound + torch.finfo(x.dtype).eps * np.abs(e)
            assert (err <= bound).all(), f"{name}: max error {err.max():.3g}, worst " \
                f"error/bound {(err / np.maximum(bound, 1e-300)).max():.3g}"


@pytest.mark.parametrize("mode", ["exact", "random"])
@pytest.mark.parametrize("name", CASES)
def test_gradients_match_reference(name, mode):
    _skip_unless_runs()
    x, wt, b, args = _make(CASES[name], mode, torch.float32, seed=3)
    _check_grads(x, wt, b, args, mode, seed=3)


@pytest.mark.parametrize("name", ["groups-3", "stride2-dilation2-empty-phases"])
def test_gradients_float16(name):
    """The half path: fp32 sums, one rounding to float16 per gradient."""
    _skip_unless_runs(torch.float16)
    x, wt, b, args = _make(CASES[name], "exact", torch.float16, seed=4)
    _check_grads(x, wt, b, args, "exact", seed=4)


@pytest.mark.parametrize(("flat_k", "split"), [(False, 1), (True, 3), (False, 7)],
                         ids=["channel-block-loop-split1", "flat-loop-split3",
                              "channel-block-loop-split7"])
@pytest.mark.parametrize("name", ["channel-blocks-all-edges", "stride3x2-dilation2x3-groups2"])
def test_gradient_loops_and_splits(name, flat_k, split):
    """Each input-gradient loop on shapes the default would give to the other; the weight
    gradient in 1, 3 or 7 pixel chunks (not whole tiles: partial tiles, partial sums)."""
    _skip_unless_runs()
    x, wt, b, args = _make(CASES[name], "exact", torch.float32, seed=5)
    _check_grads(x, wt, b, args, "exact", seed=5, flat_k=flat_k, split=split)


@pytest.mark.parametrize("need", [(True, False, False), (False, True, False),
                                  (False, False, True), (False, True, True)],
                         ids=["input", "weight", "bias", "weight-bias"])
def test_only_requested_gradients(need):
    """A frozen layer or the first layer's input: only the asked-for gradients, still right."""
    _skip_unless_runs()
    x, wt, b, args = _make(CASES["rect-kernel-stride-2x1"], "exact", torch.float32, seed=6)
    _check_grads(x, wt, b, args, "exact", seed=6, need=need)


def test_gradient_layouts():
    """grad_weight keeps the weight's layout; an expanded grad_out (from .sum()) works."""
    _skip_unless_runs()
    x, wt, b, args = _make(CASES["groups-3"], "exact", torch.float32, seed=7)
    ones = torch.ones(torch.nn.functional.conv2d(x, wt, b, *args).shape)
    expect = _reference_grads(x, wt, b, ones, args)[1]
    for weight in (wt, wt.contiguous(memory_format=torch.channels_last)):
        leaf = weight.to(DEVICE).requires_grad_()
        conv2d(x.to(DEVICE), leaf, b.to(DEVICE), *args, backend=ENTRY).sum().backward()
        assert leaf.grad.stride() == leaf.stride()
        assert np.array_equal(leaf.grad.cpu().double().numpy(), expect)


def test_backward_is_not_twice_differentiable():
    _skip_unless_runs()
    x, wt, b, args = _make(CASES["3x3-pad1"], "exact", torch.float32)
    leaf = x.to(DEVICE).requires_grad_()
    out = conv2d(leaf, wt.to(DEVICE), None, *args, backend=ENTRY)
    (grad,) = torch.autograd.grad(out.sum(), leaf, create_graph=True)
    with pytest.raises(RuntimeError):
        grad.sum().backward()


def test_rotation_gives_each_problem_one_config_and_the_suite_all_of_them(monkeypatch):
    """Under CONVBENCH_TRITON_CONFIGS=rotate (the suite's setting) a GPU run compiles one
    tile configuration per problem: the same one in every process (xdist workers share
    Triton's compile cache), and every configuration for some problem of the suite."""
    from impls.builtin import _triton_kernels as kernels

    configs = kernels._triton_configs(kernels.GPU_CONFIGS)
    key = ["M", "CG", "KG", "H", "W", "R", "S"]
    pick = kernels.rotation(key)
    problems = [dict(M=n * h * h, CG=c, KG=c, H=h, W=h, R=r, S=r)
                for n in (1, 2, 4) for c in (3, 16, 32, 64) for h in (7, 9, 14) for r in (1, 3)]
    picked = [pick(configs, p, x_ptr=torch.empty(0, dtype=torch.float16)) for p in problems]
    assert all(len(p) == 1 for p in picked)
    assert picked == [pick(configs, p, x_ptr=torch.empty(0, dtype=torch.float16))
                      for p in problems]
    assert {id(p[0]) for p in picked} == {id(c) for c in configs}
    monkeypatch.setattr(kernels, "ROTATE", True)
    tuner = kernels.autotuned(kernels.conv2d_fwd_kernel, configs, key)
    assert tuner.early_config_prune is not None
    assert tuner.do_bench(lambda: 1 / 0, quantiles=(0.5, 0.2, 0.8)) == [0.0] * 3  # no run
    monkeypatch.setattr(kernels, "ROTATE", False)
    assert kernels.autotuned(kernels.conv2d_fwd_kernel, configs, key).early_config_prune is None


def test_tiles_for_half_types_are_pruned_for_float32(monkeypatch):
    """GPU_CONFIGS_16BIT would not fit shared memory in float32: the forward's pruning hook
    keeps them out of float32 problems, with and without the suite's rotation, and offers
    them to float16 and bfloat16 ones."""
    from impls.builtin import _triton_kernels as kernels

    plain = kernels._triton_configs(kernels.GPU_CONFIGS)
    wide = kernels._triton_configs(kernels.GPU_CONFIGS_16BIT)
    prune = kernels.half_types_only(wide)

    def x(dtype):
        return {"x_ptr": torch.empty(0, dtype=dtype)}

    assert prune(plain + wide, x(torch.float32)) == plain
    assert prune(plain + wide, x(torch.bfloat16)) == plain + wide
    assert prune(plain + wide, x(torch.float16)) == plain + wide
    monkeypatch.setattr(kernels, "ROTATE", True)
    key = ["M"]
    tuner = kernels.autotuned(kernels.conv2d_fwd_kernel, plain + wide, key, prune=prune)
    wide_ids = {id(c) for c in wide}

    def picks(dtype):
        return {id(tuner.early_config_prune(tuner.configs, {**x(dtype), "M": m})[0])
                for m in range(200)}

    assert not picks(torch.float32) & wide_ids
    assert picks(torch.bfloat16) >= wide_ids


def test_forward_mode_ad_is_refused_not_dropped():
    """Without reverse-mode gradients the kernel launches directly, but inside forward-mode
    AD it still goes through the autograd Function, which refuses tangents it has no jvp
    for: a dual input must never come back as a plain result."""
    _skip_unless_runs()
    import torch.autograd.forward_ad as fwAD

    x = torch.randn(1, 4, 6, 6, device=DEVICE)
    w = torch.randn(5, 4, 3, 3, device=DEVICE)
    with fwAD.dual_level(), pytest.raises(RuntimeError, match="jvp"):
        triton_conv.triton_conv2d(fwAD.make_dual(x, torch.randn_like(x)), w, None,
                                  (1, 1), (1, 1), (1, 1), 1)


def test_the_gpu_forward_prunes_half_type_tiles_for_float32():
    """The wiring the interpreter cannot show (it has one tile and no pruning): in a fresh
    process with the GPU kernels, the forward's autotuner offers GPU_CONFIGS_16BIT to
    bfloat16 inputs and keeps them from float32 ones."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import torch\n"
        "from impls.builtin import _triton_kernels as k\n"
        "fwd = k.conv2d_fwd\n"
        "def offered(dtype):\n"
        "    named = dict.fromkeys(fwd.arg_names)\n"
        "    named['x_ptr'] = torch.empty(0, dtype=dtype)\n"
        "    return len(fwd.early_config_prune(fwd.configs, named))\n"
        "print(repr((offered(torch.float32), offered(torch.bfloat16), len(fwd.configs),"
        " len(k.GPU_CONFIGS), len(k.GPU_CONFIGS_16BIT))))\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRITON_INTERPRET", "CONVBENCH_TRITON_CONFIGS")}
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    fp32, bf16, total, plain, wide = eval(run.stdout.strip().splitlines()[-1])
    assert wide and total == plain + wide
    assert fp32 == plain and bf16 == total
