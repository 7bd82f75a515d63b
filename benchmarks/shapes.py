"""Shape sets: the convolution problems that benchmarks sweep over, as benchdnn descriptors.

Why files in benchdnn's format: oneDNN's own shape files (tests/benchdnn/inputs/conv/shapes_*)
can be dropped into ``benchmarks/shapes/`` or passed as a path, unchanged, and every problem
stays one printable token (see :mod:`impls.spec`). A file is read the way benchdnn's
``batch()`` reads it: whitespace-separated tokens, a token starting with ``#`` comments out
the rest of its line, a token ending in ``\\`` continues on the next one. Driver options
(``--dir=...``) are refused: benchdnn's own rule is that ``shapes_*`` files hold shapes only.

Multiplicity: a name ending in ``*N`` (oneDNN's resnet_50 file writes
``n"resnet_50:res2a_branch1*4"``) means the layer occurs N times in the network. The entry
gets ``count=N`` and its spec the name without the suffix, so weighted totals are
``sum(entry.flops * entry.count)``.

Batch: each set keeps the batch its file writes (resnet50, depthwise, large-kernel: mb1;
DeepBench: its own N per problem; edge: benchdnn's default mb2); ``batch=`` overrides it for
every entry. The ``grid`` set is generated here, not read, but is descriptors all the same.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from impls import display
from impls.spec import ConvSpec

SHAPES_DIR = Path(__file__).with_name("shapes")
_COUNT = re.compile(r"\*(\d+)$")


@dataclass(frozen=True)
class ShapeEntry:
    """One problem of a set and how many times the network runs it."""

    spec: ConvSpec
    count: int = 1

    @property
    def descriptor(self) -> str:
        return self.spec.descriptor()

    @property
    def flops(self) -> int:
        """FLOPs of one conv (multiply by ``count`` for the network's share)."""
        return self.spec.flops

    def as_dict(self) -> dict:
        """The JSON form: benchdnn descriptor, costs, and PyTorch-semantics arguments."""
        s = self.spec
        return {"descriptor": self.descriptor, "name": s.name, "count": self.count,
                "flops": s.flops, "macs": s.macs, "bytes": s.bytes(),
                "input_shape": list(s.input_shape), "weight_shape": list(s.weight_shape),
                "output_shape": list(s.output_shape), "stride": list(s.stride),
                "padding": list(s.padding), "dilation": list(s.dilation), "groups": s.groups}


def entry_from_spec(spec: ConvSpec) -> ShapeEntry:
    """Split a trailing ``*N`` off the name into the entry's count."""
    m = _COUNT.search(spec.name)
    if m is None:
        return ShapeEntry(spec)
    count = int(m.group(1))
    if count < 1:
        raise ValueError(f"multiplicity must be positive in name {spec.name!r}")
    return ShapeEntry(dataclasses.replace(spec, name=spec.name[:m.start()]), count)


def parse_shapes(text: str, source: str = "<text>") -> list[ShapeEntry]:
    """The entries of a benchdnn shape file's text; errors name the file and line."""
    entries, pending = [], ""
    for lineno, line in enumerate(text.splitlines(), 1):
        for token in line.split():
            if token.startswith("#"):
                break
            token, pending = pending + token, ""
            if token.endswith("\\"):
                pending = token[:-1]
                continue
            if token.startswith("--"):
                raise ValueError(f"{source}:{lineno}: driver option {token!r} in a shape file; "
                                 "shape files hold descriptors only")
            try:
                entries.append(entry_from_spec(ConvSpec.parse(token)))
            except ValueError as exc:
                raise ValueError(f"{source}:{lineno}: {exc}") from None
    if pending:
        entries.append(entry_from_spec(ConvSpec.parse(pending)))
    return entries


def read_shapes(path: str | Path) -> list[ShapeEntry]:
    path = Path(path)
    return parse_shapes(path.read_text(encoding="utf-8"), str(path))


def grid() -> list[ShapeEntry]:
    """A kernel x image x stride x padding sweep, 32 channels, batch 1 (41 problems).

    Every kernel at every size with stride 1 and "same" padding (k//2); stride 2 only where
    the image is large enough for it to matter; "valid" padding on a few kernels, skipping
    kernels larger than the image.
    """
    kernels, images, c = (1, 3, 5, 7, 9, 13, 17), (14, 28, 56, 112), 32
    cases = [(k, i, 1, "same") for k in kernels for i in images]
    cases += [(k, i, 2, "same") for k in (1, 3, 7, 13) for i in (56, 112)]
    cases += [(k, i, 1, "valid") for k in (3, 9, 17) for i in (14, 56) if k <= i]
    return [ShapeEntry(ConvSpec.build(mb=1, ic=c, ih=i, oc=c, kh=k, sh=s,
                                      ph=k // 2 if pad == "same" else 0,
                                      name=f"grid:k{k}_i{i}_s{s}_{pad}"))
            for k, i, s, pad in cases]


def grid_small() -> list[ShapeEntry]:
    """A 14-problem subset of ``grid`` (41): enough kernel x image points for a coarse
    crossover map (1..17 taps at 14 and 56 pixels, plus stride 2), at a third of the cost;
    the sweep's default. Its entries keep grid's names ("grid:k3_i56_s1_same"), so a report
    can place them."""
    keep = []
    for e in grid():
        s = e.spec
        same = s.ph == s.kh // 2
        if same and ((s.sh == 1 and s.kh in (1, 3, 5, 9, 13, 17) and s.ih in (14, 56))
                     or (s.sh == 2 and s.kh in (3, 13) and s.ih == 56)):
            keep.append(e)
    return keep


#: Sets computed in code rather than read from SHAPES_DIR.
GENERATED = {"grid": grid, "grid-small": grid_small}


def shape_sets() -> list[str]:
    """Names of the built-in sets: every file in benchmarks/shapes/ plus the generated ones."""
    files = [p.name for p in SHAPES_DIR.iterdir() if p.is_file() and not p.name.startswith(".")]
    return sorted(files + list(GENERATED))


def shape_set(name: str, batch: int | None = None) -> list[ShapeEntry]:
    """The entries of a built-in set or of a benchdnn shape file at path ``name``.

    ``batch`` replaces every entry's mb; None keeps the set's own. Unknown names raise
    ValueError listing the known sets.
    """
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int)
                              or batch < 1):
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if name in GENERATED:
        entries = GENERATED[name]()
    elif name in shape_sets():
        entries = read_shapes(SHAPES_DIR / name)
    elif Path(name).is_file():
        entries = read_shapes(name)
    else:
        raise ValueError(f"unknown shape set {name!r}; known sets: {', '.join(shape_sets())} "
                         "(or give the path of a benchdnn shape file)")
    if batch is not None:
        entries = [dataclasses.replace(e, spec=e.spec.with_batch(batch)) for e in entries]
    return entries


# --- command line: python -m benchmarks shapes NAME [--batch N] [--format json|table] -----

def add_parser(subparsers) -> None:
    """Register the ``shapes`` subcommand on ``python -m benchmarks``'s subparsers."""
    p = subparsers.add_parser(
        "shapes", help="print a shape set's problems",
        description="Print the problems of a shape set as benchdnn descriptors with their "
                    "PyTorch arguments, FLOPs (of one conv) and multiplicity.")
    p.add_argument("name", metavar="NAME",
                   help=f"one of {', '.join(shape_sets())}, or a benchdnn shape file's path")
    p.add_argument("--batch", type=_positive_int, default=None, metavar="N",
                   help="override every problem's batch (default: the set's own)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cli)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def cli(args: argparse.Namespace) -> int:
    """Run ``shapes``: 0 on success, 2 for an unknown set or a bad file (bad usage)."""
    try:
        entries = shape_set(args.name, args.batch)
    except (ValueError, OSError) as exc:
        print(f"python -m benchmarks shapes: error: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        # One object per line: readable, and still a single JSON list.
        rows = ",\n ".join(json.dumps(e.as_dict()) for e in entries)
        print(f"[{rows}]" if rows else "[]")
    else:
        print_table(args.name, entries)
    return 0


def print_table(title: str, entries: list[ShapeEntry]) -> None:
    def pair(p):
        return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"

    columns = ("descriptor", "count", "input", "weight", "output", "stride", "pad", "dil",
               "groups", "GFLOP")
    rows = [[e.descriptor, e.count, "x".join(map(str, e.spec.input_shape)),
             "x".join(map(str, e.spec.weight_shape)), "x".join(map(str, e.spec.output_shape)),
             pair(e.spec.stride), pair(e.spec.padding), pair(e.spec.dilation), e.spec.groups,
             f"{e.flops / 1e9:.4g}"] for e in entries]
    total = sum(e.flops * e.count for e in entries)
    display.print_table(title, columns, rows, right=columns[1:], no_wrap=columns[:1],
                        caption=f"{len(entries)} problems, {sum(e.count for e in entries)} "
                                f"convs, {total / 1e9:.4g} GFLOP weighted by count")
