"""received_header_wire() gives the bytes smtpd sent before: received_header()
with LF turned into CRLF, encoded, plus the final CRLF."""

from hypothesis import given
from hypothesis import strategies as st

from postel.mail import headers as H

_FIELD = st.text(alphabet=st.sampled_from(list("ab.-[]\n\r \"\\@é")), max_size=12)
_RCPT = st.text(alphabet=st.sampled_from(list("ab.\"\\ @x")), max_size=12)


def _old(**kw) -> bytes:
    """the previous construction in smtpd (the reference)."""
    hdr = H.received_header(**kw)
    return hdr.replace("\n", "\r\n").encode("utf-8", "surrogateescape") + b"\r\n"


@given(_FIELD, _FIELD, _FIELD, st.lists(_RCPT, min_size=1, max_size=3),
       st.sampled_from(["SMTP", "ESMTP"]), st.floats(0, 2e9))
def test_wire_equals_received_header(helo, name, addr, rcpts, protocol, now):
    kw = dict(helo=helo, name=name, addr=addr, myhostname="mx.example", qid="4ABCDEF",
              rcpts=rcpts, protocol=protocol, now=now)
    assert H.received_header_wire(**kw) == _old(**kw)
    assert H.received_header_wire(**kw) == _old(**kw)     # cached quoting


def test_wire_one_recipient():
    wire = H.received_header_wire(helo="c.example", name="c.example", addr="192.0.2.9",
                                  myhostname="m", qid="Q", rcpts=["a b@example.net"], now=0.0)
    assert wire.startswith(b"Received: from c.example (c.example [192.0.2.9])\r\n\tby m (Postel)"
                           b" with ESMTP id Q\r\n\tfor <\"a b\"@example.net>; ")
    assert wire.endswith(b"\r\n") and wire.count(b"\n") == 3
