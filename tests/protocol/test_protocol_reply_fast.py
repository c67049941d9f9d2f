"""The fast paths of Reply (format without a second check, one-line wire form)
give the same replies and bytes as the general ones."""

from hypothesis import given
from hypothesis import strategies as st

from postel.protocol.replies import R250_QUEUED, Reply

_CODES = st.sampled_from([(220, ""), (250, "2.0.0"), (250, ""), (354, ""), (421, "4.4.2"),
                          (451, "4.3.0"), (550, "5.7.1"), (554, "")])
_TEXT = st.text(alphabet=st.sampled_from(list("ab <>:.\n-éx ")), max_size=30)


def _slow_wire(code: int, enhanced: str, text: str) -> bytes:
    """the general multi-line encoding (the reference)."""
    lines = text.split("\n") if text else [""]
    prefix = f"{enhanced} " if enhanced else ""
    out = []
    for i, line in enumerate(lines):
        sep = " " if i == len(lines) - 1 else "-"
        body = f"{prefix}{line}" if line or prefix else ""
        out.append(f"{code}{sep}{body}".rstrip(" ") + "\r\n")
    return "".join(out).encode("utf-8")


@given(_CODES, _TEXT)
def test_wire_form_matches_general_encoding(ce, text):
    code, enhanced = ce
    assert Reply(code, enhanced, text).to_bytes() == _slow_wire(code, enhanced, text)


@given(_CODES, _TEXT)
def test_format_equals_constructor(ce, text):
    code, enhanced = ce
    template = Reply(code, enhanced, "x {v} y")
    made = template.format(v=text)
    assert made == Reply(code, enhanced, f"x {text} y")
    assert made.to_bytes() == _slow_wire(code, enhanced, f"x {text} y")
    assert str(made) == _slow_wire(code, enhanced, f"x {text} y").decode().split("\r\n")[0]


def test_queued_reply():
    assert R250_QUEUED.format(qid="4ABC").to_bytes() == b"250 2.0.0 Ok: queued as 4ABC\r\n"
