"""Deliberately bad backends for tests/test_sweep.py, loaded as "sweep_backends:NAME".

Each misbehaves the way a broken kernel does, so the sweep's isolation is proven on the real
thing rather than on a mock: one hangs inside native code while holding the GIL (no Python
timeout can interrupt it), one segfaults, one raises, one is far too slow for the budget,
one raises a CUDA error that (as on a GPU) breaks every later call in its process, three
return what F.conv2d never would (an ndarray, float64 for float32, a row short), one
returns the right values in another layout (a transposed view's strides).
One gives up (NotImplementedError) after three calls, as a partner of ``--paired-with``.
Two decline politely: one declares (``accepts``) that it takes 1x1 kernels only, one raises
NotImplementedError; both must become skipped rows, not failures. For the backward
directions: one declares no autograd (its gradients must be skipped rows with that reason),
one has a backward far too slow for the budget (the guard must predict it from crops).
Not a test module (no test_ prefix); the test puts tests/ on PYTHONPATH for its subprocess.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time

import torch
import torch.nn.functional as F

from impls.registry import FEATURES, Backend


def hang(input, weight, bias, stride, padding, dilation, groups):
    """Sleeps an hour in libc through ctypes.PyDLL, which keeps the GIL held throughout."""
    ctypes.PyDLL(None).sleep(3600)


def crash(input, weight, bias, stride, padding, dilation, groups):
    """Reads address 0: SIGSEGV, as a kernel with a bad pointer would."""
    ctypes.string_at(0)


def fails(input, weight, bias, stride, padding, dilation, groups):
    raise RuntimeError("deliberate failure")


def exits(input, weight, bias, stride, padding, dilation, groups):
    """Ends its process at once, without a word (a native library's exit(0))."""
    os._exit(0)


def interrupts(input, weight, bias, stride, padding, dilation, groups):
    """Raises KeyboardInterrupt with no Ctrl-C (a wrapper that re-raises one it caught)."""
    raise KeyboardInterrupt


def numpy_out(input, weight, bias, stride, padding, dilation, groups):
    """The right numbers, as a NumPy array: fast to time, and not a conv2d result."""
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups).numpy()


def wrong_dtype(input, weight, bias, stride, padding, dilation, groups):
    """The right numbers in float64 for a float32 input."""
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups).double()


def drops_last_row(input, weight, bias, stride, padding, dilation, groups):
    """One output row short: a wrong shape on every problem, the budget guard's crops too."""
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups)[..., :-1, :]


def slow(input, weight, bias, stride, padding, dilation, groups):
    """F.conv2d plus 20 ms per output position: the budget guard must refuse it."""
    out = F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    time.sleep(0.02 * out.shape[-1] * out.shape[-2])
    return out


#: Set by ``cuda_error``: this process's (simulated) device is unusable from then on.
_device_lost = False


def cuda_error(input, weight, bias, stride, padding, dilation, groups):
    """Fails as a kernel with a bad address does on a GPU, which poisons the CUDA context
    for the rest of the process (simulated: ``after_cuda_error`` fails in that process)."""
    global _device_lost
    _device_lost = True
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


def after_cuda_error(input, weight, bias, stride, padding, dilation, groups):
    """F.conv2d in a fresh process; in one that saw ``cuda_error``, the error again."""
    if _device_lost:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups)


def not_implemented(input, weight, bias, stride, padding, dilation, groups):
    raise NotImplementedError("this backend has no such kernel")


def gives_up_later(input, weight, bias, stride, padding, dilation, groups):
    """F.conv2d while the sweep predicts and tries it (the budget guard's calls), then
    NotImplementedError once it is timed beside the case (bench_sweep.paired_rounds): a
    partner that fails only in the timed rounds. Found on the stack, not by counting
    calls, which the guard's probe varies with the shape."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "paired_rounds":
            raise NotImplementedError("gave up once timed")
        frame = frame.f_back
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups)


only_1x1 = Backend(name="sweep_backends:only_1x1", fn=F.conv2d,
                   accepts=lambda x, w, *rest: "" if w[2:] == (1, 1) else "kernels beyond 1x1")


no_autograd = Backend(name="sweep_backends:no_autograd", fn=F.conv2d,
                      features=FEATURES - {"autograd"})


class _SlowBackward(torch.autograd.Function):
    """F.conv2d forward; a backward that sleeps 20 ms per output position (its gradients
    are zeros: only the guard's prediction is under test)."""

    @staticmethod
    def forward(ctx, input, weight, stride, padding, dilation, groups):
        ctx.shapes = input.shape, weight.shape
        return F.conv2d(input, weight, None, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        time.sleep(0.02 * grad.shape[-1] * grad.shape[-2])
        wants = ctx.needs_input_grad
        return (*(torch.zeros(s) if w else None for s, w in zip(ctx.shapes, wants)),
                None, None, None, None)


def slow_backward(input, weight, bias, stride, padding, dilation, groups):
    return _SlowBackward.apply(input, weight, stride, padding, dilation, groups)


def channels_last_only(input, weight, bias, stride, padding, dilation, groups):
    """Computes only on NHWC operands (a kernel that indexes them as such), and says which
    layout it was handed when it is another."""
    for name, t in (("input", input), ("weight", weight)):
        if not t.is_contiguous(memory_format=torch.channels_last):
            raise RuntimeError(f"{name} is not channels_last: strides {t.stride()}")
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups)


def transposed_view(input, weight, bias, stride, padding, dilation, groups):
    """The right values, laid out column-major in each image plane: what impls.conv2d
    copies into F.conv2d's layout, so the sweep must time that copy too."""
    out = F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    return out.transpose(2, 3).contiguous().transpose(2, 3)
