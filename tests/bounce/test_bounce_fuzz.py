"""Property: whatever the log says, the DSN parses and keeps every recipient's fields."""

from __future__ import annotations

import email
import email.policy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postel.bounce.logfile import format_entry, parse_log
from postel.config import load_config
from postel.mail import dsn
from postel.mail.bounce_templates import default_templates

TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_categories=("Cs",)),
               max_size=300)
LOCAL = st.from_regex(r"[a-z0-9._+-]{1,20}", fullmatch=True)
ENTRY = st.fixed_dictionaries({
    "recipient": st.builds(lambda a, b: f"{a}@{b}.example", LOCAL, LOCAL),
    "status": st.sampled_from(["5.0.0", "5.1.1", "4.4.1", "2.0.0"]),
    "reason": TEXT,
    "diag_type": st.sampled_from(["", "smtp"]),
    "diag_text": TEXT,
    "mta_name": st.sampled_from(["", "mx.example.net"]),
})


_CFG: list = []


def _cfg(tmp_path_factory):
    if not _CFG:
        d = tmp_path_factory.mktemp("conf")
        (d / "main.cf").write_text(f"queue_directory = {d}/q\nmyhostname = mx.example.com\n")
        _CFG.append(load_config(str(d)))
    return _CFG[0]


def _norm(s: str) -> str:
    return " ".join(s.split())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(ENTRY, min_size=1, max_size=4), kind=st.sampled_from(dsn.KINDS))
def test_any_log_gives_a_parseable_dsn(tmp_path_factory, entries, kind):
    cfg = _cfg(tmp_path_factory)
    # through the log file format and back, as the service reads them
    entries = parse_log(b"".join(format_entry(e) for e in entries))
    rep = dsn.Report(kind=kind, queue_id="4bUI252lRFz0555001", notice_qid="4bUI252lRFz0555002",
                     to="alice@example.org", sender="alice@example.org", entries=entries)
    orig = dsn.Original(sender="alice@example.org", arrival=1.7e9,
                        content=b"Subject: x\n\nbody\n")
    data = dsn.build_notice(rep, getattr(default_templates(), kind), cfg, orig)
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report"
    human, status, returned = msg.get_payload()
    blocks = status.get_payload()[1:]
    assert len(blocks) == len(entries)
    for block, e in zip(blocks, entries, strict=True):
        assert block["Final-Recipient"] == f"rfc822; {e['recipient']}"
        assert block["Status"] == e["status"]
        code = block["Diagnostic-Code"]
        if e.get("diag_type") and e.get("diag_text"):
            want = e["diag_text"].encode("ascii", "replace").decode()
            assert _norm(str(code)) == _norm(f"smtp; {want}")
    assert returned.get_payload()[0]["Subject"] == "x"
    assert len(_norm(human.get_payload(decode=True).decode("utf-8"))) > 0
