"""conv2d per backend x shape (x direction): time, peak memory and GFLOP/s, float32 on the CPU.

Parameters are data from elsewhere: every registered backend (``impls.backends()``, so a
plug-in shows up with no edit here) times a few shapes of ``benchmarks.shapes`` (below, with
why each is in). What a backend cannot run, or should not be asked to, raises
NotImplementedError in ``setup`` with the reason, and asv shows it as skipped.

``Forward``: the backend's own callable with the arguments the front end would hand it (a
4-D input, int pairs, symmetric padding: exactly what a ConvSpec gives), so argument
validation is not part of the number. ``Backward``: one gradient alone, ``direction``
"backward-data" (dL/dinput) or "backward-weights" (dL/dweight), as
impls.backward.gradient_call times it: the forward runs in ``setup``, the timed call replays
only the backward of its graph. It is a class of its own so that Forward's names and
parameters, and with them its asv history, stay as they were; and it times half the shapes,
so a full ``asv run`` stays a few minutes.
"""

from __future__ import annotations

import functools
import os

import torch

import impls
from benchmarks.shapes import shape_set
from impls.spec import ConvSpec

from . import thread_count

#: (shape set, layer name). Eight problems, so a full ``asv run`` takes a few minutes on
#: 2 cores, chosen for the regimes that rank the backends differently.
SHAPES = (
    ("resnet50", "resnet_50:conv1"),  # 7x7 stride 2 on 3 channels: im2col beats oneDNN here
    ("resnet50", "resnet_50:res2a_branch2b"),  # 3x3, 64 channels at 56x56: the common layer
    ("resnet50", "resnet_50:res4a_branch2c"),  # 1x1, 256->1024 at 14x14: a plain GEMM
    ("resnet50", "resnet_50:res5a_branch2b"),  # 3x3, 512 channels at 7x7: tiny image
    ("depthwise", "mobilenet_v1:dw3_128x56_s1"),  # depthwise 3x3: memory-bound
    ("depthwise", "mobilenet_v2:dw4_144x56_s2"),  # depthwise 3x3 stride 2
    ("large-kernel", "replknet31b:dw27_512x14"),  # depthwise 27x27: FFT's ground
    ("large-kernel", "large_kernel:dense17_32x64"),  # dense 17x17: FFT against oneDNN
)

#: The shapes Backward times: one per regime (3x3, 1x1 GEMM, depthwise, large dense).
BACKWARD_SHAPES = ("resnet_50:res2a_branch2b", "resnet_50:res4a_branch2c",
                   "mobilenet_v1:dw3_128x56_s1", "large_kernel:dense17_32x64")
#: impls.backward.DIRECTIONS, spelt out: asv imports this file against older commits too,
#: which have no impls.backward (their Backward cases are then skipped in setup).
BACKWARD_DIRECTIONS = ("backward-data", "backward-weights")

#: Multiply-adds one call may cost, per backend, on top of the backend's own ``max_macs``.
#: naive loops in Python over output positions (~25 us each): 20M keeps it to the depthwise
#: layers (20-80 ms a call) whatever the checker's cap becomes.
MAC_BUDGET = {"naive": 20_000_000}
#: The same for one gradient (Backward). naive's backward-data is autograd through its
#: per-position window slices, each adding a gradient the size of the whole input: 16.9 s a
#: call on dw3_128x56_s1 (3.6M multiply-adds), so no Backward shape fits; the sweep times it
#: where its budget guard allows.
BACKWARD_MAC_BUDGET = {"naive": 1_000_000}

DEVICE, DTYPE = "cpu", torch.float32


def _descriptors(names=None) -> list[str]:
    by_name = {}
    for set_name in dict.fromkeys(s for s, _ in SHAPES):
        by_name.update({e.spec.name: e.descriptor for e in shape_set(set_name)})
    return [by_name[name] for _, name in SHAPES if names is None or name in names]


def skip_reason(backend: impls.Backend, spec: ConvSpec, direction: str = "forward") -> str:
    """Why ``backend`` is not timed on ``spec`` in ``direction`` here, or "" when it is."""
    used = {"stride": spec.stride != (1, 1), "padding": spec.padding != (0, 0),
            "dilation": spec.dilation != (1, 1), "groups": spec.groups != 1,
            "autograd": direction != "forward"}
    reason = backend.unsupported(device=DEVICE, dtype=DTYPE,
                                 features=[name for name, yes in used.items() if yes])
    # The timed call bypasses the front end, so ask what it would: is the problem inside the
    # method (Winograd: 3x3 only)? Commits older than `refuses` (asv runs history) lack it.
    refuses = getattr(backend, "refuses", None)
    reason = reason or (refuses(spec.input_shape, spec.weight_shape, spec.stride,
                                spec.padding, spec.dilation, spec.groups) if refuses else "")
    if reason:
        return reason
    if backend.name == "triton" and os.environ.get("TRITON_INTERPRET") == "1":
        return "triton runs on the CPU interpreter (TRITON_INTERPRET=1): that times the interpreter"
    ours = (MAC_BUDGET if direction == "forward" else BACKWARD_MAC_BUDGET).get(backend.name)
    budgets = [b for b in (backend.max_macs, ours) if b is not None]
    if budgets and spec.macs > min(budgets):
        return (f"{backend.name}: {spec.macs:,} multiply-adds exceed its budget of "
                f"{min(budgets):,}")
    return ""


def _prepare(backend: str, shape: str, direction: str = "forward"):
    """(entry, spec, input, weight) for a benchmark's setup, or NotImplementedError why not."""
    # asv (asv_runner 0.3) re-runs setup before every timed sample: keep it cheap.
    torch.set_num_threads(thread_count())
    try:
        entry = impls.get_backend(backend)
    except ValueError as exc:  # a backend this commit does not have
        raise NotImplementedError(str(exc)) from None
    spec = ConvSpec.parse(shape)
    reason = skip_reason(entry, spec, direction)
    if reason:
        raise NotImplementedError(reason)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(spec.input_shape, generator=generator, dtype=DTYPE)
    w = torch.randn(spec.weight_shape, generator=generator, dtype=DTYPE)
    return entry, spec, x, w


def _gflops(call, flops: int) -> float:
    """benchdnn's FLOPs (taps on padding not counted: ConvSpec.flops) over the median of
    torch.utils.benchmark's blocked runs."""
    from torch.utils.benchmark import Timer

    timer = Timer("call()", globals={"call": call}, num_threads=torch.get_num_threads())
    return flops / timer.blocked_autorange(min_run_time=0.2).median / 1e9


class Forward:
    """One forward conv2d call of ``backend`` on the problem ``shape`` (a descriptor)."""

    params = [[b.name for b in impls.backends()], _descriptors()]
    param_names = ["backend", "shape"]
    timeout = 120.0

    def setup(self, backend: str, shape: str) -> None:
        entry, spec, x, w = _prepare(backend, shape)
        self.args = (x, w, None, spec.stride, spec.padding, spec.dilation, spec.groups)
        self.conv, self.flops = entry.fn, spec.flops

    def time_forward(self, backend: str, shape: str) -> None:
        self.conv(*self.args)

    def peakmem_forward(self, backend: str, shape: str) -> None:
        # asv records the process's peak RSS, torch's own ~250 MB included: compare backends.
        self.conv(*self.args)

    def track_gflops(self, backend: str, shape: str) -> float:
        """benchdnn's FLOPs (taps on padding not counted: ConvSpec.flops) over the median of
        torch.utils.benchmark's blocked runs."""
        return _gflops(functools.partial(self.conv, *self.args), self.flops)

    track_gflops.unit = "GFLOP/s"


class Backward:
    """One gradient of ``backend`` on ``shape``: dL/dinput ("backward-data") or dL/dweight
    ("backward-weights"), without the forward (see the module docstring). GFLOP/s counts
    the forward's FLOPs: every forward multiply-add has one counterpart in each gradient."""

    params = [[b.name for b in impls.backends()], _descriptors(BACKWARD_SHAPES),
              list(BACKWARD_DIRECTIONS)]
    param_names = ["backend", "shape", "direction"]
    timeout = 120.0

    def setup(self, backend: str, shape: str, direction: str) -> None:
        try:
            from impls.backward import gradient_call
        except ImportError:  # a commit from before backward timing existed
            raise NotImplementedError("this commit has no impls.backward.gradient_call") \
                from None
        entry, spec, x, w = _prepare(backend, shape, direction)
        self.call = gradient_call(entry, x, w, None, direction, **spec.conv_kwargs())
        self.flops = spec.flops

    def time_backward(self, backend: str, shape: str, direction: str) -> None:
        self.call()

    def peakmem_backward(self, backend: str, shape: str, direction: str) -> None:
        # The retained forward graph is in the peak too: compare backends, not directions.
        self.call()

    def track_gflops(self, backend: str, shape: str, direction: str) -> float:
        return _gflops(self.call, self.flops)

    track_gflops.unit = "GFLOP/s"


def track_threads() -> int:
    """The torch thread count the suite pins (recorded with every run's results)."""
    return thread_count()


track_threads.unit = "threads"
