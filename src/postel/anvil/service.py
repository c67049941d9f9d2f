"""anvil - Postel session count and request rate control

SYNOPSIS
    anvil [generic daemon options]

    master.cf:  anvil  unix  -  -  n  -  1  anvil

DESCRIPTION
    Counts, per client, the simultaneous connections and the rate of
    connections, messages, recipients, new TLS sessions and AUTH commands,
    so that smtpd(8) can enforce the smtpd_client_*_limit parameters
    across all its processes.  anvil only counts: the decision, the reply
    and the log line are the client's (smtpd).  There must be exactly one
    anvil process (process limit 1); its state lives in memory.

    A client names what it counts with an ident "service:address", e.g.
    "smtp:192.0.2.1".  Requests (attribute lists, see postel.ipc.attr):

      request=connect     ident=I  -> status=0 count=N rate=N
      request=disconnect  ident=I  -> status=0
      request=message     ident=I  -> status=0 rate=N
      request=recipient   ident=I  -> status=0 rate=N
      request=newtls      ident=I  -> status=0 rate=N
      request=newtls_report ident=I -> status=0 rate=N   (not counted)
      request=auth        ident=I  -> status=0 rate=N
      request=lookup      ident=I  -> status=0 count=N connect_rate=N
                                      message_rate=N rcpt_rate=N
                                      newtls_rate=N auth_rate=N
    A malformed request gets status=1.

    Connections are remembered per client stream: when a client process
    goes away without sending disconnect (a crash), the connections it
    registered are taken off the counts, as Postfix's anvil does.

DIAGNOSTICS
    Every $anvil_status_update_time, when there was activity, and when the
    process exits, the peaks since the last report:

      statistics: max connection rate 12/60s for (smtp:192.0.2.1) at Nov 25 13:09:33
      statistics: max connection count 3 for (smtp:192.0.2.1) at Nov 25 13:09:33
      statistics: max message rate 4/60s for (smtp:192.0.2.1) at Nov 25 13:09:40
      statistics: max recipient rate 9/60s for (smtp:192.0.2.1) at Nov 25 13:09:41
      statistics: max cache size 5 at Nov 25 13:09:41

SEE ALSO
    smtpd(8), postscreen(8), docs/anvil.md

CONFIGURATION PARAMETERS
    anvil_rate_time_unit (60s)       the time unit over which rates are counted
    anvil_status_update_time (600s)  how often the statistics are logged
"""

from __future__ import annotations

import asyncio
import time

from postel import log
from postel.anvil.table import AnvilTable, Peak
from postel.ipc.attr import AttrError, AttrList, serve_requests
from postel.ipc.skeleton import ServiceContext, multi_server_main

STATUS_OK = 0
STATUS_FAIL = 1

# request name -> rate kind counted (None: not counted)
RATE_REQUESTS = {"message": "message", "recipient": "rcpt", "newtls": "newtls",
                 "auth": "auth"}
# statistics label for each peak, in Postfix's order
STAT_LABELS = (("connect", "connection rate"), ("count", "connection count"),
               ("message", "message rate"), ("rcpt", "recipient rate"),
               ("newtls", "newtls rate"), ("auth", "auth rate"))


def _when(t: float) -> str:
    """_when - "Nov 25 13:09:33", the ctime excerpt Postfix logs."""
    return time.ctime(t)[4:19]


class Anvil:
    """Anvil - the table plus the request dispatcher and statistics."""

    def __init__(self, rate_time_unit: float, status_update_time: float,
                 clock=time.time) -> None:
        self.table = AnvilTable(rate_time_unit)
        self.unit = rate_time_unit
        self.status_update_time = status_update_time
        self.clock = clock
        self.reporter: asyncio.Task | None = None

    def handle(self, req: AttrList, mine: dict[str, int]) -> dict[str, object]:
        """handle - answer one request; mine counts this stream's connections."""
        what = req.get("request", "")
        ident = req.get("ident", "")
        if not ident or len(ident) > 1024:
            log.warning("anvil: request %r without a valid ident", what)
            return {"status": STATUS_FAIL}
        now = self.clock()
        if what == "connect":
            counts = self.table.connect(ident, now)
            mine[ident] = mine.get(ident, 0) + 1
            return {"status": STATUS_OK, "count": counts.count, "rate": counts.rate}
        if what == "disconnect":
            if mine.get(ident, 0) > 0:
                mine[ident] -= 1
                self.table.disconnect(ident, now)
            return {"status": STATUS_OK}
        if what in RATE_REQUESTS:
            return {"status": STATUS_OK, "rate": self.table.event(ident, RATE_REQUESTS[what], now)}
        if what == "newtls_report":
            return {"status": STATUS_OK, "rate": self.table.rate(ident, "newtls", now)}
        if what == "lookup":
            return {"status": STATUS_OK, **self.table.lookup(ident, now)}
        log.warning("anvil: unrecognized request: %r", what)
        return {"status": STATUS_FAIL}

    def forget(self, mine: dict[str, int]) -> None:
        """forget - a client stream ended: take its connections off the counts."""
        now = self.clock()
        for ident, n in mine.items():
            for _ in range(n):
                self.table.disconnect(ident, now)
        mine.clear()

    def report(self) -> list[str]:
        """report - log (and return) the statistics lines since the last report."""
        self.table.expire(self.clock())
        peaks, size = self.table.take_peaks()
        lines = []
        unit = f"{self.unit:g}s"
        for key, label in STAT_LABELS:
            peak: Peak | None = peaks.get(key)
            if peak is None or peak.value <= 0:
                continue
            amount = f"{peak.value}" if key == "count" else f"{peak.value}/{unit}"
            lines.append(f"statistics: max {label} {amount} for ({peak.ident}) at {_when(peak.when)}")
        if size.value > 0:
            lines.append(f"statistics: max cache size {size.value} at {_when(size.when)}")
        for line in lines:
            log.info("%s", line)
        return lines

    async def run_reports(self) -> None:
        """run_reports - log statistics every anvil_status_update_time, and at exit."""
        try:
            while True:
                await asyncio.sleep(self.status_update_time)
                self.report()
        finally:
            self.report()


def post_init(ctx: ServiceContext) -> None:
    """post_init - the table; anvil must keep its state: no max_use exit in practice."""
    cfg = ctx.cfg
    status_time = cfg.get_time("anvil_status_update_time")
    # Postfix's anvil never exits for max_use and stays up while idle for
    # a status update period: its counts live only in this process.
    ctx.cfg = cfg.derive({"max_use": "1000000000", "max_idle": f"{max(int(status_time), 1)}s"})
    ctx.state["anvil"] = Anvil(cfg.get_time("anvil_rate_time_unit"), status_time)


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       ctx: ServiceContext) -> None:
    """serve_client - answer one client stream (smtpd, postscreen) until it closes."""
    anvil: Anvil = ctx.state.get("anvil") or ctx.state.setdefault(
        "anvil", Anvil(ctx.cfg.get_time("anvil_rate_time_unit"),
                       ctx.cfg.get_time("anvil_status_update_time")))
    if anvil.reporter is None:
        anvil.reporter = asyncio.get_running_loop().create_task(anvil.run_reports())
    mine: dict[str, int] = {}

    async def handler(req: AttrList) -> dict[str, object]:
        return anvil.handle(req, mine)

    try:
        await serve_requests(reader, writer, handler)
    except AttrError as exc:
        log.warning("anvil: malformed request: %s", exc)
    finally:
        anvil.forget(mine)


def main(argv: list[str]) -> int:
    """main - the anvil daemon."""
    return multi_server_main("anvil", argv, serve_client, post_init=post_init)
