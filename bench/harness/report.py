"""report - statistics, the side-by-side table and the JSON results file

SYNOPSIS
    from harness.report import Row, format_table, results_json, machine_info, percentile

    rows = [Row("3 accept 1KiB s=20", "msg/s", "higher", [310.0, 325.5, 298.1], [280.2, 290.0, 275.4])]
    print(format_table(rows))
    json.dump(results_json(rows, machine_info(), {"quick": False}), f)

DESCRIPTION
    A Row holds the samples of one figure for Postfix and for Postel
    (one per round; an empty list is "n/a", with the reason in the
    note).  The table shows each side's median with its spread (half the
    range, as a percentage of the median) and the ratio Postel / Postfix
    of the medians.  Whether a ratio above 1 is good depends on the
    figure: throughput is "higher" is better, memory and latency "lower";
    the table marks the better side.

    Rows with only one side (wire_only: the smtp-source -> smtp-sink
    ceiling, kept in the postfix list) go into a second table.

    parse_counters reads smtp-sink -c output ("sess=N quit=N mesg=N",
    separated by carriage returns).
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field

COUNTER_RX = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)")


@dataclass(slots=True)
class Row:
    """One figure, measured on both MTAs (or on the wire alone)."""

    workload: str
    metric: str
    better: str                       # "higher" or "lower"
    postfix: list[float] = field(default_factory=list)
    postel: list[float] = field(default_factory=list)
    note_postfix: str = ""
    note_postel: str = ""
    wire_only: bool = False


def median(samples: list[float]) -> float | None:
    """median - of the samples, None when there are none."""
    return statistics.median(samples) if samples else None


def spread(samples: list[float]) -> float | None:
    """spread - half the range as a percentage of the median (None below 2 samples)."""
    if len(samples) < 2:
        return None
    m = statistics.median(samples)
    if m == 0:
        return None
    return (max(samples) - min(samples)) / 2 / abs(m) * 100


def ratio(row: Row) -> float | None:
    """ratio - Postel's median / Postfix's median, None when either is missing."""
    a, b = median(row.postel), median(row.postfix)
    if a is None or b is None or b == 0:
        return None
    return a / b


def percentile(values: list[float], p: float) -> float:
    """percentile - nearest-rank percentile p (0-100) of values (not empty)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))          # ceil(n * p / 100)
    return ordered[int(rank) - 1]


def parse_counters(buf: bytes) -> tuple[int, int, int] | None:
    """parse_counters - the last (sess, quit, mesg) triple in smtp-sink -c output."""
    last = None
    for m in COUNTER_RX.finditer(buf):
        last = m
    if last is None:
        return None
    return int(last.group(1)), int(last.group(2)), int(last.group(3))


def _fmt_value(value: float | None) -> str:
    """_fmt_value - a figure with sensible precision."""
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _fmt_side(samples: list[float], note: str) -> str:
    """_fmt_side - 'median ±spread%' or 'n/a (note)'."""
    m = median(samples)
    if m is None:
        return f"n/a ({note})" if note else "n/a"
    s = spread(samples)
    text = _fmt_value(m) + (f" ±{s:.0f}%" if s is not None else "")
    return text


def _columns(head: tuple[str, ...], lines: list[tuple[str, ...]]) -> list[str]:
    """_columns - head, rule and lines padded into columns."""
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(len(head))]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip(),
           "  ".join("-" * w for w in widths)]
    for line in lines:
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    return out


def _verdict(row: Row, r: float) -> str:
    """_verdict - the ratio and which side it favours."""
    if abs(r - 1) < 0.005:
        return f"{r:.2f} (equal)"
    good = r > 1 if row.better == "higher" else r < 1
    return f"{r:.2f} " + ("(Postel better)" if good else "(Postfix better)")


def format_table(rows: list[Row]) -> str:
    """format_table - the side-by-side table, then the wire ceilings, for stdout."""
    lines = []
    for row in rows:
        if row.wire_only:
            continue
        r = ratio(row)
        lines.append((row.workload, row.metric, _fmt_side(row.postfix, row.note_postfix),
                       _fmt_side(row.postel, row.note_postel), "" if r is None else _verdict(row, r)))
    out = []
    if lines:
        out += _columns(("workload", "metric", "Postfix", "Postel", "Postel/Postfix"), lines)
    wire = [(row.workload, row.metric, _fmt_side(row.postfix, row.note_postfix))
            for row in rows if row.wire_only]
    if wire:
        if out:
            out.append("")
        out += _columns(("ceiling (smtp-source -> smtp-sink)", "metric", "figure"), wire)
    return "\n".join(out)


def _cmd_output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict:
    """machine_info - cores, CPU, kernel, Python, uvloop, Postfix version."""
    try:
        import uvloop  # noqa: F401
        uv = True
    except ImportError:
        uv = False
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "uvloop": uv,
        "postfix": _cmd_output(["postconf", "-dh", "mail_version"]),
        "fsync": "on (both MTAs fsync each queue file before 250)",
    }


def results_json(rows: list[Row], machine: dict, meta: dict) -> dict:
    """results_json - everything needed to redraw the table later."""
    out_rows = []
    for row in rows:
        d = asdict(row)
        d["postfix_median"] = median(row.postfix)
        d["postel_median"] = median(row.postel)
        d["ratio"] = ratio(row)
        out_rows.append(d)
    return {"machine": machine, "meta": meta, "rows": out_rows}


def write_json(path: str, data: dict) -> None:
    """write_json - the results file (directory created when missing)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
