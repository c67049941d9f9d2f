"""harness - the side-by-side benchmark harness behind `make bench`

SYNOPSIS
    .venv/bin/python bench/run.py [--quick] [--rounds N] [--only W,...]

DESCRIPTION
    mta        private Postfix and Postel instances, smtp-sink, process
               memory (PSS), cleanup of everything started
    smtpclient small asyncio SMTP clients: DATA-end-to-250 latency, idle
               sessions, one message to many recipients
    workloads  the eight workloads of issue 8
    report     statistics (median, spread, ratio), the stdout table, the
               JSON file under bench/results/, smtp-sink counter parsing
"""
