"""dsn - RFC 3464 delivery status notifications

SYNOPSIS
    from postel.mail.dsn import Original, read_original, Report, build_notice

    orig = read_original(path, headers_only=False, size_limit=50000)
    text = build_notice(Report(kind="failure", ...), template, cfg, orig)   # bytes, LF lines

DESCRIPTION
    build_notice() writes one notification as a MIME message (RFC 3462,
    RFC 3464), the way Postfix's bounce(8) lays it out:

        From: Mail Delivery System <MAILER-DAEMON@$myorigin>
        Subject: (from the template)
        To: <the recipient of the notice>
        Auto-Submitted: auto-replied                   (RFC 3834)
        MIME-Version: 1.0
        Content-Type: multipart/report; report-type=delivery-status;
            boundary="QID.TIME/$myhostname"

        This is a MIME-encapsulated message.

        --boundary
        Content-Description: Notification
        Content-Type: text/plain; charset=us-ascii

        template text, then one paragraph per recipient:
        <rcpt> (expanded from <orig>): reason

        --boundary
        Content-Description: Delivery report
        Content-Type: message/delivery-status

        Original-Envelope-Id: ENVID                    (when given)
        Reporting-MTA: dns; $myhostname
        X-Postel-Queue-ID: QID
        X-Postel-Sender: rfc822; SENDER
        Arrival-Date: DATE

        Final-Recipient: rfc822; RCPT
        Original-Recipient: rfc822;ORCPT                (when known)
        Action: failed | delayed | delivered | relayed | expanded ...
        Status: X.Y.Z
        Remote-MTA: dns; HOST                           (when known)
        Diagnostic-Code: smtp; 550 5.1.1 ...            (X-Postel; text otherwise)
        Will-Retry-Until: DATE                          (delay warnings)

        --boundary
        Content-Description: Undelivered Message
        Content-Type: message/rfc822                    (or text/rfc822-headers)

        the original message, byte for byte
        --boundary--

    Header fields are folded and, when not ASCII, encoded by the standard
    library's email package; the parts and the returned message are
    written as they are, so that the returned copy is exact.  Lines end
    in LF: cleanup(8) normalizes.

    The returned message is the whole message for failures, unless the
    sender asked for headers only (RET=HDRS) or the message is larger
    than $bounce_size_limit: then it is text/rfc822-headers with the
    primary header.  Delay warnings and success notices return headers
    unless RET=FULL.  Postmaster copies always return headers only.

    When the report has non-ASCII addresses or text and the message was
    SMTPUTF8, the report is message/global-delivery-status and the
    returned message message/global (RFC 6533).

STANDARDS
    RFC 3461 (DSN SMTP extension), RFC 3462/6522 (multipart/report),
    RFC 3464 (message/delivery-status), RFC 3834 (Auto-Submitted),
    RFC 6533 (internationalized DSNs)
"""

from __future__ import annotations

import email.policy
import re
import time
from dataclasses import dataclass, field

from postel.mail.bounce_templates import Template
from postel.mail.headers import mail_date
from postel.queue import QueueFileReader
from postel.queue.records import DSN_RET_FULL, DSN_RET_HDRS

WRAP_WIDTH = 76
WRAP_INDENT = "    "
_HEADER_RE = re.compile(rb"^[!-9;-~]+:")
_POLICY = email.policy.default.clone(linesep="\n", max_line_length=78)

KIND_FAILURE = "failure"
KIND_DELAY = "delay"
KIND_SUCCESS = "success"
KIND_VERIFY = "verify"
KINDS = (KIND_FAILURE, KIND_DELAY, KIND_SUCCESS, KIND_VERIFY)


@dataclass(slots=True)
class Original:
    """What a notification needs from the original queue file."""

    sender: str = ""
    arrival: float = 0.0
    encoding: str = ""
    smtputf8: bool = False
    size: int = 0
    content: bytes | None = None      # None: the message could not be read
    headers_only: bool = False        # content holds only the primary header


@dataclass(slots=True)
class Report:
    """One notification to write: who gets it, about what."""

    kind: str                          # failure, delay, success, verify
    queue_id: str                      # the original message
    notice_qid: str                    # the queue ID of the notification itself
    to: str                            # the notification's recipient (header To:)
    sender: str                        # the original envelope sender
    entries: list[dict[str, str]] = field(default_factory=list)
    dsn_envid: str = ""
    postmaster: bool = False           # a postmaster copy (Postmaster-Subject)
    will_retry_until: float = 0.0      # delay warnings
    now: float = 0.0


def is_header_line(line: bytes) -> bool:
    """is_header_line - a header field or a continuation of one."""
    return line[:1] in (b" ", b"\t") or _HEADER_RE.match(line) is not None


def read_original(path: str, headers_only: bool, size_limit: int) -> Original:
    """read_original - sender, arrival and content (or its header) of a queue file.

    A file that cannot be read gives Original(content=None); callers still
    send the notification (best effort, as Postfix does).
    """
    try:
        with QueueFileReader(path, writable=False) as qf:
            env = qf.envelope
            orig = Original(sender=env.sender, arrival=env.time,
                            encoding=env.attrs.get("encoding", ""),
                            smtputf8=env.attrs.get("smtputf8", "") in ("1", "yes", "true"),
                            size=qf.message_size)
            if size_limit > 0 and qf.message_size > size_limit:
                headers_only = True
            lines: list[bytes] = []
            if headers_only:
                for line in qf.iter_lines():
                    if not line or not is_header_line(line):
                        break
                    lines.append(line)
                    if len(lines) > 100000:
                        break
                orig.content = b"".join(x + b"\n" for x in lines)
            else:
                orig.content = qf.read_content(b"\n")
            orig.headers_only = headers_only
            return orig
    except Exception:  # noqa: BLE001 - corrupt or vanished: report without the message
        return Original(content=None, headers_only=headers_only)


def wrap(text: str, width: int = WRAP_WIDTH, indent: str = WRAP_INDENT) -> list[str]:
    """wrap - break text at spaces into lines of at most width columns (best effort)."""
    words = text.split(" ")
    lines: list[str] = []
    cur = ""
    for w in words:
        if not cur:
            cur = (indent if lines else "") + w
        elif len(cur) + 1 + len(w) <= width:
            cur += " " + w
        else:
            lines.append(cur)
            cur = indent + w
    if cur or not lines:
        lines.append(cur)
    return lines


def recipient_paragraph(entry: dict[str, str]) -> list[str]:
    """recipient_paragraph - '<rcpt> (expanded from <orig>): reason', wrapped."""
    rcpt = entry.get("recipient", "")
    orig = entry.get("orig_rcpt", "")
    head = f"<{rcpt}>"
    if orig and orig.lower() != rcpt.lower():
        head += f" (expanded from <{orig}>)"
    return wrap(f"{head}: {entry.get('reason', '') or entry.get('status', '')}")


def _header(name: str, value: str) -> str:
    """_header - one folded (and, if needed, encoded) header field."""
    try:
        return _POLICY.fold(name, value)
    except Exception:  # noqa: BLE001 - an address the parser dislikes: write it plainly
        return f"{name}: {value}\n"


def _atom(text: str) -> str:
    """_atom - text usable as an RFC 822 atom (diagnostic-type), as Postfix does."""
    return re.sub(r"[\s()<>@,;:\\\".\[\]]", "-", text) or "X"


def _field(name: str, value: str) -> str:
    """_field - one delivery-status field, folded at spaces."""
    return "\n".join(wrap(f"{name}: {value}")) + "\n"


def dsn_fields(report: Report, orig: Original, cfg, action: str | None) -> str:
    """dsn_fields - the message/delivery-status body (per-message, per-recipient)."""
    myhostname = cfg.get("myhostname")
    mail_name = cfg.get("mail_name") or "Postel"
    out = []
    if report.dsn_envid:                       # RFC 3464 2.2.1
        out.append(_field("Original-Envelope-Id", report.dsn_envid))
    out.append(_field("Reporting-MTA", f"dns; {myhostname}"))    # RFC 3464 2.2.2
    out.append(_field("X-Postel-Queue-ID", report.queue_id))
    out.append(_field("X-Postel-Sender", f"rfc822; {report.sender}"))
    arrival = orig.arrival
    if arrival > 0:                            # RFC 3464 2.2.5
        out.append(_field("Arrival-Date", mail_date(arrival)))
    for entry in report.entries:
        out.append("\n")
        out.append(_field("Final-Recipient", f"rfc822; {entry.get('recipient', '')}"))
        orcpt = entry.get("dsn_orcpt", "")
        if orcpt:                              # RFC 3464 2.3.1: as given in ORCPT
            out.append(_field("Original-Recipient", orcpt))
        elif entry.get("orig_rcpt"):
            out.append(_field("Original-Recipient", f"rfc822; {entry['orig_rcpt']}"))
        out.append(_field("Action", action or entry.get("action", "") or "failed"))
        out.append(_field("Status", entry.get("status", "") or "5.0.0"))
        if entry.get("mta_name"):              # RFC 3464 2.3.5
            out.append(_field("Remote-MTA",
                              f"{entry.get('mta_type') or 'dns'}; {entry['mta_name']}"))
        if entry.get("diag_type") and entry.get("diag_text"):    # RFC 3464 2.3.6
            out.append(_field("Diagnostic-Code",
                              f"{entry['diag_type']}; {entry['diag_text']}"))
        elif entry.get("reason"):
            out.append(_field("Diagnostic-Code", f"X-{_atom(mail_name)}; {entry['reason']}"))
        if report.will_retry_until > 0:        # RFC 3464 2.3.8
            out.append(_field("Will-Retry-Until", mail_date(report.will_retry_until)))
    return "".join(out)


def _qualify(addr_header: str, origin: str) -> str:
    """_qualify - MAILER-DAEMON in a template From: gets @$myorigin."""
    return re.sub(r"(?<![@\w.-])MAILER-DAEMON(?![@\w.-])", f"MAILER-DAEMON@{origin}",
                  addr_header)


def _action(report: Report) -> str | None:
    """_action - the Action: value forced by the kind of report (None: per entry)."""
    if report.kind == KIND_FAILURE:
        return "failed"
    if report.kind == KIND_DELAY:
        return "delayed"
    return None


def returned_headers_only(report: Report, dsn_ret: int) -> bool:
    """returned_headers_only - RET, notice kind and postmaster copy decide."""
    if report.postmaster or dsn_ret == DSN_RET_HDRS:
        return True
    if report.kind == KIND_FAILURE:
        return False
    return dsn_ret != DSN_RET_FULL


def build_notice(report: Report, template: Template, cfg, orig: Original) -> bytes:
    """build_notice - the whole notification message, LF line ends."""
    now = report.now or time.time()
    myhostname = cfg.get("myhostname")
    origin = cfg.get("myorigin") or myhostname
    boundary = f"{report.notice_qid or report.queue_id}.{int(now)}/{myhostname}"
    human = template.body(cfg).rstrip("\n") + "\n"
    paras = ["\n".join(recipient_paragraph(e)) + "\n" for e in report.entries]
    human = human + "".join("\n" + p for p in paras)
    report_text = dsn_fields(report, orig, cfg, _action(report))
    utf8 = orig.smtputf8 and not (human + report_text).isascii()
    if not utf8 and not report_text.isascii():
        # RFC 3464 2.1.1: message/delivery-status fields are US-ASCII
        report_text = report_text.encode("ascii", "replace").decode("ascii")
    charset = template.charset if human.isascii() else "utf-8"
    subject = template.postmaster_subject if report.postmaster and template.postmaster_subject \
        else template.subject

    head = [
        _header("From", _qualify(template.from_, origin)),
        _header("Subject", subject),
        _header("To", report.to),
        "Auto-Submitted: auto-replied\n",      # RFC 3834 5
        "MIME-Version: 1.0\n",
        ("Content-Type: multipart/report; report-type=delivery-status;\n"
         f"\tboundary=\"{boundary}\"\n"),      # RFC 6522 3
    ]
    parts = [
        f"\n--{boundary}\n",
        "Content-Description: Notification\n",
        f"Content-Type: text/plain; charset={charset}\n",
        "" if human.isascii() else "Content-Transfer-Encoding: 8bit\n",
        "\n",
        human,
        f"\n--{boundary}\n",
        "Content-Description: Delivery report\n",
        f"Content-Type: message/{'global-' if utf8 else ''}delivery-status\n",
        "\n",
        report_text,
    ]
    undelivered = "Undelivered " if report.kind in (KIND_FAILURE, KIND_DELAY) else ""
    body = "".join(parts).encode("utf-8", "surrogateescape")
    content = orig.content
    tail: list[bytes] = []
    if orig.headers_only or content is None:
        desc, ctype = f"{undelivered}Message Headers", "text/rfc822-headers"
        if utf8:
            ctype = "message/global-headers"
    else:
        desc, ctype = f"{undelivered}Message", "message/global" if utf8 else "message/rfc822"
    tail.append(f"\n--{boundary}\nContent-Description: {desc}\nContent-Type: {ctype}\n".encode())
    eight_bit = not content.isascii() if content is not None else False
    if eight_bit:
        tail.append(b"Content-Transfer-Encoding: 8bit\n")
    tail.append(b"\n")
    if content is None:
        tail.append(b"\t--- Undelivered message unavailable ---\n")
    else:
        tail.append(content)
        if content and not content.endswith(b"\n"):
            tail.append(b"\n")
    tail.append(f"\n--{boundary}--\n".encode())
    if eight_bit or not body.isascii():
        head.append("Content-Transfer-Encoding: 8bit\n")
    head.append(_header("Date", mail_date(now)))
    head.append(_header("Message-Id", f"<{time.strftime('%Y%m%d%H%M%S', time.gmtime(now))}."
                                      f"{report.notice_qid}@{myhostname}>"))
    head.append("\nThis is a MIME-encapsulated message.\n")
    return "".join(head).encode("utf-8", "surrogateescape") + body + b"".join(tail)
