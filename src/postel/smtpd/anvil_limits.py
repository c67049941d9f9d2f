"""anvil_limits - smtpd's per-client connection, message and recipient limits

SYNOPSIS
    from postel.smtpd.anvil_limits import ClientLimits
    limits = ClientLimits.from_config(cfg, queue_directory, service_name)
    reply = await limits.connect(addr, peer)     # Reply (421) or None
    reply = await limits.message(addr, peer)     # Reply (450) or None
    reply = await limits.recipient(addr, peer)   # Reply (450) or None
    await limits.disconnect(addr)

DESCRIPTION
    smtpd asks anvil(8) to count the client's simultaneous connections and
    its connection, message and recipient rates, and refuses the client
    when a count goes over its limit, with Postfix's replies and warnings:

      421 4.7.0 HOST Error: too many connections from ADDR
      450 4.7.1 Error: too much mail from ADDR
      450 4.7.1 Error: too many recipients from ADDR

      warning: Connection concurrency limit exceeded: 51 from NAME[ADDR] for service smtp
      warning: Connection rate limit exceeded: 31 from NAME[ADDR] for service smtp
      warning: Message delivery request rate limit exceeded: 9 from NAME[ADDR] for service smtp
      warning: Recipient address rate limit exceeded: 101 from NAME[ADDR] for service smtp

    A limit of 0 means no limit.  Clients in
    $smtpd_client_event_limit_exceptions (by default $mynetworks) are not
    counted at all.  When every limit is 0 anvil is not asked.  When anvil
    is down, mail flows without limits (AnvilClient logs one warning).

CONFIGURATION PARAMETERS
    smtpd_client_connection_count_limit (50)    simultaneous connections
    smtpd_client_connection_rate_limit (0)      connections per time unit
    smtpd_client_message_rate_limit (0)         MAIL FROM per time unit
    smtpd_client_recipient_rate_limit (0)       RCPT TO per time unit
    smtpd_client_event_limit_exceptions ($mynetworks)
    anvil_rate_time_unit (60s)                  the time unit (anvil's)
"""

from __future__ import annotations

from dataclasses import dataclass

from postel import log
from postel.ipc.anvil_client import AnvilClient
from postel.protocol.replies import Reply
from postel.smtpd.restrictions import NetworkList

R421_TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "{host} Error: too many connections from {addr}")
R450_TOO_MUCH_MAIL = Reply(450, "4.7.1", "Error: too much mail from {addr}")
R450_TOO_MANY_RCPTS = Reply(450, "4.7.1", "Error: too many recipients from {addr}")


@dataclass(slots=True)
class ClientLimits:
    """ClientLimits - the limits of one smtpd process and its anvil client."""

    myhostname: str
    service: str
    count_limit: int
    conn_rate_limit: int
    msg_rate_limit: int
    rcpt_rate_limit: int
    rate_unit: str
    exceptions: NetworkList
    anvil: AnvilClient

    @classmethod
    def from_config(cls, cfg, queue_directory: str, service: str) -> ClientLimits:
        """from_config - read the limit parameters once per process."""
        return cls(myhostname=cfg.get("myhostname"), service=service,
                   count_limit=cfg.get_int("smtpd_client_connection_count_limit"),
                   conn_rate_limit=cfg.get_int("smtpd_client_connection_rate_limit"),
                   msg_rate_limit=cfg.get_int("smtpd_client_message_rate_limit"),
                   rcpt_rate_limit=cfg.get_int("smtpd_client_recipient_rate_limit"),
                   rate_unit=f"{cfg.get_time('anvil_rate_time_unit'):g}s",
                   exceptions=NetworkList(cfg.get_list("smtpd_client_event_limit_exceptions")),
                   anvil=AnvilClient(queue_directory))

    def applies(self, addr: str) -> bool:
        """applies - is this client counted at all?"""
        if not (self.count_limit or self.conn_rate_limit or self.msg_rate_limit
                or self.rcpt_rate_limit):
            return False
        return not self.exceptions.match(addr)

    async def connect(self, addr: str, peer: str) -> Reply | None:
        """connect - count a new connection; the 421 refusal or None."""
        counts = await self.anvil.connect(self.service, addr)
        if counts is None:
            return None
        count, rate = counts
        if self.count_limit > 0 and count > self.count_limit:
            log.warning("Connection concurrency limit exceeded: %d from %s for service %s",
                        count, peer, self.service)
            return R421_TOO_MANY_CONNECTIONS.format(host=self.myhostname, addr=addr)
        if self.conn_rate_limit > 0 and rate > self.conn_rate_limit:
            log.warning("Connection rate limit exceeded: %d from %s for service %s",
                        rate, peer, self.service)
            return R421_TOO_MANY_CONNECTIONS.format(host=self.myhostname, addr=addr)
        return None

    async def disconnect(self, addr: str) -> None:
        """disconnect - the connection counted by connect() has ended."""
        await self.anvil.disconnect(self.service, addr)

    async def message(self, addr: str, peer: str) -> Reply | None:
        """message - count a MAIL FROM; the 450 refusal or None."""
        if self.msg_rate_limit <= 0:
            return None
        rate = await self.anvil.message(self.service, addr)
        if rate is not None and rate > self.msg_rate_limit:
            log.warning("Message delivery request rate limit exceeded: %d from %s for service %s",
                        rate, peer, self.service)
            return R450_TOO_MUCH_MAIL.format(addr=addr)
        return None

    async def recipient(self, addr: str, peer: str) -> Reply | None:
        """recipient - count a RCPT TO; the 450 refusal or None."""
        if self.rcpt_rate_limit <= 0:
            return None
        rate = await self.anvil.recipient(self.service, addr)
        if rate is not None and rate > self.rcpt_rate_limit:
            log.warning("Recipient address rate limit exceeded: %d from %s for service %s",
                        rate, peer, self.service)
            return R450_TOO_MANY_RCPTS.format(addr=addr)
        return None
