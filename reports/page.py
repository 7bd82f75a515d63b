"""The report's two documents: index.html (charts inline) and summary.md.

Why separate from reports/build.py: what the reader sees (order, wording, escaping) changes
more often than what is computed. The HTML is one file with no scripts, no external
stylesheets or fonts and every chart a ``data:image/png;base64`` URI, so it renders the same
from a CI artifact, a mail attachment or ``python -m http.server``, and loads nothing. Every
text from a result file is escaped: reasons quote exceptions, which may contain ``<``.
"""

from __future__ import annotations

import base64
import html as htmllib
from collections import Counter

STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1400px;color:#222}
table{border-collapse:collapse;font-size:12px;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f0f0f0}figure{display:inline-block;margin:.5em;vertical-align:top}
figcaption{font-size:12px;color:#555;max-width:700px}img{max-width:100%}
.warn{color:#a40}.fail{color:#c00;font-weight:bold}"""


def _e(value) -> str:
    if isinstance(value, float):
        value = f"{value:.4g}"
    return htmllib.escape("" if value is None else str(value))


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _machine_rows(machines) -> tuple[list[str], list[list]]:
    """Fields down, machines across: a reader compares two machines line by line."""
    keys = list(dict.fromkeys(k for _, m in machines for k in m))
    return ["", *[label for label, _ in machines]], [[k, *[m.get(k) for _, m in machines]]
                                                     for k in keys]


def _problem_rows(problems) -> list[list]:
    return [[r["source"], r["status"], r.get("backend_variant") or r["backend"],
             r["shape_set"], r.get("name") or "", r["descriptor"], r["direction"],
             r.get("reason") or ""] for r in problems]


PROBLEM_HEADER = ["file", "status", "backend", "shape set", "name", "descriptor", "direction",
                  "reason"]
#: What "of them paired" means, under the speedup table.
PAIRED_NOTE = ("Paired: the ratio of rounds taken in turn with torch's (sweep --paired-with "
               "torch), which the machine's drift between two cases cannot move; the others "
               "divide two medians timed apart. Over 10 min apart: medians whose rows "
               "started that far apart, as when a backend is swept into a file whose torch "
               "rows an earlier run timed (a resumed sweep keeps the rows it has): the "
               "machine may have been in another state; time them together with "
               "--paired-with torch, or start the file anew with --fresh. In doubt: a "
               "paired ratio whose 95% interval is wider than \u00b110% (or of under 6 "
               "rounds), or medians of which either was noisy (IQR over 10%) or timed "
               "while the hypervisor took over 10% of the CPU or other processes kept over "
               "half a CPU busy; the charts draw paired intervals as error bars.")
RATIO_HEADER = ["file", "direction", "shape set", "backend", "speedup over torch (geomean)",
                "shapes compared", "of them paired", "of them over 10 min apart",
                "of them in doubt", "shapes timed"]
COVERAGE_HEADER = ["file", "direction", "backend", "timed", "skipped",
                   "failed, timed out or crashed"]
#: What each direction's numbers are: the headings of the page's chart sections.
DIRECTION_TITLES = {
    "forward": "Forward: y = conv(x, w)",
    "backward-data": "Backward-data: dL/dx alone (the forward ran before, untimed)",
    "backward-weights": "Backward-weights: dL/dw alone (the forward ran before, untimed)",
}
CHECK_HEADER = ["backend", "feature", "passed", "failed", "skipped", "max |error|",
                "|error| nearest its bound", "that bound", "reasons"]


def _ratio_rows(ratios) -> list[list]:
    return [[r["source"], r["direction"], r["shape_set"], r["backend"],
             f"x{r['geomean_speedup']:.3g}", r["shapes"], r.get("paired", 0),
             r.get("apart", 0), r.get("in_doubt", 0), r["ran"]]
            for r in ratios]


def _coverage_rows(coverage) -> list[list]:
    return [[c["source"], c["direction"], c["backend"], c["ok"], c["skipped"], c["failed"]]
            for c in coverage]


def _chart_parts(charts) -> list[str]:
    """A heading per direction, a subheading per kind of chart, then its figures."""
    parts, direction, section = [], None, None
    for where, title, caption, image in charts:
        if where != direction:
            heading = DIRECTION_TITLES.get(where, where)
            parts.append(f"<h2 id=\"direction-{_e(where)}\">{_e(heading)}</h2>")
            direction, section = where, None
        if title != section:
            parts.append(f"<h3>{_e(title)}</h3>")
            section = title
        data = base64.b64encode(image).decode("ascii")
        parts.append(f"<figure><img alt=\"{_e(caption)}\" src=\"data:image/png;base64,{data}\">"
                     f"<figcaption>{_e(caption)}</figcaption></figure>")
    return parts


def _check_rows(checks) -> list[list]:
    return [[c["backend"], c["feature"], c["passed"], c["failed"], c["skipped"],
             c["max_error"], c["error"], c["bound"], "; ".join(c["reasons"])] for c in checks]


def _verdict_parts(verdicts) -> list[str]:
    """A line per backend of the results: failed (red), not checked (why), or passed."""
    style = {"failed": " class=fail", "unchecked": " class=warn"}
    return ["<ul>", *[f"<li{style.get(kind, '')}>{_e(text)}</li>" for kind, text in verdicts],
            "</ul>"] if verdicts else []


#: Above each per-shape table (reports.build.shape_tables).
SHAPE_NOTE = ("Median time per call; in brackets the speedup over torch, as in the chart "
              "(* in doubt: noisy, disturbed, or too few paired rounds).")


def html(sets, machines, charts, ratios, coverage, problems, checks, warnings=(), alarms=(),
         verdicts=(), per_shape=()) -> str:
    """``alarms``: backends that failed the correctness check, shown first and in red;
    ``verdicts``: (failed / unchecked / passed, line) per backend of the results;
    ``per_shape``: (title, header, rows) tables of each shape's numbers."""
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8>"
             f"<title>convbench report</title><style>{STYLE}</style></head><body>",
             "<h1>convbench: conv2d speed and correctness</h1>",
             "<p>Sources: " + "; ".join(
                 f"<b>{_e(s.label)}</b> ({_e(', '.join(map(str, s.paths)))}, {len(s.rows)} rows)"
                 for s in sets) + "</p>",
             *[f"<p class=fail>{_e(a)} (<a href=\"#correctness\">details</a>)</p>"
               for a in alarms],
             *[f"<p class=warn>warning: {_e(w)}</p>" for w in warnings],
             "<h2 id=machine>Machine</h2>", _table(*_machine_rows(machines)),
             "<h2 id=coverage>Cases per backend and direction</h2>",
             _table(COVERAGE_HEADER, _coverage_rows(coverage)), *_chart_parts(charts)]
    parts += ["<h2 id=speedup>Speedup over torch, per shape set and direction</h2>",
              f"<p>{_e(PAIRED_NOTE)}</p>", _table(RATIO_HEADER, _ratio_rows(ratios)),
              *(f"<h3>Per shape: {_e(title)}</h3><p>{_e(SHAPE_NOTE)}</p>"
                + _table(header, body) for title, header, body in per_shape),
              f"<h2 id=problems>Cases not timed ({len(problems)})</h2>",
              "<p>" + _e(", ".join(f"{n} {s}" for s, n in
                                   sorted(Counter(r["status"] for r in problems).items())))
              + "</p>", _table(PROBLEM_HEADER, _problem_rows(problems))]
    parts.append("<h2 id=correctness>Correctness (in the dtypes and directions timed, "
                 "against the float64 reference)</h2>")
    parts += _verdict_parts(verdicts)
    parts.append(_table(CHECK_HEADER, _check_rows(checks)) if checks is not None else
                 "<p class=warn>not checked (--no-correctness)</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _md_table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        v = f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
        return v.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, r)) + " |" for r in rows])


def markdown(sets, machines, ratios, coverage, problems, checks, rows, warnings=(), alarms=(),
             verdicts=(), per_shape=()) -> str:
    counts = Counter((r["source"], r["status"]) for r in rows)
    out = ["# convbench report", "",
           *[f"- **{s.label}**: {', '.join(map(str, s.paths))}: " + ", ".join(
               f"{n} {st}" for (src, st), n in sorted(counts.items()) if src == s.label)
             for s in sets], *[f"- **{a}** (see Correctness)" for a in alarms],
           *[f"- warning: {w}" for w in warnings], "", "## Machine", "",
           _md_table(*_machine_rows(machines)), "",
           "## Cases per backend and direction", "",
           _md_table(COVERAGE_HEADER, _coverage_rows(coverage)), "",
           "## Speedup over torch (geometric mean over the shapes both ran, per direction)", "",
           PAIRED_NOTE, "",
           _md_table(RATIO_HEADER, _ratio_rows(ratios)), "",
           *[part for title, header, body in per_shape for part in (
               f"### Per shape: {title}", "", SHAPE_NOTE, "", _md_table(header, body), "")],
           f"## Cases not timed ({len(problems)})", "",
           _md_table(PROBLEM_HEADER, _problem_rows(problems)), "",
           "## Correctness (in the dtypes and directions timed, against the float64 reference)", ""]
    out += [f"- {'**' + text + '**' if kind == 'failed' else text}" for kind, text in verdicts]
    out += [""] if verdicts else []
    out.append(_md_table(CHECK_HEADER, _check_rows(checks)) if checks is not None
               else "not checked (--no-correctness)")
    return "\n".join(out) + "\n"
