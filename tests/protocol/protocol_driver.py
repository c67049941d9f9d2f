"""Test helper: drive an SMTPServerConnection with a default answering policy."""

from __future__ import annotations

from postel.protocol import events as E
from postel.protocol import replies as R
from postel.protocol.smtp_server import (
    ServerConfig,
    SMTPServerConnection,
    ehlo_reply,
    enabled_keywords,
)


def default_reply(conn: SMTPServerConnection, ev: E.Event) -> R.Reply:
    """the answer a permissive shell gives to ev."""
    if hasattr(ev, "reply"):
        return ev.reply
    table = {
        E.Connected: R.R220_BANNER.format(host="mx.test", name="Postel"),
        E.Helo: R.R250_HELO.format(host="mx.test"),
        E.Ehlo: ehlo_reply("mx.test", conn.config.message_size_limit,
                           enabled_keywords(conn.config)),
        E.MailFrom: R.R250_SENDER_OK,
        E.RcptTo: R.R250_RCPT_OK,
        E.Data: R.R354_DATA,
        E.Quit: R.R221_BYE,
        E.StartTls: R.R220_STARTTLS,
        E.Xclient: R.R220_BANNER.format(host="mx.test", name="Postel"),
        E.Auth: R.Reply(334, "", ""),
        E.AuthResponse: R.R235_AUTH_OK,
    }
    if isinstance(ev, E.DataEnd):
        if ev.too_big:
            return R.R552_SIZE
        return R.R250_QUEUED.format(qid="4ABC")
    if isinstance(ev, E.BdatChunkEnd):
        return R.R250_BDAT_OK.format(size=ev.size)
    return table.get(type(ev), R.R250_OK)


class Driver:
    """feed bytes, collect (event, reply bytes) pairs."""

    def __init__(self, config: ServerConfig | None = None, greet: bool = True, policy=None):
        self.conn = SMTPServerConnection(config or ServerConfig(myhostname="mx.test"))
        self.policy = policy or default_reply
        self.events: list[E.Event] = []
        self.output = bytearray()
        if greet:
            self.feed(b"")

    def feed(self, data: bytes) -> list[E.Event]:
        """feed data and answer every event; returns the new events."""
        self.conn.receive_data(data)
        new = []
        while True:
            ev = self.conn.next_event()
            if ev is E.NEED_DATA or ev is E.CLOSED:
                break
            new.append(ev)
            if ev.needs_reply:
                self.output += self.conn.send_reply(self.policy(self.conn, ev))
        self.events += new
        return new

    def content(self) -> bytes:
        """all DataChunk bytes received."""
        return b"".join(e.data for e in self.events if isinstance(e, E.DataChunk))

    def of(self, etype) -> list:
        """the events of one type."""
        return [e for e in self.events if isinstance(e, etype)]
