"""``auto``: each problem goes to the backend measured fastest on it.

Why: no backend wins everywhere. oneDNN/cuDNN take most layers, FFT takes large stride-1
kernels, Winograd some deep 3x3 layers; the crossovers depend on the machine. ``auto``
reads them from sweeps and dispatches each call to the winner.

How it decides (:func:`choose`), once per problem and settings (then a dict lookup):

1. A ranking of backends for the problem, from the decision table (impls.builtin._auto_table):
   the built-in ``auto_table.json`` (made from a sweep by ``build-table``, below), or the
   sweep result files that ``CONVBENCH_AUTO_RESULTS`` names (os.pathsep-separated) instead.
   The problem's own measurement if there is one, else the nearest measured problem of the
   same device type (log-scaled taps, channels, output pixels, stride, dilation, depthwise).
2. Where the table has nothing on this device type, or nothing within MAX_DISTANCE of the
   problem, the crossover rule: on the CPU, ``fft`` for stride-1, undilated kernels of at
   least FFT_MIN_TAPS taps with at least FFT_MIN_CHANNELS channels per group (FFT wins from
   ~100 taps once channels amortise the transforms); otherwise nothing but the fallback.
3. The first backend of the ranking that can run this call: registered, available, with the
   device, dtype and features the call needs, accepting the problem (Winograd: 3x3 stride 1)
   and within the memory budget (impls.memory_budget). ``torch`` closes every ranking.

Honest about it: ``choose(...)`` returns the name and why (``python -m impls.builtin.auto
choose DESCRIPTOR`` prints it); the checker judges each result by the chosen backend's
exactness and error model (``delegate``); gradients are the chosen backend's own autograd.

    python -m impls.builtin.auto build-table reports/sweeps/*.jsonl -o impls/builtin/auto_table.json
    python -m impls.builtin.auto choose 'mb1ic64ih56oc64oh56kh3ph1' [--dtype float32] [--device cpu]

What it must not do: pick itself, or a backend the table does not name (a user's plug-in
only if their sweep measured it), or one that refuses the call (no silent wrong answer, no
fallback inside the chosen backend); nor re-decide per call.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import lru_cache
from pathlib import Path

import torch

from impls import memory_budget
from impls.builtin import _auto_table as tables
from impls.registry import Backend, get_backend, register_backend

RESULTS_ENV = "CONVBENCH_AUTO_RESULTS"
DEFAULT_TABLE = Path(__file__).with_name("auto_table.json")
FALLBACK = "torch"
FFT_MIN_TAPS, FFT_MIN_CHANNELS = 100, 16
#: Farther than this from every measured shape (e.g. 16x fewer output pixels, or 4x fewer
#: kernel taps), a measurement says little about the problem: the crossover rule decides.
MAX_DISTANCE = 4.0

#: (problem, dtype, device, features, settings) -> (entry, why).
_DECISIONS: dict[tuple, tuple[Backend, str]] = {}
#: The same decisions keyed by a call's own arguments: what a dispatch looks up.
_CALLS: dict[tuple, Backend] = {}


def choose(input_shape, weight_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
           groups=1, dtype: torch.dtype = torch.float32, device: str = "cpu",
           features=()) -> tuple[str, str]:
    """(backend name, why) for a normalised problem; ``features`` adds "bias"/"autograd"."""
    problem = _problem(input_shape, weight_shape, stride, padding, dilation, groups)
    entry, why = _decision(problem, dtype, str(device), _features(problem, features))
    return entry.name, why


def _delegate(input_shape, weight_shape, stride, padding, dilation, groups, dtype, device,
              features) -> Backend:
    """Backend.delegate: the entry a call with these arguments runs on."""
    problem = _problem(input_shape, weight_shape, stride, padding, dilation, groups)
    return _decision(problem, dtype, device, _features(problem, features))[0]


@register_backend(
    name="auto",
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16),
    exact=False,  # for the listing: the checker asks `delegate` which backend, per problem
    error_model="delegated",  # never read: a bound for auto itself would be a guess
    delegate=_delegate,
    description="per problem, the backend the sweeps measured fastest (a table, then the "
                "nearest measured shape, then a crossover rule: on the CPU fft for large "
                "stride-1 undilated kernels, else torch)",
)
def auto_conv2d(input, weight, bias, stride, padding, dilation, groups):
    """Run the call on the backend :func:`choose` picks for it."""
    grad = torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad or (
        bias is not None and bias.requires_grad))
    # The call's own objects as the key (~2 us, the settings' lookups half of it); the
    # normalised problem and its features are built only on a miss.
    key = (input.shape, weight.shape, stride, padding, dilation, groups, input.dtype,
           input.device, bias is not None, grad, *_settings())
    entry = _CALLS.get(key)
    if entry is None:
        extra = ("bias",) * (bias is not None) + ("autograd",) * grad
        problem = _problem(input.shape, weight.shape, stride, padding, dilation, groups)
        entry = _CALLS[key] = _decision(problem, input.dtype, str(input.device),
                                        _features(problem, extra))[0]
    return entry.fn(input, weight, bias, stride, padding, dilation, groups)


def _problem(input_shape, weight_shape, stride, padding, dilation, groups) -> tuple:
    return (tuple(input_shape), tuple(weight_shape), tuple(stride), tuple(padding),
            tuple(dilation), int(groups))


def _features(problem, extra) -> frozenset:
    """The registry features a call uses, as impls.frontend.NormalizedCall.features."""
    _, _, stride, padding, dilation, groups = problem
    used = {name for name, on in (("stride", stride != (1, 1)), ("padding", padding != (0, 0)),
                                  ("dilation", dilation != (1, 1)), ("groups", groups != 1))
            if on}
    return frozenset(used | set(extra))


def _settings() -> tuple:
    """Part of every decision's key: a new table or budget makes new decisions.

    Read on every call, so a variable set at run time counts, and so read cheaply: two
    os.environ.get cost 2.8 us, and measured in turn with F.conv2d on a 0.22 ms call
    (dw13_1024x7) they cost it 5%, as Python run between calls whose data evicts its own
    is slower than in a loop. On POSIX, os.environ keeps its encoded keys in ``_data``
    (what os.environ.get itself reads); elsewhere, the public way."""
    data = getattr(os.environ, "_data", None)
    if os.name != "posix" or not isinstance(data, dict):
        return os.environ.get(RESULTS_ENV), os.environ.get(memory_budget.ENV)
    return data.get(_ENV_KEYS[0]), data.get(_ENV_KEYS[1])


#: The two settings' names as os.environ stores them on POSIX (bytes).
_ENV_KEYS = tuple(os.fsencode(name) for name in (RESULTS_ENV, memory_budget.ENV))


def _decision(problem, dtype, device: str, features: frozenset) -> tuple[Backend, str]:
    key = (problem, dtype, device, features, *_settings())
    found = _DECISIONS.get(key)
    if found is None:
        found = _DECISIONS[key] = _decide(problem, dtype, device, features)
    return found


def _decide(problem, dtype, device: str, features) -> tuple[Backend, str]:
    ranking, basis = _ranking(problem, dtype, device)
    passed_over = []
    for name in [*dict.fromkeys([*ranking, FALLBACK])]:
        entry, reason = _candidate(name, problem, dtype, device, features)
        if entry is not None:
            skipped = "".join(f"; passed over: {r}" for r in passed_over)
            return entry, f"{basis}{skipped}"
        passed_over.append(reason)
    raise NotImplementedError(f"auto found no backend for this call: {'; '.join(passed_over)}")


def _candidate(name: str, problem, dtype, device: str, features):
    """(entry, "") when ``name`` can run this call, else (None, why not)."""
    if name == "auto":
        return None, "auto (itself)"
    try:
        entry = get_backend(name)
    except ValueError:
        return None, f"{name} is not registered here"
    reason = (entry.unsupported(device=device, dtype=dtype, features=features)
              or entry.refuses(*problem) or entry.over_budget(*problem, dtype, device))
    return (None, reason) if reason else (entry, "")


def _ranking(problem, dtype, device: str) -> tuple[list[str], str]:
    """Backend names, best first, and the sentence that says where they come from."""
    kind, table = device.split(":")[0], _table()
    found = table.nearest(problem, str(dtype).removeprefix("torch."), kind)
    if found is None or found[1] > MAX_DISTANCE:
        names = _rule(problem, kind)
        near = (f"the nearest measured shape is {found[1]:.2f} > {MAX_DISTANCE:g} away"
                if found else f"nothing measured on {kind}")
        return names, (f"{near} in {table.source}; crossover rule: "
                       f"{names[0] if names else FALLBACK}")
    entry, distance = found
    times = ", ".join(f"{name} {seconds * 1e3:.3g} ms" for name, seconds in entry.ranking)
    where = ("measured on this shape" if distance == 0 else
             f"nearest measured shape {entry.descriptor} {entry.dtype} (distance {distance:.2f})")
    return [name for name, _ in entry.ranking], f"{where} in {table.source}: {times}"


def _rule(problem, kind: str) -> list[str]:
    """The crossover rule where nothing was measured on this device type (see module doc)."""
    (_, (_, cg, r, s), stride, _, dilation, _) = problem
    big = r * s >= FFT_MIN_TAPS and cg >= FFT_MIN_CHANNELS
    return ["fft"] if kind == "cpu" and big and stride == dilation == (1, 1) else []


def _table() -> tables.Table:
    return _load_table(os.environ.get(RESULTS_ENV, ""))


@lru_cache(maxsize=4)
def _load_table(setting: str) -> tables.Table:
    """The decision table for a CONVBENCH_AUTO_RESULTS value ("": the built-in one)."""
    paths = [p for p in setting.split(os.pathsep) if p.strip()]
    if not paths:
        if not DEFAULT_TABLE.exists():  # an install without the data file: rule and torch
            return tables.Table([], "no built-in table")
        return tables.Table(tables.load([str(DEFAULT_TABLE)]).entries, "the built-in table")
    try:
        return tables.load(paths)
    except ValueError as exc:
        raise ValueError(f"{RESULTS_ENV}: {exc}") from None


def build_table(paths: list[str], output: str | Path) -> int:
    """Write the decision table of the sweep result files ``paths``; returns its entries."""
    table = tables.load(paths)
    text = tables.table_text(table, [Path(p).name for p in paths])
    Path(output).write_text(text, encoding="utf-8")
    return len(table.entries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m impls.builtin.auto",
                                     description="the auto backend's decision table")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build-table", help="a decision table from sweep result files")
    build.add_argument("results", nargs="+", help="JSON-lines files of python -m benchmarks "
                                                  "sweep (or tables)")
    build.add_argument("-o", "--output", default=str(DEFAULT_TABLE))
    show = sub.add_parser("choose", help="which backend auto runs a problem on, and why")
    show.add_argument("descriptor", help="a benchdnn descriptor, e.g. mb1ic64ih56oc64oh56kh3ph1")
    show.add_argument("--dtype", default="float32",
                      choices=("float32", "float64", "float16", "bfloat16"))
    show.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        if args.command == "build-table":
            count = build_table(args.results, args.output)
            print(f"{args.output}: {count} measured problems")
            return 0
        spec = tables.ConvSpec.parse(args.descriptor)
        name, why = choose(*tables.problem_of(spec), dtype=getattr(torch, args.dtype),
                           device=args.device)
    except (ValueError, NotImplementedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{name}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
