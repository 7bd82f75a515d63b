"""The report's charts, each drawn from result rows into PNG bytes (matplotlib, Agg).

Why Figure() and never pyplot: pyplot keeps global state and picks a GUI backend from the
environment; a report built on a headless CI machine, or twice in one test process, must
not depend on either. Each function takes rows that already carry ``series`` (the backend,
plus the file's label when files are compared) and ``source`` (that label), and returns
None when it has nothing to draw, so the page never shows an empty chart. Nothing here
reads files or decides what the rows mean beyond drawing them: the numbers (medians,
peaks, bandwidths) are the sweep's own, never constants of this module.
"""

from __future__ import annotations

import io
import math
import zlib
from collections import defaultdict

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from benchmarks import records
from benchmarks.records import VARIANT_FIELDS
from reports.results import grid_point

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
#: Hatches tell files apart when two result files are compared (colour stays the backend's).
HATCHES = ("", "//", "..", "xx", "\\\\")
MARKERS = ("o", "s", "^", "D", "v")


def png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def _plain_log(ax, *axes: str) -> None:
    """Log axes labelled 0.5, 2, 100 rather than 5x10^-1: people read values off these.
    An axis spanning under two decades (speedups of 0.3x to 3x) is labelled at 1, 2 and 5
    of each decade: with decades alone it showed one label, "1"."""
    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    for name in axes:
        axis = getattr(ax, f"{name}axis")
        low, high = getattr(ax, f"get_{name}lim")()
        if 0 < low < high < low * 100:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(fmt)
        axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def shape_label(row: dict) -> str:
    """The layer's own name without its set's prefix; the descriptor when unnamed."""
    name = row.get("name") or row.get("descriptor") or "?"
    return name.split(":", 1)[-1]


#: The built-in backends' colours, fixed so a backend looks the same in every chart and
#: every report; any other backend (a user's) gets one from its name's checksum.
COLOURS = {"torch": PALETTE[2], "unfold": PALETTE[3], "fft": PALETTE[0], "naive": PALETTE[1],
           "triton": PALETTE[4]}


def colour_of(backend: str) -> str:
    return COLOURS.get(backend) or PALETTE[5 + zlib.crc32(backend.encode()) % 5]


def _look(row: dict) -> tuple[str, str]:
    """What, beside the colour (the backend), tells a series apart: its file and variant."""
    return row["source"], row.get("variant") or ""


def _styles(rows: list[dict]) -> tuple[dict, dict]:
    """Colour per backend, and an index per look (file and variant) for hatch or marker."""
    looks = list(dict.fromkeys(_look(r) for r in rows))
    return ({r["backend"]: colour_of(r["backend"]) for r in rows},
            {look: i for i, look in enumerate(looks)})


def _shapes(rows: list[dict]) -> list[str]:
    """Shape labels in the set's order (its index), whatever the backends' outcomes."""
    order = {}
    for r in sorted(rows, key=lambda r: (r.get("index") or 0)):
        order.setdefault(shape_label(r), None)
    return list(order)


def grouped_bars(rows: list[dict], value, title: str, ylabel: str, log: bool = True,
                 reference: float | None = None, interval=None) -> bytes | None:
    """One bar per (shape, series): shapes on the x axis, series side by side.
    ``value(row)`` gives the bar's height, or None when the row has none; ``interval(row)``
    a (low, high) drawn as an error bar, or None (a bar of 3x whose interval reaches from
    0.3x to 3.8x says so at a glance).

    Bars must not lie by their length: with a ``reference`` (a speedup's 1x) each bar grows
    from it, up when faster, down when slower, on a log axis where the values span over
    10x (else linear); without one the axis is linear from 0 unless the values span two
    decades (naive beside torch), where a log axis is the only way to show both, and bars
    start at its bottom. (Log bars from the axis bottom drew 12 against 25 GFLOP/s as a
    sliver beside a full bar.)"""
    points = {(shape_label(r), r["series"]): value(r) for r in rows}
    spans = {(shape_label(r), r["series"]): interval(r) for r in rows} if interval else {}
    points = {k: v for k, v in points.items() if v is not None and v > 0}
    if not points:
        return None
    shapes = _shapes(rows)
    first = {r["series"]: r for r in rows}
    colour, look_index = _styles(rows)
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    # A backend's bars from two files (or precisions) side by side, to compare at a glance.
    series = sorted(dict.fromkeys(r["series"] for r in rows if (shape_label(r), r["series"])
                                  in points),
                    key=lambda s: (backends.index(first[s]["backend"]),
                                   look_index[_look(first[s])]))
    values = list(points.values())
    log = log and max(values) > (10 if reference is not None else 100) * min(values)
    base = reference if reference is not None else 0.0
    width = 0.8 / len(series)
    fig = Figure(figsize=(max(6.0, 0.45 * len(shapes) * max(1, len(series) / 3)), 4.2))
    ax = fig.add_subplot()
    for i, s in enumerate(series):
        xs = [k for k, shape in enumerate(shapes) if (shape, s) in points]
        ys = [points[(shapes[k], s)] for k in xs]
        centres = [x - 0.4 + width * (i + 0.5) for x in xs]
        ax.bar(centres, [y - base for y in ys], width, bottom=base or None, label=s,
               color=colour[first[s]["backend"]], edgecolor="black", linewidth=0.3,
               hatch=HATCHES[look_index[_look(first[s])] % len(HATCHES)])
        bars = [(c, y, spans.get((shapes[k], s))) for c, y, k in zip(centres, ys, xs)]
        bars = [(c, y, span) for c, y, span in bars if span]
        if bars:
            ax.errorbar([c for c, _, _ in bars], [y for _, y, _ in bars],
                        yerr=[[y - lo for _, y, (lo, _) in bars],
                              [hi - y for _, y, (_, hi) in bars]],
                        fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
    if reference is not None:
        ax.axhline(reference, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(shapes)), shapes, rotation=60, ha="right", fontsize=7)
    ax.set_yscale("log" if log else "linear")
    if log:
        _plain_log(ax, "y")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside: no overlap
    return png(fig)


def speedups(rows: list[dict], baseline: str = "torch") -> list[dict]:
    """Per ok row with a baseline row of the same shape, direction and variant (device,
    precision, cache mode: records.VARIANT_FIELDS) in the same file (the same run): torch's
    median / this backend's median (> 1: faster than torch). A backward time is only ever
    divided by the baseline's time of the same backward direction. On CUDA, where both rows
    have a CUDA-graph time (graph_median_s), those are divided: the wall-clock median of a
    small layer is mostly launch overhead, not the kernel; a row timed in turn with torch
    (sweep --paired-with torch) gives its paired_ratio (benchmarks.records.speedup).

    A quotient of medians whose rows started over APART_S apart is marked
    (``speedup_apart_s``): one file holds every run that resumed it, and a backend swept
    later is divided by torch's rows of the first run, on a machine that may have been in
    another state (a user's backend read 50x torch's speed, against a torch timed nine
    minutes earlier under other load). Each ratio carries its 95% interval where paired
    rounds give one (``speedup_ci``) and whether it is in doubt (``speedup_noisy``,
    records.judged_speedup)."""
    def key(r):  # the variant too: a merged file may hold several
        return (r["source"], r["shape_set"], r["descriptor"], r.get("direction") or "forward",
                *(get(r) for get in VARIANT_FIELDS.values()))

    base = {key(r): r for r in rows if r["backend"] == baseline and r["status"] == "ok"}
    peers = defaultdict(dict)  # the shape's other rows, for a chain of paired ratios
    for r in rows:
        if r["status"] == "ok":
            peers[key(r)][r["backend"]] = r
    out = []
    for r in rows:
        b = base.get(key(r))
        if r["status"] != "ok" or r["backend"] == baseline or not b or not r["median_s"]:
            continue
        judged = records.judged_speedup(r, b, peers[key(r)])
        apart = records.seconds_apart(r, b) if judged["timing"] == "median_s" else None
        out.append({**r, "speedup": judged["ratio"], "speedup_timing": judged["timing"],
                    "speedup_ci": judged["ci"], "speedup_noisy": judged["noisy"],
                    "speedup_apart_s": apart if apart and apart > APART_S else None})
    return out


#: Rows that started further apart than this were not timed in one sweep's stretch.
APART_S = 600.0


def roofline(rows: list[dict], machines: dict[str, dict]) -> bytes | None:
    """Achieved GFLOP/s against arithmetic intensity, under each machine's measured roof:
    min(peak, intensity x bandwidth). ``machines`` maps a label to a machine record (one
    per file and precision: the peak is measured in the sweep's dtype)."""
    ok = [r for r in rows if r["status"] == "ok" and r.get("gflops")
          and r.get("arithmetic_intensity")]
    if not ok:
        return None
    colour, look_index = _styles(ok)
    fig = Figure(figsize=(7.5, 5))
    ax = fig.add_subplot()
    for series in dict.fromkeys(r["series"] for r in ok):
        pts = [r for r in ok if r["series"] == series]
        ax.scatter([r["arithmetic_intensity"] for r in pts], [r["gflops"] for r in pts],
                   s=18, label=series, color=colour[pts[0]["backend"]],
                   marker=MARKERS[look_index[_look(pts[0])] % len(MARKERS)], alpha=0.8)
    lo = min(r["arithmetic_intensity"] for r in ok) / 2
    hi = max(r["arithmetic_intensity"] for r in ok) * 2
    for i, (label, m) in enumerate(machines.items()):
        peak, bw = m.get("peak_gflops"), m.get("bandwidth_gbps")
        if not (peak and bw):
            continue
        xs = [lo * (hi / lo) ** (k / 100) for k in range(101)]
        ax.plot(xs, [min(peak, x * bw) for x in xs], color="black", linewidth=1,
                linestyle=("-", "--", ":", "-.")[i % 4],
                label=f"roof {label}: {peak:.4g} GFLOP/s, {bw:.3g} GB/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log(ax, "x", "y")
    ax.set_xlabel("arithmetic intensity (FLOPs / byte of input + weight + output)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title("Roofline (peak and bandwidth measured by the sweep)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return png(fig)


def crossover(rows: list[dict], title: str) -> bytes | None:
    """Fastest backend per kernel size x image size (grid entries, stride 1, "same"
    padding), as a categorical heatmap annotated with the winner and its lead over the
    runner-up. None without at least two backends timed on the grid: a map of one
    backend "fastest" everywhere, with no runner-up, says nothing."""
    best = defaultdict(list)
    for r in rows:
        g = grid_point(r.get("name"))
        if g and g["stride"] == 1 and g["padding"] == "same" and r["status"] == "ok" \
                and r.get("median_s"):
            best[(g["kernel"], g["image"])].append((r["median_s"], r["backend"]))
    if len({b for v in best.values() for _, b in v}) < 2:
        return None
    kernels = sorted({k for k, _ in best})
    images = sorted({i for _, i in best})
    backends = sorted({b for v in best.values() for _, b in v})
    cells = [[math.nan] * len(kernels) for _ in images]
    fig = Figure(figsize=(1.1 * len(kernels) + 2.5, 0.8 * len(images) + 1.8))
    ax = fig.add_subplot()
    for (k, i), times in best.items():
        times.sort()
        y, x = images.index(i), kernels.index(k)
        cells[y][x] = backends.index(times[0][1])
        lead = f"\nx{times[1][0] / times[0][0]:.2g}" if len(times) > 1 else ""
        ax.text(x, y, times[0][1] + lead, ha="center", va="center", fontsize=7)
    ax.imshow(cells, cmap=ListedColormap([colour_of(b) for b in backends]), vmin=-0.5,
              vmax=len(backends) - 0.5, origin="lower", aspect="auto", alpha=0.6)
    ax.set_xticks(range(len(kernels)), [f"{k}x{k}" for k in kernels])
    ax.set_yticks(range(len(images)), [f"{i}x{i}" for i in images])
    ax.set_xlabel("kernel size")
    ax.set_ylabel("image size")
    ax.set_title(title + "\n(label: fastest backend, and how much faster than the runner-up)",
                 fontsize=9)
    return png(fig)
