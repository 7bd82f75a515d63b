"""``python -m benchmarks targets``: the fast backends' speed targets (unfold, fft,
winograd, auto against torch), measured in one run.

Why a command of its own: a target is a ratio against torch (or, for ``auto``, against the
fastest backend) on a named set of shapes, and a ratio means something only when both
sides are timed in the same run on the same machine, minutes apart at most. This command
runs exactly the cases the targets need through the ordinary sweep (``python -m benchmarks
sweep``: supervised, resumable, one row per case), into one results file, then prints the
table of reports/targets.py and writes it to ``reports/out/targets.md``, ready for the
README.

TARGETS is the one definition of the targets: which backend, which shapes at which batch,
on which device in which precision, against what, and the goal. The runs are derived from
it: the sweep takes one batch, dtype and TF32 setting per invocation, so there is one
invocation per combination (shape-major within each, so a backend and its baseline run back
to back; on the CPU, each backend's rounds also alternate with torch's, PARTNER). Each
precision has its own results file (``targets-cuda-bfloat16.jsonl``), so a file is one run's
numbers in one precision, as every other sweep file is; the batches of one precision share
it. ``--device cuda`` runs the GPU targets (issue #3: the Triton kernel against cuDNN on
ResNet-50 at batch 32 in float32, TF32 and bfloat16), and their per-layer table; the CPU's
are the default.

What it must not do: time anything itself, or pass judgement; it runs sweeps, and
reports/targets.py reads the numbers. A backend named here that is not registered (e.g.
``auto`` before it lands) is left out of the run, and the table says so.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import impls
from benchmarks.sweep_plan import precision_name
from impls.cli_types import positive_or_inf_seconds, positive_seconds
from impls.spec import ConvSpec

#: The baseline meaning "the fastest other backend timed on the same shape".
BEST = "best"
RESULTS_DIR = Path("reports") / "sweeps"
#: On the CPU every case's rounds alternate with torch's (sweep --paired-with): ratios of
#: 1-2 ms calls on a shared 2-core machine drifted by more than the gaps the goals ask
#: about (auto, running torch, read 0.71x of torch). The GPU targets compare
#: CUDA-graph device times instead, and the lent GPU's minutes are few.
PARTNER = "torch"
#: Sweep settings: the sweep's own. The limit must let torch's 31x31 layer run (0.8 s a
#: call, 5 calls); it skips only calls no target needs (naive on large layers).
BUDGET_S, LIMIT_S = 0.5, 10.0


def _3x3(s: ConvSpec) -> bool:
    return (s.kh, s.kw) == (3, 3)


def _large_dense(s: ConvSpec) -> bool:
    """13x13 kernels and up with 32+ channels per group on both sides."""
    return min(s.kh, s.kw) >= 13 and min(s.ic, s.oc) // s.g >= 32


def _k31_c32_128(s: ConvSpec) -> bool:
    return (s.kh, s.ic, s.oc, s.ih, s.g) == (31, 32, 32, 128, 1)


def _every(s: ConvSpec) -> bool:
    return True


@dataclass(frozen=True)
class Target:
    """One line of the table: ``backend``'s speed over ``baseline`` on some shapes.

    ``goals`` are (statistic, comparison, value): statistic "worst" or "geomean" of the
    per-shape ratios baseline_time / backend_time; all must hold. No goals: a comparison
    the table measures and states without a verdict. ``tf32``: float32 with TF32 allowed
    in cuBLAS/cuDNN (and so in the triton backend, which follows cuDNN's setting)."""

    title: str
    backend: str
    shape_sets: tuple[str, ...]
    batch: int
    select: Callable[[ConvSpec], bool]
    shapes: str  # the selection in words
    goals: tuple[tuple[str, str, float], ...]
    baseline: str = "torch"
    device: str = "cpu"
    dtype: str = "float32"
    tf32: bool = False
    memory_format: str = "contiguous"  # of the operands (sweep --memory-format)

    @property
    def precision(self) -> str:
        """The precision in words: "float32" (strict on CUDA), "TF32", "bfloat16"."""
        return "TF32" if self.tf32 else self.dtype


#: Batch of the GPU comparison: issue #3's, large enough to fill an H100 on ResNet-50.
GPU_BATCH = 32


def _gpu(title: str, select, shapes: str, goals=(), **precision) -> Target:
    """A target of the triton backend against cuDNN (torch on CUDA) on ResNet-50."""
    return Target(title, "triton", ("resnet50",), GPU_BATCH, select, shapes, goals,
                  device="cuda", **precision)


TARGETS = (
    Target("unfold, batch 1", "unfold", ("resnet50",), 1, _3x3,
           "ResNet-50 3x3 layers", (("worst", ">=", 0.6),)),
    Target("unfold, batch 8", "unfold", ("resnet50-3x3",), 8, _3x3,
           "ResNet-50 3x3 layers", (("worst", ">=", 0.6),)),
    Target("fft, large kernels", "fft", ("large-kernel",), 1, _large_dense,
           "dense kernels 13x13 and up, 32+ channels", (("worst", ">", 1.0),)),
    Target("fft, 31x31", "fft", ("large-kernel",), 1, _k31_c32_128,
           "31x31, C=K=32, 128x128, padding 15", (("worst", ">=", 3.0),)),
    Target("winograd-f2, batch 8", "winograd-f2", ("resnet50-3x3",), 8, _3x3,
           "ResNet-50 3x3 stride-1 layers", (("worst", ">=", 1.0),)),
    Target("winograd-f4, batch 8", "winograd-f4", ("resnet50-3x3",), 8, _3x3,
           "ResNet-50 3x3 stride-1 layers", (("worst", ">=", 1.0),)),
    Target("winograd-f4x1, batch 8", "winograd-f4x1", ("resnet50-3x3",), 8, _3x3,
           "ResNet-50 3x3 stride-1 layers", (("worst", ">=", 1.0),)),
    Target("auto, batch 1", "auto", ("resnet50", "large-kernel"), 1, _every,
           "every ResNet-50 and large-kernel shape",
           (("geomean", ">=", 0.95), ("worst", ">=", 0.8)), baseline=BEST),
    _gpu("triton bfloat16, batch 32", _3x3, "ResNet-50 3x3 layers", (("worst", ">=", 0.8),),
         dtype="bfloat16"),
    _gpu("triton float32 (strict), batch 32", _every, "every ResNet-50 layer"),
    _gpu("triton TF32, batch 32", _every, "every ResNet-50 layer", tf32=True),
)
DEVICES = tuple(dict.fromkeys(t.device for t in TARGETS))
PRECISIONS = tuple(dict.fromkeys(t.precision for t in TARGETS))


def runs(targets=TARGETS, device: str = "cpu") -> list[dict]:
    """One sweep per batch and precision of ``device``'s targets: its shape sets and
    backends (None: every registered one, which a target against the fastest backend
    needs). Unregistered names are left out."""
    out = {}
    for t in (t for t in targets if t.device == device):
        run = out.setdefault((t.dtype, t.tf32, t.batch, t.memory_format), {
            "batch": t.batch, "device": t.device, "dtype": t.dtype, "tf32": t.tf32,
            "precision": t.precision, "memory_format": t.memory_format, "shape_sets": [],
            "backends": []})
        run["shape_sets"] += [s for s in t.shape_sets if s not in run["shape_sets"]]
        if run["backends"] is not None:
            wanted = [t.backend, t.baseline]
            run["backends"] = None if BEST in wanted else run["backends"] + [
                n for n in wanted if n not in run["backends"] and registered(n)]
    return list(out.values())


def results_file(folder: Path, run: dict) -> Path:
    """The file of a run's precision: ``targets-cpu-float32.jsonl``, ``-tf32`` for TF32."""
    name = precision_name(run["device"], run["dtype"], run["tf32"])
    return Path(folder) / f"targets-{name}.jsonl"


def registered(name: str) -> bool:
    try:
        impls.get_backend(name)
    except ValueError:
        return False
    return True


def sweep_argv(run: dict, results: Path, budget: float, limit: float, fresh: bool) -> list:
    argv = ["sweep", "--batch", str(run["batch"]), "--direction", "forward",
            "--device", run["device"], "--dtype", run["dtype"], *(["--tf32"] * run["tf32"]),
            *(["--memory-format", run["memory_format"]]
              if run["memory_format"] != "contiguous" else []),
            "--results", str(results), "--budget", str(budget), "--limit", str(limit),
            *(["--paired-with", PARTNER] if run["device"] == "cpu" else [])]
    for name in run["shape_sets"]:
        argv += ["--shape-set", name]
    for name in run["backends"] or ():
        argv += ["--backend", name]
    return argv + (["--fresh"] if fresh else [])


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "targets", help="measure the fast backends' speed targets against torch in one run "
                        "and print their table",
        description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=DEVICES, default="cpu",
                   help="whose targets: the CPU's (default) or the GPU's (cuda)")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                   help="where the results files go, one per precision (default %(default)s)")
    p.add_argument("--budget", type=positive_seconds, default=BUDGET_S,
                   help="seconds of timed rounds per case (default %(default)s)")
    p.add_argument("--limit", type=positive_or_inf_seconds, default=LIMIT_S,
                   help="skip a case predicted to need more seconds (default %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run instead of starting afresh")
    p.add_argument("--precision", action="append", choices=PRECISIONS,
                   help="measure only this precision's targets (repeatable; a lent GPU's "
                        "minutes may not cover all three); the table still shows every "
                        "results file in --results-dir")
    p.add_argument("--table-only", action="store_true",
                   help="measure nothing: print the table of the existing results files")
    p.add_argument("--out", type=Path, default=Path("reports") / "out",
                   help="where targets.md goes (default %(default)s)")
    p.set_defaults(func=cli)


def cli(args: argparse.Namespace) -> int:
    from benchmarks.__main__ import main as benchmarks_main

    code, files = 0, []
    for run in runs(device=args.device):
        results = results_file(args.results_dir, run)
        fresh = results not in files and not args.resume
        files += [results] if results not in files else []
        if args.table_only or args.precision and run["precision"] not in args.precision:
            continue
        argv = sweep_argv(run, results, args.budget, args.limit, fresh=fresh)
        print(f"targets: python -m benchmarks {' '.join(argv)}", flush=True)
        status = benchmarks_main(argv)
        if status in (2, 130):  # bad usage or interrupted: no table from half a run
            return status
        code = max(code, status)  # 1: some case failed; the table names it
    # The one place benchmarks reaches into reports: this command ends in the table.
    from reports import targets as table

    return table.write(files, args.out, args.device) or code
