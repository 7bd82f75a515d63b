"""How the ``triton`` backend launches its kernels, and its per-problem replay of them.

Why a module of its own: a short GPU call is mostly launch. The H100 run of 2026-11-26
(reports/results/gpu/2026-11-26/README.md) measured a triton conv call at 65-90 us of host time
beyond its kernels, torch's at about 10 us; at batch 32 most ResNet-50 layers run 30-80 us on the
device, so the launch halves the per-call speed. The probe of 2026-11-27
(reports/results/gpu/2026-11-27-h100/probe.md) put each Triton launch at 40-60 us of host time
there. Our own Python is about 13 us of that on the 2-core machine (measured with the launch stubbed
out); the rest is Triton's per-call path: the autotuner builds its key from every argument, then
``JITFunction.run`` binds ~40 arguments, specialises each and looks its kernel up, on every call.

Replay (on by default, CUDA only; ``CONVBENCH_TRITON_FAST_LAUNCH=0``, read at import, turns
it off): the first call of a
problem goes through that path (and so through autotuning) and keeps the compiled kernel it
launched, with the configuration's grid; later calls of the same problem launch that
kernel directly (``CompiledKernel[grid](*args)``, the call ``JITFunction.run`` ends in, in
Triton 3.6 as in the current release). Same problem means the same kernel, device, integer
arguments (sizes and strides: stricter than Triton's own specialisation on them), constexpr
values, per tensor its dtype and whether its address is 16-byte aligned (what Triton
specialises a pointer on), and what the grid depends on beyond those (``grid_args``; a
fixed grid itself). So a replay launches the kernel and grid the full path would launch.
It skips what that path would also run and this backend does not use: Triton's launch-time
pre-run hooks and a configuration's ``pre_hook`` (a configuration with one is not kept),
and changes to Triton's debug and instrumentation knobs made after the first call.

Why on by default: its gain is 10-42% of a synchronised call's wall time on the H100 (probe
of 2026-11-27); and tests/test_triton_launch.py, which compares it with the full path bit
for bit (forward and gradients, four layer kinds, float32 and bfloat16) under
``--device cuda``, found every replayed result equal in two runs on an H200 on 2026-11-27.
That test still failed there after its comparisons, on its own count of launches (stale in
the first run, wrongly taken with replay already on in the second); the count as fixed
since has not run on a GPU. What it must not
do: replay for a problem that differs in anything Triton specialises on, or keep kernels
without bound (MAX_KEPT, oldest out first).
"""

from __future__ import annotations

import os
from collections import OrderedDict

import torch

#: Replay kept kernels; read once, like TRITON_INTERPRET (the interpreter has nothing to keep).
REPLAY = (os.environ.get("CONVBENCH_TRITON_FAST_LAUNCH") != "0"
          and os.environ.get("TRITON_INTERPRET") != "1")
#: Problems whose kernels are kept (each entry is a few hundred bytes; the kernels
#: themselves stay in Triton's own cache either way).
MAX_KEPT = 4096

_kept: OrderedDict[tuple, tuple] = OrderedDict()  # problem key -> (runner, constexpr tail)


def launch(kernel, grid, device: torch.device, *args, grid_args=(), **meta) -> None:
    """``kernel[grid](*args, **meta)`` on ``device`` (Triton launches on the current one),
    replayed from the kept kernel when REPLAY is on and this problem was launched before.
    ``args`` are the kernel's leading parameters, all positional; ``meta`` its constexprs
    (an autotuned kernel's configuration adds the rest); ``grid_args`` the values a grid
    function reads that are not among ``args`` (the groups, a split count)."""
    if device.type != "cuda":
        kernel[grid](*args, **meta)
        return
    with torch.cuda.device(device):
        if REPLAY:
            replay_or_launch(kernel, grid, device, args, meta, grid_args)
        else:
            kernel[grid](*args, **meta)


def replay_or_launch(kernel, grid, device: torch.device, args, meta, grid_args=()) -> bool:
    """Launch this problem's kept kernel (True), or launch through Triton and keep what it
    compiled when that can be replayed (False)."""
    key = problem_key(kernel, grid, device, args, meta, grid_args)
    kept = _kept.get(key)
    if kept is not None:
        _kept.move_to_end(key)
        runner, tail = kept
        runner(*args, *tail)
        return True
    compiled = kernel[grid](*args, **meta)
    config = getattr(kernel, "best_config", None)  # an Autotuner's pick for this call
    if compiled is None or getattr(config, "pre_hook", None) is not None:
        return False  # a Triton cache hook returned no kernel; a hook a replay would skip
    _kept[key] = replayer(kernel, compiled, grid, args, meta)
    while len(_kept) > MAX_KEPT:
        _kept.popitem(last=False)
    return False


def problem_key(kernel, grid, device: torch.device, args, meta, grid_args=()) -> tuple:
    """Everything the launched kernel and its grid depend on (see the module doc). The
    kernels are module-level objects that live as long as the process, so their id is
    theirs alone."""
    parts: list = [id(kernel), device.index, grid_args, None if callable(grid) else grid]
    for arg in args:
        if isinstance(arg, torch.Tensor):
            parts.append((arg.dtype, arg.data_ptr() % 16 == 0))
        else:
            parts.append((type(arg), arg))
    parts.extend(sorted(meta.items()))
    return tuple(parts)


def replayer(kernel, compiled, grid, args, meta) -> tuple:
    """(runner, constexpr values after ``args``) that launch ``compiled`` as the call that
    compiled it did: every parameter in signature order (Triton's launcher skips the
    constexprs), on the grid of the configuration the autotuner picked for it."""
    config = getattr(kernel, "best_config", None)  # an Autotuner's pick for this call
    names = kernel.arg_names  # a JITFunction's parameters; an Autotuner has its kernel's
    values = {**dict(zip(names, args)), **meta,
              **(config.all_kwargs() if config is not None else {})}
    size = tuple(grid(values) if callable(grid) else grid)
    runner = compiled[size + (1,) * (3 - len(size))]
    return runner, tuple(values[name] for name in names[len(args):])


def forget() -> None:
    """Drop every kept kernel (tests)."""
    _kept.clear()
