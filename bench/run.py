"""run - Postel and Postfix side by side (`make bench`)

SYNOPSIS
    .venv/bin/python bench/run.py [--quick] [--rounds N] [--only 1,3,6,8]
                                  [--no-postfix] [--no-postel] [--json FILE] [--keep]
    .venv/bin/python bench/run.py --profile SECONDS [--profile-out FILE]

DESCRIPTION
    Starts a private, real Postfix (the Debian package: its own config
    and queue directories in a temporary directory, 127.0.0.1 high ports,
    relayhost to smtp-sink, no DNS, no TLS, stock defaults otherwise) and
    a Postel instance configured the same way, runs each workload of
    issue 8 against both in the same run, alternating, --rounds rounds
    (3), and prints a table of Postfix's median, Postel's median (each
    with its spread) and the ratio Postel / Postfix.  Load comes only
    from smtp-source (and, where it cannot do the job, small clients in
    harness/smtpclient.py); the next hop is smtp-sink.  The figures and
    the machine (cores, Python, uvloop, fsync) also go to
    bench/results/bench-YYYYmmdd-HHMMSS[-quick].json.

    --quick runs the same workloads with fewer messages and two rounds
    (workload 7 with 5 000 messages and one round) so that the whole run
    takes less than three minutes.

    --profile SECONDS runs py-spy (pip install py-spy) over Postel's
    processes while smtp-source keeps the acceptance path busy (delivery
    held), and prints the functions with the most samples, by own time
    and by total time.

    Every process started is stopped on exit, on error and on Ctrl-C:
    `postfix -c DIR stop`, `postel stop`, kill for smtp-sink.  Postfix
    needs root; without it, only Postel is measured.

SEE ALSO
    docs/performance.md, harness/workloads.py
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness.mta import Reaper  # noqa: E402
from harness.report import format_table, machine_info, results_json, write_json  # noqa: E402
from harness.workloads import Bench  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
ALL = ["1", "2", "3", "4", "5", "6", "7", "8"]


def _sigterm(_signo, _frame) -> None:
    """_sigterm - turn SIGTERM into SystemExit so that cleanup runs."""
    raise SystemExit(143)


def _raise_nofile() -> None:
    """_raise_nofile - 1000 idle sessions need more than 1024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(soft, 8192), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _compile_bytecode() -> None:
    """_compile_bytecode - byte-compile src/ once, as an installed package is.

    With PYTHONDONTWRITEBYTECODE set (or a read-only tree) no __pycache__ is
    ever written, and every Postel process would compile its modules from
    source at each start: ~90 ms of a mailq run.  Python still reads .pyc
    files it may not write, and recompiles any that are older than the source."""
    import compileall

    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    compileall.compile_dir(src, quiet=1)


def _check_tools() -> str | None:
    """_check_tools - why the bench cannot run, or None."""
    for tool in ("smtp-source", "smtp-sink"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} not found (install Postfix: make peers)"
    return None


QUICK_ROUNDS = 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    """parse_args - the command line."""
    ap = argparse.ArgumentParser(prog="bench/run.py", description="Postel vs Postfix benchmarks")
    ap.add_argument("--quick", action="store_true", help="reduced set, under 3 minutes")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 3, quick: 2)")
    ap.add_argument("--only", default=",".join(ALL), help="comma-separated workload numbers")
    ap.add_argument("--no-postfix", action="store_true")
    ap.add_argument("--no-postel", action="store_true")
    ap.add_argument("--json", help="results file (default: bench/results/bench-<time>.json)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--profile", type=float, metavar="SECONDS",
                    help="profile Postel's acceptance path with py-spy instead")
    ap.add_argument("--profile-out", help="also write the raw py-spy samples here")
    args = ap.parse_args(argv)
    which = [w.strip() for w in args.only.split(",") if w.strip()]
    bad = [w for w in which if w not in ALL]
    if bad:
        ap.error(f"unknown workload(s): {', '.join(bad)} (choose from {', '.join(ALL)})")
    if args.rounds is None:
        args.rounds = QUICK_ROUNDS if args.quick else 3
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    args.which = which
    return args


def main(argv: list[str]) -> int:
    """main - run the benchmarks; exit status 0 when the table was produced."""
    args = parse_args(argv)
    why = _check_tools()
    if why:
        print(f"bench: {why}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _sigterm)
    _raise_nofile()
    _compile_bytecode()
    run_postfix = not args.no_postfix
    if run_postfix and os.geteuid() != 0:
        print("bench: not root, so no private Postfix; measuring Postel only", file=sys.stderr)
        run_postfix = False
    workdir = tempfile.mkdtemp(prefix="postel-bench-")
    os.chmod(workdir, 0o755)             # Postfix's daemons must traverse it
    t_start = time.monotonic()
    try:
        with Reaper() as reaper:
            if args.profile:
                from harness.profile import profile_acceptance
                return profile_acceptance(workdir, reaper, args.profile, args.profile_out)
            bench = Bench(workdir, reaper, quick=args.quick, rounds=args.rounds,
                          log=lambda s: print(s, file=sys.stderr, flush=True),
                          run_postel=not args.no_postel, run_postfix=run_postfix)
            rows = bench.run(args.which)
    except KeyboardInterrupt:
        print("bench: interrupted; everything started was stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"bench: kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    machine = machine_info()
    meta = {"quick": args.quick, "rounds": args.rounds, "workloads": args.which,
            "seconds": round(time.monotonic() - t_start, 1),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    print(f"machine: {machine['cores']} cores ({machine['cpu']}), Python {machine['python']}, "
          f"uvloop {'on' if machine['uvloop'] else 'off'}, Postfix {machine['postfix']}, "
          f"fsync {machine['fsync']}")
    print(f"rounds: {args.rounds}{' (quick)' if args.quick else ''}; "
          f"figures are medians, ±: half the range in % of the median; "
          f"took {meta['seconds']}s")
    print(format_table(rows))
    path = args.json or os.path.join(
        RESULTS, time.strftime("bench-%Y%m%d-%H%M%S") + ("-quick" if args.quick else "") + ".json")
    write_json(path, results_json(rows, machine, meta))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
