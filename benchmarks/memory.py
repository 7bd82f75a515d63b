"""Peak memory of one conv call: what the call itself needed, above what it was handed.

Why not tracemalloc or torch.profiler: tracemalloc sees numpy but not torch's allocator;
the profiler sees torch's tensors but not numpy/scipy (the fft backend) nor oneDNN's own
scratch buffers. So on a CPU we measure what the operating system sees:

  CPU (Linux, glibc): the resident-set high-water mark (``VmHWM``) over one call, minus the
  resident set before it. Writing "5" to /proc/self/clear_refs resets the mark to the
  current RSS. For the measured call only, glibc is told to serve every allocation of 64 KiB
  or more with a fresh ``mmap`` (``mallopt``): otherwise a buffer could reuse heap pages
  an earlier case left resident and would not show. Counts only pages touched, whoever
  allocated them (torch, numpy, oneDNN, pocketfft), plus the output; misses blocks under
  64 KiB that fit in memory already resident (noise, at these sizes). Scratch that a
  backend keeps between calls (impls.builtin._scratch, _weight_cache) is given back first,
  so it counts.
  CUDA: ``torch.cuda.max_memory_allocated`` over one call minus the allocation before it
  (torch's caching allocator; cuDNN's workspace comes from it too).
Elsewhere the method is "none" and the value null, never a guess.

What it must not do: change malloc settings for the timed calls; they are restored at once
(except that glibc's *dynamic* mmap threshold stays at its initial 128 KiB afterwards; the
sweep runs with MALLOC_MMAP_MAX_=0, where no allocation is mmapped and that does not matter).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from collections.abc import Callable

import torch

from impls.builtin import _scratch, _weight_cache

# glibc's mallopt parameters (malloc.h).
_M_MMAP_THRESHOLD, _M_MMAP_MAX = -3, -4
_FRESH_MMAP_BYTES = 64 * 1024
_DEFAULT_MMAP_MAX, _DEFAULT_MMAP_THRESHOLD = 65536, 128 * 1024


def peak_memory(call: Callable[[], object], device: str) -> tuple[int | None, str]:
    """(bytes, method) of one call of ``call``; (None, "none") where it cannot be measured."""
    if device.startswith("cuda"):
        return _cuda_peak(call, torch.device(device)), "cuda-max-allocated"
    libc = _glibc()
    if libc is None or not _can_reset_hwm():
        call()
        return None, "none"
    return _rss_peak(call, libc), "rss-hwm"


def _cuda_peak(call, device) -> int:
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    out = call()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    del out
    return peak - before


def _rss_peak(call, libc) -> int:
    libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
    libc.mallopt(_M_MMAP_THRESHOLD, _FRESH_MMAP_BYTES)
    try:
        # Scratch and weight transforms kept between calls (impls.builtin._scratch,
        # _weight_cache) are memory the call needs: given back here, it shows again.
        _scratch.release()
        _weight_cache.clear()
        libc.malloc_trim(0)  # give back what earlier cases freed, so RSS starts low
        _reset_hwm()
        before = _status_bytes("VmRSS")
        out = call()
        peak = _status_bytes("VmHWM")
        del out
    finally:
        _restore_malloc(libc)
    return max(0, peak - before)


def _restore_malloc(libc) -> None:
    """Back to the settings the environment asked for (MALLOC_*_ variables), or glibc's own."""
    env = os.environ
    libc.mallopt(_M_MMAP_MAX, int(env.get("MALLOC_MMAP_MAX_", _DEFAULT_MMAP_MAX)))
    libc.mallopt(_M_MMAP_THRESHOLD, int(env.get("MALLOC_MMAP_THRESHOLD_",
                                                _DEFAULT_MMAP_THRESHOLD)))


def _glibc():
    if not os.path.exists("/proc/self/status"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc (musl, macOS): no mallopt/malloc_trim
        return None


def _can_reset_hwm() -> bool:
    try:
        _reset_hwm()
        return _status_bytes("VmHWM") is not None
    except OSError:
        return False


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _status_bytes(key: str) -> int | None:
    with open("/proc/self/status") as f:
        m = re.search(rf"^{key}:\s*(\d+) kB", f.read(), re.M)
    return int(m.group(1)) * 1024 if m else None
