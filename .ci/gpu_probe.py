"""What a triton conv call's time is made of on a GPU: ``python3 .ci/gpu_probe.py OUT_DIR``.

Why: the H100 run of 2026-11-26 (reports/results/gpu/2026-11-26/README.md) left two gaps to cuDNN
unattributed (the run of 2026-11-27 attributed them: reports/results/gpu/2026-11-27-h100/README.md):
65-90 us of host time per call, and 1x1 layers far behind in device time. One short call (about two
minutes on a fresh machine, most of it compiling and autotuning 13 configurations per layer; less
after a sweep has filled Triton's cache) separates what each is made of, for the four 3x3 and two
1x1 ResNet-50 layers in bfloat16 at batch 32, each timed per
synchronised call (wall), in back-to-back calls with one synchronise per 50 (launch
throughput: host and device overlap), and replayed from a CUDA graph (device):
- torch and triton on NCHW and on channels_last operands (triton copies NCHW operands to
  channels_last, and its result back to NCHW, in every call: the difference is those
  copies);
- triton with its kernel replay on (impls/builtin/_triton_launch.py, off by default until
  measured): the difference is Triton's per-call Python;
- the input and weight copies alone, by torch and by the backend's transpose kernel (what
  a triton call on NCHW operands runs since 2026-11-27);
- the forward kernel's autotuning: every configuration's time and the one it picked.

Run by ``bash .ci/gpu probe``; writes ``OUT_DIR/probe.md`` after every layer (a cut-off
run keeps what it measured), and a row that fails says why instead of ending the run. Not a
benchmark of record (the sweep is): a diagnosis, in one process, without the sweep's
supervision.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks import timer
from benchmarks.shapes import shape_set
from impls.builtin import _triton_launch, triton_conv

LAYERS = ("res2a_branch2b", "res3a_branch2b", "res4a_branch2b", "res5a_branch2b",
          "res2b_branch2a", "res3b_branch2a")
DTYPE, BATCH, BUDGET_S, BACK_TO_BACK = torch.bfloat16, 32, 0.3, 50
HEADER = ["| layer | what | wall µs | back-to-back µs | device µs | wall - device µs |",
          "| --- | --- | --- | --- | --- | --- |"]


def times(fn) -> tuple[float, float, float]:
    """Median microseconds of one call: synchronised alone, back to back, from a graph."""
    fn()
    torch.cuda.synchronize()
    wall = statistics.median(timer.time_rounds(fn, "cuda", BUDGET_S))
    burst = statistics.median(timer.time_rounds(fn, "cuda", BUDGET_S, BACK_TO_BACK))
    device = statistics.median(timer.time_graph(fn, "cuda", BUDGET_S))
    return wall * 1e6, burst / BACK_TO_BACK * 1e6, device * 1e6


def probe(spec) -> list[str]:
    """The table rows of one layer."""
    args = (spec.stride, spec.padding, spec.dilation, spec.groups)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(spec.input_shape, generator=gen).to("cuda", DTYPE)
    w = torch.randn(spec.weight_shape, generator=gen).to("cuda", DTYPE)
    cl = [t.contiguous(memory_format=torch.channels_last) for t in (x, w)]
    kernels = triton_conv._kernels()
    triton_conv.triton_conv2d(x, w, None, *args)  # autotunes this layer
    tuned = getattr(kernels.conv2d_fwd, "configs_timings", None) or {}
    best = kernels.conv2d_fwd.best_config
    rows = []

    def row(what, fn):
        try:
            wall, burst, device = times(fn)
        except Exception as exc:  # say why, and go on with the next row
            rows.append(f"| {spec.name} | {what} | {type(exc).__name__}: {exc} | | | |")
            return
        rows.append(f"| {spec.name} | {what} | {wall:.1f} | {burst:.1f} | {device:.1f} | "
                    f"{wall - device:.1f} |")

    row("torch NCHW", lambda: F.conv2d(x, w, None, *args))
    row("torch channels_last", lambda: F.conv2d(*cl, None, *args))
    for replay in (False, True):
        _triton_launch.REPLAY = replay
        label = "triton replay" if replay else "triton"
        row(f"{label} NCHW", lambda: triton_conv.triton_conv2d(x, w, None, *args))
        row(f"{label} channels_last", lambda: triton_conv.triton_conv2d(*cl, None, *args))
    _triton_launch.REPLAY = False
    row("input copy to channels_last, torch",
        lambda: x.contiguous(memory_format=torch.channels_last))
    row("input copy to channels_last, triton_conv's kernel",
        lambda: triton_conv.transpose(x, to_channels_last=True))
    row("weight copy to channels_last, torch",
        lambda: w.contiguous(memory_format=torch.channels_last))
    row("weight copy to channels_last, triton_conv's kernel",
        lambda: triton_conv.transpose(w, to_channels_last=True))
    rows.append(f"| {spec.name} | autotuning picked | {best} | | | |")
    for config, ms in sorted(tuned.items(), key=lambda item: _first(item[1])):
        rows.append(f"| {spec.name} | config {config} | | | {_first(ms) * 1e3:.1f} | |")
    return rows


def _first(ms) -> float:
    return ms[0] if isinstance(ms, (list, tuple)) else ms


def main(out_dir: str) -> int:
    if not torch.cuda.is_available():
        print("gpu_probe: no CUDA device", file=sys.stderr)
        return 2
    specs = {e.spec.name.split(":")[-1].split("*")[0]: e.spec
             for e in shape_set("resnet50", batch=BATCH)}
    lines = [f"# triton call anatomy: {torch.cuda.get_device_name()}, {DTYPE}, batch {BATCH}",
             "", *HEADER]
    for name in LAYERS:
        rows = probe(specs[name])
        print("\n".join(rows), flush=True)
        lines += rows
        Path(out_dir, "probe.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
