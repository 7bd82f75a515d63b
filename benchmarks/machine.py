"""The machine a sweep ran on: what it is, and what it can do at best (measured, not quoted).

Why measured: a GFLOP/s number means little without the machine's own ceiling, and a
datasheet peak is neither reachable nor known for every CPU. So once per run the harness
times a large GEMM (its peak GFLOP/s in the sweep's dtype; the size is recorded) and a large
copy (its memory bandwidth), and every result is shown as a fraction of those, and placed on
a roofline.

Also recorded, because each changes a conv's speed: thread count (pinned by the caller),
library versions, the malloc settings, the load average when measured (another process on
a 2-core machine halves every number), and on a GPU its name, driver, CUDA, cuDNN and the
TF32 setting. What it must not do: change any setting; the caller pins threads and TF32.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import time
from pathlib import Path

import torch

from benchmarks import records

#: Environment variables that change what a run measures, recorded as they were.
ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_",
            "MALLOC_ARENA_MAX", "TRITON_INTERPRET", "CUDA_VISIBLE_DEVICES",
            "CUBLAS_WORKSPACE_CONFIG")
#: Square GEMM size at most: large enough to run at full speed (about 90 ms on 2 cores in
#: fp32), and reached unless the dtype is much slower than that (see peak_gemm).
GEMM_N = {"cpu": 2048, "cuda": 8192}
#: The size tried first, and the longest call a larger size may take (see peak_gemm).
GEMM_MIN_N, GEMM_CALL_S = 256, 0.5
#: Copy size: far beyond any cache, so the copy runs from memory.
COPY_BYTES = {"cpu": 256 * 2**20, "cuda": 2 * 2**30}
#: Seconds spent measuring each of the two; the best of the calls is the peak.
MEASURE_S = 0.5


def _best_seconds(fn, device: str, seconds: float = MEASURE_S, min_calls: int = 3) -> float:
    """The fastest synchronised call after one warm-up call: a peak is the best the machine
    does, and the fastest call is the one least disturbed by anything else."""
    from benchmarks.timer import time_once

    time_once(fn, device)
    best, start, calls = float("inf"), time.perf_counter(), 0
    while calls < min_calls or time.perf_counter() - start < seconds:
        best, calls = min(best, time_once(fn, device)), calls + 1
    return best


def peak_gemm(device: str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[float, int]:
    """(GFLOP/s, n) of a large square matrix product (2 n^3 FLOPs) in ``dtype``, on all
    threads, and the size n it was measured at (recorded: peaks of two sizes differ).

    The size doubles from GEMM_MIN_N up to GEMM_N while a call of the next size would stay
    under GEMM_CALL_S: a dtype the CPU has no arithmetic for runs far from the float32 peak
    (float16 on an AVX-512 Xeon without FP16: 0.4 GFLOP/s, 40 s for one 2048 product, so a
    float16 sweep of one tiny case spent three minutes measuring its machine)."""
    from benchmarks.timer import time_once

    n, cap = GEMM_MIN_N, GEMM_N["cuda" if device.startswith("cuda") else "cpu"]
    while True:
        g = torch.Generator().manual_seed(0)
        a, b = (torch.randn(n, n, generator=g).to(device=device, dtype=dtype) for _ in range(2))
        out = torch.empty(n, n, device=device, dtype=dtype)
        call = functools.partial(torch.mm, a, b, out=out)
        time_once(call, device)  # lazy setup
        # The fastest of three: one call that another process stalled would stop the growth
        # at a size that depends on the moment, and so would the peak it measures.
        if n >= cap or 8 * min(time_once(call, device) for _ in range(3)) > GEMM_CALL_S:
            break
        n *= 2
    return 2 * n**3 / _best_seconds(call, device) / 1e9, n


def bandwidth_gbps(device: str = "cpu") -> float:
    """GB/s of a large copy, counting the bytes read and the bytes written."""
    nbytes = COPY_BYTES["cuda" if device.startswith("cuda") else "cpu"]
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    return 2 * nbytes / _best_seconds(lambda: dst.copy_(src), device) / 1e9


def describe(device: str = "cpu") -> dict:
    """Everything about this machine that is not a measurement."""
    info = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_parallel": torch.__config__.parallel_info().splitlines()[-1].strip(),
        "onednn": _version_in(torch.__config__.show(), r"(?:oneDNN|MKL-DNN) v(\S+)"),
        "blas": _version_in(torch.__config__.show(), r"BLAS_INFO=(\w+)"),
        "libraries": _versions("numpy", "scipy", "triton", "pytest_benchmark"),
        "env": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
        "loadavg_1min": load_average(),
    }
    if device.startswith("cuda"):
        info["gpu"] = _gpu(torch.device(device))
    return info


def measure(device: str = "cpu", dtype: torch.dtype = torch.float32) -> dict:
    """describe() plus the measured peak GFLOP/s and bandwidth, and an id for the pair."""
    info = describe(device)
    info["device"] = device
    info["dtype"] = str(dtype).removeprefix("torch.")
    peak, info["peak_gemm_n"] = peak_gemm(device, dtype)
    info["peak_gflops"] = round(peak, 2)
    info["bandwidth_gbps"] = round(bandwidth_gbps(device), 2)
    info["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    info["id"] = machine_id(info)
    return info


def machine_id(info: dict) -> str:
    """A short id for what makes numbers comparable: host, CPU, GPU, threads, versions."""
    keys = ("host", "cpu", "torch", "torch_threads", "device", "dtype", "gpu", "env")
    text = json.dumps({k: info.get(k) for k in keys}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def same_machine(a: dict, b: dict) -> bool:
    """True when a recorded machine is this one, as far as the numbers are concerned."""
    return machine_id(a) == machine_id(b)


def cpu_ticks() -> tuple[int, int] | None:
    """(steal, wanted) of this machine's CPU time so far, in clock ticks (/proc/stat's first
    line): wanted is the time spent running or stolen, idle left out (the hypervisor takes
    time only from a vCPU that wants to run, so a case using one of two CPUs would read
    half its loss), or None where the kernel does not say (not Linux)."""
    fields = _read("/proc/stat").split("\n", 1)[0].split()
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
    return steal, user + nice + system + irq + softirq + steal


def stolen(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of the CPU time wanted between two cpu_ticks() that the hypervisor gave to
    other guests (steal time), or None where unknown or too little to tell (under 20
    ticks, ~0.2 s of CPU).

    Why: on a shared VM, a case timed while the host runs other guests is slowed in a way
    no process on this machine shows: the load average stays low, and the rounds can even
    agree with each other (a quota that parks the vCPUs makes every round take 8, 16 or
    32 ms), so their spread does not give it away. Steal time does."""
    if before is None or after is None or after[1] - before[1] < 20:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


#: Steal above this share of a case's CPU time marks its row (its reason) as disturbed.
STEAL_NOISY = records.STEAL_NOISY


def cpu_use() -> tuple[int, int, float] | None:
    """(busy ticks of the CPUs this process may use, its own ticks, monotonic seconds); two
    give what other processes ran there in between (:func:`others_cpu`). None where the
    kernel does not say (not Linux)."""
    lines = [line.split() for line in _read("/proc/stat").splitlines()
             if line.startswith("cpu")]
    # The CPUs this process may run on: a taskset or cpuset leaves the others' load out, as
    # it does not compete; the total line where the per-CPU ones are not there.
    allowed = {f"cpu{i}" for i in os.sched_getaffinity(0)} if hasattr(
        os, "sched_getaffinity") else set()
    chosen = [f for f in lines if f[0] in allowed] or [f for f in lines if f[0] == "cpu"]
    if not chosen or any(len(f) < 8 for f in chosen):
        return None
    busy = sum(int(f[1]) + int(f[2]) + int(f[3]) + int(f[6]) + int(f[7]) for f in chosen)
    own = _read("/proc/self/stat").rpartition(")")[2].split()
    if len(own) < 13:
        return None
    return busy, int(own[11]) + int(own[12]), time.monotonic()


#: Seconds two cpu_use() readings must be apart for others_cpu: /proc/stat counts in ticks
#: of 10 ms, so over 0.1 s each CPU's count is off by up to a tick, 0.1 CPUs, against
#: records.CONTENDED's 0.5.
CONTENTION_WINDOW_S = 0.1


def others_cpu(before: tuple | None, after: tuple | None) -> float | None:
    """How many CPUs other processes kept busy between two cpu_use() readings, on average
    (None where unknown, or under CONTENTION_WINDOW_S apart: too short to tell).

    Why: a process that holds one of two cores makes torch's 2-thread kernels wait for it
    at every OpenMP barrier. A review saw torch take a flat 32 ms (IQR 0.3%) where 2.5 ms
    was right: rounds slowed alike look steady, the load average moves too slowly to show
    it, and steal is the hypervisor's, not this machine's other processes'."""
    if before is None or after is None or after[2] - before[2] < CONTENTION_WINDOW_S:
        return None
    ticks = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, ticks / os.sysconf("SC_CLK_TCK") / (after[2] - before[2]))


def others_cpu_since(before: tuple | None) -> float | None:
    """:func:`others_cpu` from ``before`` to now, first waiting out what is left of
    CONTENTION_WINDOW_S. Why: a case timed in less (``--budget 0.05``) had no reading, and
    rows slowed 400x by a process holding a core passed as clean. This process is idle
    while it waits, so the busy time it sees then is the others'."""
    if before is None:
        return None
    left = CONTENTION_WINDOW_S - (time.monotonic() - before[2])
    if left > 0:
        time.sleep(left + 1e-3)  # past the window, whatever the rounding
    return others_cpu(before, cpu_use())


def contention_warning(cpus: float | None) -> str:
    """"" unless other processes kept more than records.CONTENDED CPUs busy meanwhile."""
    if cpus is None or cpus <= records.CONTENDED:
        return ""
    return (f"contended: other processes kept {cpus:.1f} CPUs busy while the case was "
            "timed: its times are slower than this machine can do, however steady they look")


def steal_warning(share: float | None) -> str:
    """"" unless the hypervisor took more than STEAL_NOISY of the CPU while a case ran."""
    if share is None or share <= STEAL_NOISY:
        return ""
    return (f"stolen: the hypervisor gave {share:.0%} of this machine's CPU time to other "
            "guests while the case ran (steal time): its times are slower than this "
            "machine can do, however steady they look")


def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def busy_warning(info: dict, own_threads: int = 0) -> str:
    """A warning when the load average says the CPU was shared while measuring. Read while
    a measurement runs (the gate's end), its ``own_threads`` are part of the load: only
    what lies beyond them is other processes'."""
    load, cpus = info.get("loadavg_1min"), info.get("cpus_usable") or 1
    if load is not None and load - own_threads > 0.5 * cpus:
        own = f", {load - own_threads:.1f} beyond its own {own_threads} threads" if (
            own_threads) else ""
        return (f"load average {load:.1f} on {cpus} CPUs{own}: other processes are running; "
                "times will be slower and noisier than this machine can do")
    return ""


def _cpu_model() -> str:
    text = _read("/proc/cpuinfo")
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return m.group(1).strip() if m else platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    """The SIMD flags that decide which kernels oneDNN and MKL pick."""
    m = re.search(r"^flags\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.M)
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
    have = set(m.group(1).split()) if m else set()
    return [f for f in wanted if f in have]


def _memory_bytes() -> int | None:
    m = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    return int(m.group(1)) * 1024 if m else None


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _version_in(text: str, pattern: str) -> str:
    m = re.search(pattern, text)
    return m.group(1) if m else ""


def _versions(*modules: str) -> dict:
    from importlib import metadata

    out = {}
    for name in modules:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _gpu(device: torch.device) -> dict:
    props = torch.cuda.get_device_properties(device)
    return {
        "name": props.name,
        "capability": f"{props.major}.{props.minor}",
        "sms": props.multi_processor_count,
        "memory_bytes": props.total_memory,
        "driver": _nvidia_driver(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }


def _nvidia_driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.strip().splitlines()[0] if out.strip() else ""
