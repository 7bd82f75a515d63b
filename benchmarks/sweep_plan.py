"""Which cases a sweep runs: backends x shape-set entries, their keys, and shards.

Why a module of its own: the supervisor (``python -m benchmarks sweep``) and the pytest file
it runs (benchmarks/bench_sweep.py) must agree on exactly the same list, in the same order,
with the same keys, or resuming and sharding would silently drift apart. Nothing here
measures or imports a backend's module: backends come from ``impls.backends()`` and
``impls.get_backend(name)`` only (a name may be "package.module:function").

Order is shape-major: every direction and backend of one shape runs back to back (directions
outer, backends inner), so a backend and the torch baseline it is compared with, in the same
direction, are timed seconds apart, in the same machine state.
Shards split by *shape*, never inside one, for the same reason: a CI matrix runs shards on
different machines, and a speed ratio between two machines means nothing.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

import impls
from benchmarks.shapes import ShapeEntry, shape_set
from impls.backward import DIRECTIONS as BACKWARD_DIRECTIONS
from impls.cli_types import count_at_least_1, positive_or_inf_seconds, positive_seconds
from impls.frontend import device_arg

#: The child's exit status that asks the supervisor for a fresh child (which resumes after
#: the rows written): a CUDA error such as an illegal address or a device-side assert
#: leaves the process's CUDA context unusable, so every later case in it would fail too.
RESTART_STATUS = 75
#: Failure messages of such errors (torch's "CUDA error: ...", Triton's launcher's, cuDNN's
#: failed execution). A few harmless ones match too (cuBLAS's "CUDA error: out of memory"):
#: they cost a restart, never a row.
_POISONED = ("CUDA error", "Triton Error [CUDA]", "device-side assert",
             "CUDNN_STATUS_EXECUTION_FAILED")


def poisons_device(reason: str) -> bool:
    """Whether a case's failure leaves the device unusable for the rest of the process (an
    out-of-memory error does not: torch frees and carries on)."""
    return any(text in reason for text in _POISONED)


#: What ``nox -s bench`` and a bare ``python -m benchmarks sweep`` run.
DEFAULT_SETS = ("resnet50", "large-kernel", "grid-small")
#: Bytes per element, for a row's tensor bytes.
DTYPES = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}
#: What a case times: the forward conv, or one backward direction alone (impls.backward's
#: names: "backward-data" is dL/dinput, "backward-weights" dL/dweight). Each is counted at
#: the forward's FLOPs and bytes (every forward multiply-add has one counterpart in each
#: gradient, and each touches three tensors of the forward's sizes), as benchdnn counts them.
DIRECTIONS = ("forward", *BACKWARD_DIRECTIONS)
#: The directions a bare sweep (no shape set and no direction named, as ``nox -s bench``
#: runs it) times per default set: all three on resnet50, the network people train, so the
#: report shows every direction of every backend; forward only elsewhere. Backward
#: everywhere would triple the main job (about 10 instead of 7 minutes on 2 cores);
#: ``--direction all`` asks for it.
BARE_DIRECTIONS = {"resnet50": DIRECTIONS, "large-kernel": ("forward",),
                   "grid-small": ("forward",)}
CACHE_MODES = ("warm", "cold")
#: The memory format of the input and weight a case hands the backend (torch's names):
#: NCHW, or NHWC (channels_last), which tensor-core kernels (cuDNN's, the triton backend's)
#: compute in, so NCHW times include their layout copies. benchdnn's --stag/--wtag.
MEMORY_FORMATS = ("contiguous", "channels_last")
#: Seconds of timed rounds per case; at least MIN_ROUNDS rounds whatever a call costs.
BUDGET_S, MIN_ROUNDS = 0.5, 3
#: The budget guard: a case whose warm-up + MIN_ROUNDS calls are predicted to take longer
#: is skipped with its prediction as the reason.
LIMIT_S = 10.0
#: A case still running after this long is killed and recorded as "timeout".
TIMEOUT_S = 120.0
RESULTS_DIR = Path("reports") / "sweeps"


@dataclass(frozen=True)
class Case:
    """One measurement: a backend on one shape, in one dtype, device, direction, cache mode,
    float32 precision (``tf32``: cuBLAS/cuDNN may run float32 as TF32) and memory format of
    its operands."""

    backend: str
    shape_set: str
    index: int  # position in its set: with the set, names the shape even without a name
    entry: ShapeEntry
    dtype: str = "float32"
    device: str = "cpu"
    direction: str = "forward"
    cache: str = "warm"
    tf32: bool = False
    memory_format: str = "contiguous"

    @property
    def shape_key(self) -> tuple[str, str]:
        return self.shape_set, self.entry.descriptor

    @property
    def key(self) -> str:
        """What resume and merge match rows on: everything that makes it another number.
        TF32 and channels_last are other numbers too; each adds a field only when on, so
        other keys read as before (rows written before the tf32 field are given it from
        their machine record: benchmarks.records)."""
        tf32 = ("tf32",) if self.tf32 else ()
        layout = (self.memory_format,) if self.memory_format != "contiguous" else ()
        return "|".join((self.backend, self.shape_set, self.entry.descriptor, self.dtype,
                         self.device, self.direction, self.cache, *tf32, *layout))

    @property
    def id(self) -> str:
        """The pytest id: readable, unique within a sweep."""
        name = self.entry.spec.name.split(":")[-1] or self.entry.descriptor
        return (f"{self.shape_set}-{self.index:02d}-{_slug(name)}-{_slug(self.direction)}-"
                f"{_slug(self.backend)}")

    @property
    def group(self) -> str:
        """pytest-benchmark's group: one table per shape and direction, backends side by side."""
        return f"{self.shape_set} {self.entry.descriptor} {self.direction}"

    def __str__(self) -> str:  # how pytest-benchmark's JSON shows the parameter
        return self.id

    def row_fields(self) -> dict:
        """What a result row says about the case itself, whatever happened to it."""
        e = self.entry
        return {"key": self.key, "backend": self.backend, "shape_set": self.shape_set,
                "index": self.index, "name": e.spec.name, "descriptor": e.descriptor,
                "count": e.count, "batch": e.spec.mb, "dtype": self.dtype, "device": self.device,
                "direction": self.direction, "cache": self.cache, "tf32": self.tf32,
                "memory_format": self.memory_format,
                "flops": e.flops, "bytes": e.spec.bytes(DTYPES[self.dtype])}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_")


#: ``--batch own``: every shape at the batch it writes itself.
OWN = "own"
#: The batch of a sweep whose --batch is not given.
DEFAULT_BATCH = 1


def batch_arg(text: str) -> int | str:
    """argparse ``type=`` for --batch: an integer >= 1, or ``own``."""
    if text == OWN:
        return OWN
    try:
        return count_at_least_1(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or own: each shape's own mb)") from None


def batch_of(option: int | str | None) -> int | None:
    """The batch a --batch value means, as :func:`plan` takes it: None for ``own``."""
    return DEFAULT_BATCH if option is None else None if option == OWN else option


def batch_replaced(shape_sets=None, directions=None) -> str:
    """Under the default --batch, what it replaces of the batches the shapes write, or "":
    a benchdnn user's mb32 was timed at batch 1 without a word."""
    own = [e.spec.mb for name in directions_per_set(shape_sets, directions)
           for e in shape_set(name)]
    other = sorted({mb for mb in own if mb != DEFAULT_BATCH})
    if not other:
        return ""
    return (f"--batch {DEFAULT_BATCH} (the default) replaces the batch that "
            f"{sum(mb != DEFAULT_BATCH for mb in own)} of the {len(own)} shapes write "
            f"(mb{', mb'.join(map(str, other))}): --batch own times each at its own")


def plan(shape_sets=None, backends=None, *, batch: int | None = 1, dtype: str = "float32",
         device: str = "cpu", directions=None, cache: str = "warm",
         tf32: bool = False, memory_format: str = "contiguous") -> list[Case]:
    """Every case, shape-major (then direction, then backend). ``shape_sets`` and
    ``directions`` both None: the bare sweep (DEFAULT_SETS, each in its BARE_DIRECTIONS);
    otherwise the sets given (default DEFAULT_SETS) each in every direction given (one name
    or several; default all three). ``backends`` None means every registered one, available
    or not: an unavailable backend still gets a row per shape and direction, skipped with
    its reason. ``tf32`` is a CUDA float32 mode: elsewhere it is refused, not ignored."""
    per_set = directions_per_set(shape_sets, directions)
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: one of {', '.join(DTYPES)}")
    if tf32 and dtype != "float32":
        raise ValueError(f"tf32: TF32 is a mode of float32 matmuls and convolutions; "
                         f"dtype {dtype} has none")
    if tf32 and not device.startswith("cuda"):  # rows labelled TF32 that are not
        raise ValueError(f"tf32: TF32 is a mode of NVIDIA GPUs' float32; device {device} "
                         "has none")
    if cache not in CACHE_MODES:
        raise ValueError(f"cache {cache!r}: one of {', '.join(CACHE_MODES)}")
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format {memory_format!r}: one of {', '.join(MEMORY_FORMATS)}")
    names = [b.name for b in impls.backends()] if not backends else list(backends)
    names = [impls.get_backend(n).name for n in dict.fromkeys(names)]  # unknown: ValueError
    cases = []
    for set_name, set_directions in per_set.items():
        for index, entry in enumerate(shape_set(set_name, batch)):
            cases += [Case(name, set_name, index, entry, dtype, device, direction, cache, tf32,
                           memory_format)
                      for direction in set_directions for name in names]
    return cases


def partner(name: str | None) -> impls.Backend | None:
    """The backend of ``--paired-with`` (None: unpaired); an unknown name is a ValueError."""
    if name is None:
        return None
    try:
        return impls.get_backend(name)
    except ValueError as exc:
        raise ValueError(f"--paired-with: {exc}") from None


def directions_per_set(shape_sets=None, directions=None) -> dict[str, tuple[str, ...]]:
    """Shape set -> the directions it is swept in (see :func:`plan`)."""
    if shape_sets is None and directions is None:
        return {name: BARE_DIRECTIONS.get(name, DIRECTIONS) for name in DEFAULT_SETS}
    directions = [directions] if isinstance(directions, str) else list(directions or DIRECTIONS)
    unknown = [d for d in directions if d not in DIRECTIONS]
    if unknown:
        raise ValueError(f"direction {', '.join(map(repr, unknown))}: this sweep measures "
                         f"{', '.join(DIRECTIONS)}")
    return {name: tuple(dict.fromkeys(directions)) for name in shape_sets or DEFAULT_SETS}


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (1-based) -> (i, n); ValueError names the problem."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise ValueError(f"shard {text!r} is not of the form i/n (1-based, e.g. 2/4)")
    i, n = int(m.group(1)), int(m.group(2))
    if not 1 <= i <= n:
        raise ValueError(f"shard {text!r}: need 1 <= i <= n")
    return i, n


def shard(cases: list[Case], index: int, count: int) -> list[Case]:
    """The cases of shard ``index`` of ``count`` (1-based): shapes dealt round-robin, so each
    shard gets a mix of cheap and dear layers, and all backends and directions of a shape
    stay together."""
    shapes = list(dict.fromkeys(c.shape_key for c in cases))
    mine = {s for k, s in enumerate(shapes) if k % count == index - 1}
    return [c for c in cases if c.shape_key in mine]


def precision_name(device: str, dtype: str, tf32: bool = False) -> str:
    """Where and in what precision, as results files are named: ``cuda-float32-tf32``."""
    return f"{_slug(device)}-{dtype}{'-tf32' if tf32 else ''}"


def results_path(device: str, dtype: str, batch: int | None,
                 shard_of: tuple[int, int] | None = None, tf32: bool = False) -> Path:
    """The default results file: one per device, dtype (TF32 apart), batch and shard, so
    rerunning the same command resumes, and shards of a job array never write the same file."""
    name = f"{precision_name(device, dtype, tf32)}-mb{batch or 'own'}"
    if shard_of:
        name += f"-shard{shard_of[0]}of{shard_of[1]}"
    return RESULTS_DIR / f"{name}.jsonl"


def unloadable(names) -> list[str]:
    """Why each user backend among ``names`` (a "package.module:function" spec or an entry
    point's name) cannot be used at all (impls.Backend.load_error: its module or attribute
    cannot be imported, what it names is no backend, its capabilities are wrong). A sweep
    refuses these up front, as the typo they are. A built-in backend, or a user's Backend
    whose own probe finds it unavailable here (triton without CUDA), is not in the list:
    those are skipped rows with their reason. Unknown names are the plan's to refuse."""
    entries = []
    for name in dict.fromkeys(names or ()):
        try:
            entries.append(impls.get_backend(name))
        except ValueError:
            continue
    return [f"backend {e.name!r} cannot be used: {e.load_error}" for e in entries
            if e.load_error]


def torch_threads(threads: int | None) -> int:
    """The torch threads a sweep pins: ``--threads``, or every CPU this process may use."""
    return threads or len(os.sched_getaffinity(0))


#: The options both sides of a sweep take alike: ``python -m benchmarks sweep`` (the
#: supervisor) passes them to the pytest plugin it runs (benchmarks/conftest.py), which a
#: user may also run by hand. One table, so the two cannot drift apart; each side adds the
#: few that are its own (the supervisor's --timeout, the plugin's --rows-since ...).
OPTIONS = (
    ("--backend", dict(action="append", default=None,
                       help="name or package.module:function, repeatable; default: every "
                            "backend")),
    ("--batch", dict(type=batch_arg, default=None, metavar="N|own",
                     help="batch of every shape (default 1), or own: each shape's own mb "
                          "(what its benchdnn descriptor writes)")),
    ("--dtype", dict(default="float32", choices=list(DTYPES))),
    ("--device", dict(type=device_arg, default="cpu", help="cpu, cuda, cuda:1 ...")),
    ("--cache", dict(default="warm", choices=CACHE_MODES,
                     help="cold: flush the caches before every timed call")),
    ("--memory-format", dict(default="contiguous", choices=MEMORY_FORMATS,
                             help="layout of the input and weight handed to the backend: "
                                  "contiguous (NCHW, default) or channels_last (NHWC)")),
    ("--shard", dict(default=None, metavar="I/N",
                     help="run shard I of N (1-based), split by shape")),
    ("--budget", dict(type=positive_seconds, default=BUDGET_S,
                      help="seconds of timed rounds per case (default %(default)s)")),
    ("--limit", dict(type=positive_or_inf_seconds, default=LIMIT_S,
                     help="skip a case predicted to need more seconds for its warm-up and "
                          "minimum rounds (default %(default)s; a rerun with a higher limit "
                          "retries the cases it skipped)")),
    ("--min-rounds", dict(type=count_at_least_1, default=MIN_ROUNDS,
                          help="timed rounds per case at least (default %(default)s)")),
    ("--threads", dict(type=count_at_least_1, default=None,
                       help="torch threads (default: usable CPUs)")),
    ("--tf32", dict(action="store_true", help="let cuBLAS/cuDNN run float32 as TF32")),
    ("--paired-with", dict(default=None, metavar="BACKEND",
                           help="time every other backend's rounds in turn with this "
                                "backend's on the same inputs, and record the ratio of "
                                "neighbouring rounds (paired_ratio): the machine's drift "
                                "between two measurements cancels; each case takes twice "
                                "its budget")),
)


def heartbeat_path(results: Path) -> Path:
    """Names the case in flight (written when it starts, removed when its row is written)."""
    return Path(results).with_suffix(".running")
