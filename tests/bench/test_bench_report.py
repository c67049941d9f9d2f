"""Smoke tests for bench/harness: parsing and reporting on canned data (no timings)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from harness.report import (  # noqa: E402
    Row,
    format_table,
    median,
    parse_counters,
    percentile,
    ratio,
    results_json,
    spread,
    write_json,
)
from harness.workloads import LogCounter  # noqa: E402
from run import parse_args  # noqa: E402


def test_parse_counters_takes_last_triple():
    buf = b"sess=0 quit=0 mesg=1\rsess=1 quit=1 mesg=2\rsess=2 quit=2 mesg=17\r"
    assert parse_counters(buf) == (2, 2, 17)
    assert parse_counters(b"no counters here") is None


def test_median_spread_ratio():
    row = Row("1 relay", "msg/s", "higher", postfix=[100.0, 120.0, 110.0], postel=[220.0])
    assert median(row.postfix) == 110.0
    assert spread(row.postfix) == (120.0 - 100.0) / 2 / 110.0 * 100
    assert spread(row.postel) is None
    assert ratio(row) == 2.0
    assert ratio(Row("x", "msg/s", "higher", postfix=[1.0])) is None


def test_percentile_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0


def test_table_marks_better_side_and_na():
    rows = [Row("3 accept", "msg/s", "higher", [100.0, 100.0], [50.0, 50.0]),
            Row("6 idle", "MiB PSS", "lower", [130.0], [50.0]),
            Row("7 deferred", "s mailq", "lower", [2.0], [], note_postel="no qmgr"),
            Row("8 wire", "msg/s", "higher", [7000.0], wire_only=True)]
    text = format_table(rows)
    lines = text.splitlines()
    accept = next(ln for ln in lines if ln.startswith("3 accept"))
    assert "0.50 (Postfix better)" in accept
    idle = next(ln for ln in lines if ln.startswith("6 idle"))
    assert "0.38 (Postel better)" in idle
    assert "n/a (no qmgr)" in text
    assert "ceiling" in text and "7000" in text


def test_results_json_round_trip(tmp_path):
    rows = [Row("1 relay", "msg/s", "higher", [10.0, 12.0, 11.0], [22.0, 22.0, 22.0])]
    path = tmp_path / "results" / "r.json"
    write_json(str(path), results_json(rows, {"cores": 2}, {"quick": True}))
    data = json.loads(path.read_text())
    assert data["machine"]["cores"] == 2
    assert data["rows"][0]["postfix_median"] == 11.0
    assert data["rows"][0]["ratio"] == 2.0


def test_log_counter_reads_only_new_complete_lines(tmp_path):
    log = tmp_path / "maillog"
    log.write_text("old: status=deferred\n")
    counter = LogCounter(str(log), r"status=deferred")
    with open(log, "a") as f:
        f.write("a: status=deferred\nb: status=sent\nc: status=def")
    assert counter.poll() == 1
    with open(log, "a") as f:
        f.write("erred\n")
    assert counter.poll() == 2


def test_parse_args_rejects_unknown_workload(capsys):
    args = parse_args(["--quick", "--only", "3,6"])
    assert args.which == ["3", "6"] and args.quick
    try:
        parse_args(["--only", "9"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("workload 9 accepted")
    assert "unknown workload" in capsys.readouterr().err


def test_pyspy_raw_parsing_and_top_frames():
    from harness.profile import _service, parse_raw, top_frames
    raw = ('process 10:"python -m postel.master";process 11:"python -m postel.master";'
           "main (postel/smtpd/service.py:979);Session.loop (postel/smtpd/service.py:471);"
           "StreamWriter.write (asyncio/streams.py:343) 30\n"
           'process 10:"python -m postel.master";process 12:"python -m postel.master";'
           "main (postel/cleanup/service.py:50);sync_file (postel/queue/file.py:447) 10\n"
           "garbage line\n")
    samples = parse_raw(raw)
    assert [(pid, count) for pid, _frames, count in samples] == [(11, 30), (12, 10)]
    assert _service(samples[0], {}) == "smtpd"
    assert _service((13, ["x (y.py:1)"], 1), {13: "trivial-rewrite"}) == "trivial-rewrite"
    own, total, n = top_frames(samples)
    assert n == 40
    assert own[0] == ("StreamWriter.write (asyncio/streams.py:343)", 30)
    assert dict(total)["main (postel/smtpd/service.py:979)"] == 30
