"""Deliberately bad backends for tests/test_sweep.py, loaded as "sweep_backends:NAME".

Each misbehaves the way a broken kernel does, so the sweep's isolation is proven on the real
thing rather than on a mock: one hangs inside native code while holding the GIL (no Python
timeout can interrupt it), one segfaults, one raises, one is far too slow for the budget.
Two decline politely: one declares (``accepts``) that it takes 1x1 kernels only, one raises
NotImplementedError; both must become skipped rows, not failures.
Not a test module (no test_ prefix); the test puts tests/ on PYTHONPATH for its subprocess.
"""

from __future__ import annotations

import ctypes
import time

import torch.nn.functional as F

from impls.registry import Backend


def hang(input, weight, bias, stride, padding, dilation, groups):
    """Sleeps an hour in libc through ctypes.PyDLL, which keeps the GIL held throughout."""
    ctypes.PyDLL(None).sleep(3600)


def crash(input, weight, bias, stride, padding, dilation, groups):
    """Reads address 0: SIGSEGV, as a kernel with a bad pointer would."""
    ctypes.string_at(0)


def fails(input, weight, bias, stride, padding, dilation, groups):
    raise RuntimeError("deliberate failure")


def slow(input, weight, bias, stride, padding, dilation, groups):
    """F.conv2d plus 20 ms per output position: the budget guard must refuse it."""
    out = F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    time.sleep(0.02 * out.shape[-1] * out.shape[-2])
    return out


def not_implemented(input, weight, bias, stride, padding, dilation, groups):
    raise NotImplementedError("this backend has no such kernel")


only_1x1 = Backend(name="sweep_backends:only_1x1", fn=F.conv2d,
                   accepts=lambda x, w, *rest: "" if w[2:] == (1, 1) else "kernels beyond 1x1")
