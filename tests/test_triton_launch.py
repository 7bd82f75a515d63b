"""The triton backend's kernel replay (impls/builtin/_triton_launch.py).

Why: a replay skips Triton's own argument binding, so it launches the right kernel only if
the key holds everything Triton specialises on and the replayed arguments are the ones the
full path would pass. On the CPU the bookkeeping is checked with stand-ins for Triton's
kernel objects, and every launch site of the backend is checked to pass its kernel's
parameters the way a replay repeats them. On a GPU (``--device cuda``) replayed results are
compared bit for bit with launches through Triton, forward and gradients.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # as conftest.py, before the kernels load

from impls.builtin import _triton_launch, triton_conv  # noqa: E402

triton = pytest.importorskip("triton")

pytestmark = pytest.mark.triton


class Compiled:
    """Stands in for triton's CompiledKernel: ``compiled[grid](*args)`` launches."""

    def __init__(self, log):
        self.log = log

    def __getitem__(self, grid):
        return lambda *args: self.log.append(("replay", grid, args))


class Kernel:
    """Stands in for an autotuned kernel: its parameters, and the configuration it picks
    per call (as Autotuner.run sets best_config): BLOCK_M 64 below M = 250, else 128."""

    arg_names = ["x_ptr", "M", "N", "BLOCK", "FLAG", "BLOCK_M"]

    def __init__(self):
        self.log = []
        self.best_config = None

    def __getitem__(self, grid):
        def run(*args, **meta):
            self.best_config = triton.Config({"BLOCK_M": 64 if args[1] < 250 else 128})
            self.log.append(("launch", grid, args, meta))
            return Compiled(self.log)
        return run


def grid(meta):
    return (-(-meta["M"] // meta["BLOCK_M"]), 2)


@pytest.fixture(autouse=True)
def nothing_kept():
    _triton_launch.forget()
    yield
    _triton_launch.forget()


CPU = torch.device("cpu")


def test_a_problem_launches_through_triton_once_then_replays_its_kernel():
    kernel = Kernel()
    first = torch.zeros(8)
    assert not _triton_launch.replay_or_launch(kernel, grid, CPU, (first, 200, 3),
                                               {"BLOCK": 16, "FLAG": True})
    second = torch.ones(8)  # another tensor, same dtype and alignment: the same problem
    assert _triton_launch.replay_or_launch(kernel, grid, CPU, (second, 200, 3),
                                           {"FLAG": True, "BLOCK": 16})
    assert kernel.log[0] == ("launch", grid, (first, 200, 3), {"BLOCK": 16, "FLAG": True})
    # Every parameter in signature order, the constexprs and the configuration's included,
    # on the configuration's grid padded to three axes.
    assert kernel.log[1] == ("replay", (4, 2, 1), (second, 200, 3, 16, True, 64))
    # Another problem picks another configuration: its replay has that one's grid and value.
    _triton_launch.replay_or_launch(kernel, grid, CPU, (first, 300, 3), {"BLOCK": 16,
                                                                         "FLAG": True})
    _triton_launch.replay_or_launch(kernel, grid, CPU, (first, 200, 3), {"BLOCK": 16,
                                                                         "FLAG": True})
    _triton_launch.replay_or_launch(kernel, grid, CPU, (second, 300, 3), {"BLOCK": 16,
                                                                          "FLAG": True})
    assert kernel.log[3:] == [("replay", (4, 2, 1), (first, 200, 3, 16, True, 64)),
                              ("replay", (3, 2, 1), (second, 300, 3, 16, True, 128))]


@pytest.mark.parametrize("change", ["dtype", "alignment", "integer", "integer type",
                                    "constexpr", "grid argument", "fixed grid"])
def test_anything_triton_specialises_on_is_another_problem(change):
    kernel = Kernel()
    args, meta, grid_args, size = (torch.zeros(8), 200, 3), {"BLOCK": 16, "FLAG": True}, (1,), grid
    _triton_launch.replay_or_launch(kernel, grid, CPU, args, meta, grid_args)
    if change == "grid argument":
        grid_args = (2,)
    elif change == "fixed grid":
        _triton_launch.replay_or_launch(kernel, (4, 1), CPU, args, meta, grid_args)
        size = (5, 1)
    elif change == "dtype":
        args = (torch.zeros(8, dtype=torch.float16), 200, 3)
    elif change == "alignment":
        args = (torch.zeros(9)[1:], 200, 3)  # 4 bytes past a 16-byte boundary
    elif change == "integer":
        args = (torch.zeros(8), 201, 3)
    elif change == "integer type":
        args = (torch.zeros(8), 200.0, 3)
    elif change == "constexpr":
        meta = {"BLOCK": 32, "FLAG": True}
    assert not _triton_launch.replay_or_launch(kernel, size, CPU, args, meta, grid_args)
    assert {entry[0] for entry in kernel.log} == {"launch"}


def test_kept_kernels_are_bounded(monkeypatch):
    monkeypatch.setattr(_triton_launch, "MAX_KEPT", 2)
    kernel, meta = Kernel(), {"BLOCK": 16, "FLAG": True}
    for m in (100, 200, 300):
        _triton_launch.replay_or_launch(kernel, grid, CPU, (torch.zeros(8), m, 3), meta)
    assert _triton_launch.replay_or_launch(kernel, grid, CPU, (torch.zeros(8), 300, 3), meta)
    assert not _triton_launch.replay_or_launch(kernel, grid, CPU, (torch.zeros(8), 100, 3),
                                               meta)  # the oldest went first


def test_every_launch_site_passes_what_a_replay_repeats(monkeypatch):
    """Forward, input gradient, weight and bias gradients: each kernel gets its leading
    parameters positionally and every other one by name (its own or its configuration's),
    so a replay's constexpr tail is complete and in signature order."""
    device = "cpu" if triton_conv.INTERPRET else "cuda"
    reason = triton_conv.triton_conv2d.convbench_backend.unsupported(device=device)
    if reason:
        pytest.skip(reason)
    seen = []
    real = _triton_launch.launch

    def recording(kernel, grid, device, *args, grid_args=(), **meta):
        seen.append((kernel, args, meta))
        real(kernel, grid, device, *args, grid_args=grid_args, **meta)

    monkeypatch.setattr(triton_conv, "launch", recording)
    x = torch.randn(1, 4, 6, 6, device=device, requires_grad=True)
    w = torch.randn(5, 4, 3, 3, device=device, requires_grad=True)
    b = torch.randn(5, device=device, requires_grad=True)
    triton_conv.triton_conv2d(x, w, b, (1, 1), (1, 1), (1, 1), 1).sum().backward()
    kernels, bwd = triton_conv._kernels(), triton_conv._backward_kernels()
    expected = {kernels.conv2d_fwd, bwd.conv2d_dgrad, bwd.conv2d_wgrad,
                bwd.bias_partial_kernel, bwd.wgrad_reduce_kernel}
    if device == "cuda":  # NCHW operands and results go through the layout copy there
        expected.add(kernels.transpose_kernel)
    assert {id(kernel) for kernel, _, _ in seen} == {id(kernel) for kernel in expected}
    for kernel, args, meta in seen:
        names = kernel.arg_names
        config = getattr(kernel, "configs", [triton.Config({})])[0].kwargs
        # Launch options (num_warps) are compiled into the kernel, not parameters.
        params = (set(meta) | set(config)) - LAUNCH_OPTIONS
        assert not set(names[:len(args)]) & params
        assert set(names[len(args):]) == params, names


#: What a launch may pass beside a kernel's parameters: compiled in, never replayed.
LAUNCH_OPTIONS = {"num_warps", "num_stages", "num_ctas", "maxnreg"}


@pytest.mark.skipif(triton_conv.INTERPRET or not torch.cuda.is_available(),
                    reason="a replay launches a compiled kernel: CUDA only (the interpreter "
                           "compiles nothing)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [
    (2, 16, 9, 9, 24, 3, 3, (1, 1), (1, 1), (1, 1), 1),
    (2, 64, 14, 14, 32, 1, 1, (2, 2), (0, 0), (1, 1), 1),
    (1, 3, 20, 20, 8, 7, 7, (2, 2), (3, 3), (1, 1), 1),
    (2, 32, 8, 8, 32, 3, 3, (1, 1), (2, 2), (2, 2), 4),
], ids=["3x3", "1x1-stride2", "stem-7x7", "grouped-dilated"])
def test_replays_equal_launches_through_triton_bit_for_bit(monkeypatch, shape, dtype):
    n, c, h, w_, k, r, s, stride, padding, dilation, groups = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w_, generator=gen).to("cuda", dtype)
    w = torch.randn(k, c // groups, r, s, generator=gen).to("cuda", dtype)
    b = torch.randn(k, generator=gen).to("cuda", dtype)
    dy = None

    def run():
        nonlocal dy
        xs, ws, bs = (t.detach().requires_grad_() for t in (x, w, b))
        out = triton_conv.triton_conv2d(xs, ws, bs, stride, padding, dilation, groups)
        dy = torch.randn(out.shape, generator=gen).to("cuda", dtype) if dy is None else dy
        out.backward(dy)
        return [out.detach(), xs.grad, ws.grad, bs.grad]

    monkeypatch.setattr(_triton_launch, "REPLAY", False)  # whatever the default
    expected = run()  # through Triton (and its autotuner) every time
    # Every new float buffer starts as NaN: a replay that writes nothing (or too little)
    # cannot pass on the values a freed buffer of the previous round left in its memory.
    for name in ("empty", "empty_like"):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _real=real, **k: _nan(_real(*a, **k)))
    monkeypatch.setattr(_triton_launch, "REPLAY", True)
    replays = []
    keep = _triton_launch.replay_or_launch
    monkeypatch.setattr(_triton_launch, "replay_or_launch",
                        lambda *a: replays[-1].append(keep(*a)) or replays[-1][-1])
    for _ in range(3):  # launched and kept, then replayed twice
        replays.append([])
        for got, want in zip(run(), expected):
            assert torch.equal(got, want)
    # The first round launches through Triton (a repeated problem in it, such as two
    # layout copies of one shape, already replays); the later rounds replay every launch.
    first, *later = replays
    assert False in first and all(round_ == [True] * len(first) for round_ in later), replays


def _nan(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.fill_(float("nan")) if tensor.is_floating_point() else tensor
