"""Sans-IO tests of cleanup's content processing (postel.cleanup.message)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postel.cleanup.checks import CheckTables, parse_action
from postel.cleanup.message import MessageState, Settings


class FakeTable:
    """FakeTable - a regexp-like table: (substring, action) rules."""

    def __init__(self, rules):
        self.rules = rules

    def lookup(self, key):
        for needle, action in self.rules:
            if needle in key:
                return action
        return None


def checks(*rules):
    return CheckTables(["fake:x"], lambda name: FakeTable(list(rules)))


def run(content: bytes, chunk: int = 0, **kw) -> MessageState:
    settings_kw = {k: kw.pop(k) for k in list(kw) if k in Settings.__dataclass_fields__}
    st_ = MessageState(Settings(myhostname="mx.example.com", **settings_kw), "QID1",
                       now=0.0, **kw)
    recs = []
    if chunk:
        for i in range(0, len(content), chunk):
            st_.feed(content[i:i + chunk])
            recs += st_.take_records()
    else:
        st_.feed(content)
    st_.finish()
    recs += st_.take_records()
    return Run(st_, recs)


class Run:
    """Run - a finished MessageState and the records it produced."""

    def __init__(self, state, out):
        self.state, self.out = state, out

    def __getattr__(self, name):
        return getattr(self.state, name)


def text(st_) -> bytes:
    """text - the stored content, continuation records joined."""
    out = []
    for kind, line in st_.out:
        out.append(line + (b"" if kind == b"L" else b"\n"))
    return b"".join(out)


MSG = b"Received: from x\r\nSubject: hi\r\nFrom: a@b\r\nTo: c@d\r\nDate: x\r\nMessage-ID: <1@b>\r\n\r\nbody\r\n.dot\r\n"


def test_crlf_normalised_and_content_kept():
    s = run(MSG)
    assert s.result().ok
    assert text(s) == MSG.replace(b"\r\n", b"\n")
    assert s.message_id == "<1@b>"


@given(st.integers(min_value=1, max_value=40))
def test_chunking_does_not_matter(n):
    assert text(run(MSG, chunk=n)) == text(run(MSG))


def test_return_path_bcc_dropped():
    s = run(b"Return-Path: <x@y>\nBcc: z@z\nContent-Length: 5\nSubject: s\n\nb\n")
    assert text(s) == b"Subject: s\n\nb\n"


def test_missing_headers_added_for_local():
    s = run(b"Subject: s\n\nb\n", local=True, sender="u@example.com", fullname="Joe User")
    t = text(s).decode()
    head = t.split("\n\n")[0]
    assert "From: Joe User <u@example.com>" in head
    assert "Date: " in head
    assert "Message-Id: <19700101000000.QID1@mx.example.com>" in head
    assert "To:" not in head


def test_missing_headers_not_added_for_remote():
    s = run(b"Subject: s\n\nb\n", local=False, sender="u@example.com")
    assert text(s) == b"Subject: s\n\nb\n"


def test_null_sender_from_and_undisclosed():
    s = run(b"Subject: s\n\nb\n", local=True, sender="",
            undisclosed_recipients_header="To: undisclosed-recipients:;")
    head = text(s).decode().split("\n\n")[0]
    assert "From: MAILER-DAEMON (Mail Delivery System)" in head
    assert "To: undisclosed-recipients:;" in head


def test_resent_headers_completed():
    s = run(b"Resent-To: x@y\nFrom: a@b\nDate: d\nMessage-ID: <m>\n\nb\n", local=True,
            sender="r@example.com")
    head = text(s).decode().split("\n\n")[0]
    assert "Resent-From: r@example.com" in head
    assert "Resent-Date: " in head
    assert "Resent-Message-Id: " in head
    assert head.count("\nFrom:") + head.startswith("From:") == 1


def test_non_header_line_ends_headers_with_blank_inserted():
    s = run(b"Subject: s\nthis is body\n")
    assert text(s) == b"Subject: s\n\nthis is body\n"


def test_hop_count():
    s = run(b"Received: x\n" * 5 + b"\nb\n", hopcount_limit=5)
    r = s.result()
    assert (r.status, r.dsn, r.reason) == (554, "5.4.0", "Error: too many hops")
    assert run(b"Received: x\n" * 4 + b"\nb\n", hopcount_limit=5).result().ok


def test_size_limit():
    s = run(b"Subject: s\n\n" + b"x" * 100 + b"\n", message_size_limit=50)
    r = s.result()
    assert (r.status, r.dsn) == (552, "5.3.4")
    assert s.out == []


def test_long_line_split_into_continuations():
    s = run(b"Subject: s\n\n" + b"y" * 25 + b"\n", line_length_limit=10)
    body = s.out[2:]
    assert body == [(b"L", b"y" * 10), (b"L", b"y" * 10), (b"N", b"y" * 5)]


def test_folded_header_is_one_logical_header():
    seen = []

    class T:
        def lookup(self, key):
            seen.append(key)
            return None
    hc = CheckTables(["t:x"], lambda n: T())
    run(b"Subject: a\n  b\nX: y\n\nbody\n", header_checks=hc)
    assert seen == ["Subject: a  b", "X: y"]


def test_header_size_limit_truncates():
    s = run(b"Subject: " + b"a" * 100 + b"\n more\n\nb\n", header_size_limit=30)
    head = text(s).split(b"\n\n")[0]
    assert len(head) == 30


@pytest.mark.parametrize("action,status,dsn,reason", [
    ("REJECT go away", 550, "5.7.1", "go away"),
    ("REJECT", 550, "5.7.1", "Message content rejected"),
    ("REJECT 5.7.9 custom", 550, "5.7.9", "custom"),
    ("DEFER later", 451, "4.7.1", "later"),
])
def test_reject_defer(action, status, dsn, reason):
    s = run(MSG, header_checks=checks(("Subject: hi", action)))
    r = s.result()
    assert (r.status, r.dsn, r.reason) == (status, dsn, reason)


def test_discard_hold_warn_redirect_bcc_filter():
    hc = checks(("Subject:", "DISCARD spam"), ("From:", "HOLD look"), ("To:", "WARN w"),
                ("Date:", "REDIRECT x@y"), ("Message-ID", "BCC b@c"), ("Received", "FILTER smtp:[h]:1"))
    s = run(MSG, header_checks=hc)
    assert s.result().ok
    assert s.discard and s.hold and s.redirect == "x@y" and s.bcc == ["b@c"]
    assert s.filter == "smtp:[h]:1"
    assert text(s) == MSG.replace(b"\r\n", b"\n")


def test_ignore_replace_prepend():
    hc = checks(("Subject:", "IGNORE"), ("From:", "REPLACE From: new@x"), ("To:", "PREPEND X-Pre: 1"))
    s = run(MSG, header_checks=hc)
    head = text(s).split(b"\n\n")[0].split(b"\n")
    assert b"Subject: hi" not in head
    assert b"From: new@x" in head and b"From: a@b" not in head
    assert head.index(b"X-Pre: 1") + 1 == head.index(b"To: c@d")


def test_dunno_ok_and_unknown_action():
    assert parse_action("DUNNO") is not None
    assert parse_action("FROB x") is None
    assert parse_action("REPLACE") is None
    s = run(MSG, header_checks=checks(("Subject:", "OK"), ("From:", "FROB")))
    assert text(s) == MSG.replace(b"\r\n", b"\n")


def test_body_checks_and_size_limit():
    s = run(b"Subject: s\n\nclean\nbad word\n", body_checks=checks(("bad", "REJECT no")))
    assert s.result().status == 550
    s = run(b"Subject: s\n\n" + b"x" * 20 + b"\nbad word\n",
            body_checks=checks(("bad", "REJECT no")), body_checks_size_limit=10)
    assert s.result().ok


MIME = (b"Subject: m\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"BB\"\n\n"
        b"preamble\n--BB\nContent-Type: text/plain\nX-Part: p1\n\npart one\n"
        b"--BB\nContent-Type: message/rfc822\n\nSubject: inner\nX-Inner: i\n\ninner body\n"
        b"--BB--\nepilogue\n")


def test_mime_classes():
    seen = {"h": [], "m": [], "n": [], "b": []}

    def mk(k):
        class T:
            def lookup(self, key):
                seen[k].append(key)
                return None
        return CheckTables(["t:" + k], lambda n: T())
    s = run(MIME, header_checks=mk("h"), mime_header_checks=mk("m"),
            nested_header_checks=mk("n"), body_checks=mk("b"))
    assert text(s) == MIME
    assert seen["h"] == ["Subject: m"]
    assert "Content-Type: message/rfc822" in seen["m"] and "X-Part: p1" in seen["m"]
    assert seen["n"] == ["Subject: inner", "X-Inner: i"]
    assert "part one" in seen["b"] and "inner body" in seen["b"] and "epilogue" in seen["b"]
    assert "X-Part: p1" not in seen["b"]


def test_extract_recipients():
    s = run(b"To: A <a@x>, b@y\nCc: c@z\nBcc: d@w\nSubject: s\n\nb\n", extract=True)
    assert s.recipients_extracted() == ["a@x", "b@y", "c@z", "d@w"]
    assert b"Bcc" not in text(s)
    s = run(b"To: a@x\nResent-To: r@x\n\nb\n", extract=True)
    assert s.recipients_extracted() == ["r@x"]


def test_header_address_rewriting_keeps_phrase():
    s = run(b"From: Joe <joe>\nTo: bob, \"C\" <carol@x>\n\nb\n",
            rewrite=lambda a, c: a if "@" in a else a + "@example.com")
    head = text(s).split(b"\n\n")[0]
    assert head == b"From: Joe <joe@example.com>\nTo: bob@example.com, \"C\" <carol@x>"


def test_garbage_never_raises():
    s = run(b"\x00\xff:\n\n--\r\r\n" + bytes(range(256)))
    assert s.result().ok
