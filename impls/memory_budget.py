"""The memory budget: how many bytes one conv2d call may ask for, and the refusal beyond it.

Why: im2col's column buffer (R*S times the input at stride 1) and FFT's padded spectra grow
far faster than a problem's tensors. A call that cannot fit should fail at once, naming the
numbers, not after minutes of swapping or at the hands of the OOM killer. A backend declares
a workspace model (``impls.registry.Backend.workspace``); the front end compares it with
the budget here before calling the backend, and the checker and sweeps skip such a case.

The budget is ``CONVBENCH_MEMORY_BUDGET`` when set ("4GiB", "512MiB", "1.5GB", "1000000",
or "unlimited"), else a share of what is free now: half of ``MemAvailable`` on the CPU (the
rest for the inputs, the caller's other tensors and other processes; page cache counts as
available but is not all free), 80% of ``torch.cuda.mem_get_info``'s free bytes on CUDA
(the caching allocator rounds up and fragments).

What it must not do: measure a call (benchmarks.memory does), or invent a budget it cannot
read: where neither the variable nor the operating system says, there is no budget.
"""

from __future__ import annotations

import os
import re
import time
from functools import lru_cache

import torch

ENV = "CONVBENCH_MEMORY_BUDGET"
CPU_SHARE, CUDA_SHARE = 0.5, 0.8
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_NUMBER = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*")


def parse_bytes(text: str) -> int | None:
    """Bytes from "4GiB", "512 MiB", "1.5GB" or "1000000"; None for "unlimited"."""
    if text.strip().lower() in ("unlimited", "none"):
        return None
    match = _NUMBER.fullmatch(text.lower())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"{ENV}={text!r} is not a byte count; write e.g. 4GiB, 512MiB, "
                         "1.5GB, 1000000 or unlimited")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def env_error() -> str:
    """Why ENV is not a byte count, or "" (unset, empty or valid): a command checks it at
    its start and exits 2, where a check would otherwise blame every backend with a memory
    model (its workspace callback raising) and pass those without one."""
    try:
        parse_bytes(os.environ.get(ENV, "").strip() or "unlimited")
    except ValueError as exc:
        return str(exc)
    return ""


def format_bytes(n: float) -> str:
    """1.0 KiB, 12.4 GiB: binary units, three significant digits."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.3g} TiB"


def budget(device: str | torch.device = "cpu") -> tuple[int | None, str]:
    """(bytes, where the number comes from) for one call on ``device``; None: no budget."""
    text = os.environ.get(ENV, "").strip()
    if text:  # set and not empty
        return parse_bytes(text), f"{ENV}={text}"
    device = torch.device(device)
    # Free memory is re-read at most once a second: the front end asks on every call.
    free, source = _free(device.type, device.index, int(time.monotonic()))
    if free is None:
        return None, "no free-memory figure on this device"
    share = CUDA_SHARE if device.type == "cuda" else CPU_SHARE
    return int(free * share), f"{share:.0%} of the {format_bytes(free)} {source}"


@lru_cache(maxsize=8)
def _free(kind: str, index: int | None, second: int) -> tuple[int | None, str]:
    if kind == "cuda":
        return torch.cuda.mem_get_info(index)[0], "free on the GPU"
    if kind != "cpu":
        return None, ""
    try:
        with open("/proc/meminfo") as f:
            match = re.search(r"^MemAvailable:\s*(\d+) kB", f.read(), re.M)
    except OSError:  # not Linux: no figure, so no default budget
        return None, ""
    return (int(match.group(1)) * 1024 if match else None), "available (MemAvailable)"


def refusal(backend: str, need: int, what: str, device: str | torch.device = "cpu") -> str:
    """Why ``backend`` must not take a call needing ``need`` bytes for ``what``, or ""."""
    limit, source = budget(device)
    if limit is None or need <= limit:
        return ""
    return (f"{backend} needs {format_bytes(need)} for {what} on this problem, over the "
            f"memory budget of {format_bytes(limit)} ({source}); set {ENV} to change it")
