"""bounce_templates - bounce(5) message templates

SYNOPSIS
    from postel.mail.bounce_templates import Template, Templates, load_templates

    tpl = load_templates(cfg)            # defaults, or $bounce_template_file
    tpl.failure.subject, tpl.failure.body(cfg_expand)

DESCRIPTION
    The human-readable text of a delivery status notification comes from
    one of four templates, as in Postfix's bounce(5):

      failure_template   non-delivery notification (bounce)
      delay_template     delay warning ($delay_warning_time)
      success_template   positive DSN (NOTIFY=SUCCESS)
      verify_template    sendmail -bv and -v reports

    Each template is a header part (Charset, From, Subject,
    Postmaster-Subject) and a body, separated by an empty line.  The
    defaults are Postfix's default texts.  bounce_template_file may
    override any of them, in bounce(5) syntax:

        failure_template = <<EOF
        Charset: us-ascii
        From: Mail Delivery System <MAILER-DAEMON>
        Subject: Undelivered Mail Returned to Sender
        Postmaster-Subject: Postmaster Copy: Undelivered Mail

        This is the mail system at host $myhostname.
        ...
        EOF

    $name in a body is expanded from main.cf; besides every parameter,
    the time parameters delay_warning_time and maximal_queue_lifetime are
    available with a unit suffix: $delay_warning_time_hours,
    $maximal_queue_lifetime_days (suffixes _seconds, _minutes, _hours,
    _days, _weeks; whole numbers, rounded down).

DIAGNOSTICS
    A template file that cannot be read or parsed is reported with its
    file:line as a warning, and the default templates are used.

CONFIGURATION PARAMETERS
    bounce_template_file (empty)   file with replacement templates
    delay_warning_time (0h), maximal_queue_lifetime (5d)  in the delay text
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from postel import log

TEMPLATE_NAMES = ("failure_template", "delay_template", "success_template", "verify_template")

_DEFAULTS = {
    "failure_template": """\
Charset: us-ascii
From: Mail Delivery System <MAILER-DAEMON>
Subject: Undelivered Mail Returned to Sender
Postmaster-Subject: Postmaster Copy: Undelivered Mail

This is the mail system at host $myhostname.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system
""",
    "delay_template": """\
Charset: us-ascii
From: Mail Delivery System <MAILER-DAEMON>
Subject: Delayed Mail (still being retried)
Postmaster-Subject: Postmaster Warning: Delayed Mail

This is the mail system at host $myhostname.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for more than $delay_warning_time_hours hour(s).
It will be retried until it is $maximal_queue_lifetime_days day(s) old.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system
""",
    "success_template": """\
Charset: us-ascii
From: Mail Delivery System <MAILER-DAEMON>
Subject: Successful Mail Delivery Report

This is the mail system at host $myhostname.

Your message was successfully delivered to the destination(s)
listed below. If the message was delivered to mailbox you will
receive no further notifications. Otherwise you may still receive
notifications of mail delivery errors from other systems.

                   The mail system
""",
    "verify_template": """\
Charset: us-ascii
From: Mail Delivery System <MAILER-DAEMON>
Subject: Mail Delivery Status Report

This is the mail system at host $myhostname.

Enclosed is the mail delivery report that you requested.

                   The mail system
""",
}

_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}
_TIME_PARAMS = ("delay_warning_time", "maximal_queue_lifetime")
_VAR_RE = re.compile(r"\$(\{([A-Za-z0-9_]+)\}|\(([A-Za-z0-9_]+)\)|([A-Za-z0-9_]+))")
_HEADERS = ("charset", "from", "subject", "postmaster-subject")


class TemplateError(Exception):
    """A template that does not parse; the message has file:line."""


@dataclass(slots=True)
class Template:
    """One bounce(5) template: header fields and body text."""

    name: str
    charset: str = "us-ascii"
    from_: str = "Mail Delivery System <MAILER-DAEMON>"
    subject: str = ""
    postmaster_subject: str = ""
    text: str = ""

    def body(self, cfg) -> str:
        """body - the body text with $name expanded from main.cf."""
        return expand_text(self.text, cfg)


@dataclass(slots=True)
class Templates:
    """The four templates bounce(8) uses."""

    failure: Template
    delay: Template
    success: Template
    verify: Template
    source: str = field(default="")


def _time_value(cfg, name: str) -> float:
    """_time_value - a time parameter in seconds (0 when unknown)."""
    try:
        return float(cfg.get_time(name))
    except (KeyError, ValueError, AttributeError):
        return 0.0


def expand_text(text: str, cfg) -> str:
    """expand_text - replace $name, ${name}, $(name) with main.cf values."""
    def repl(m: re.Match) -> str:
        name = m.group(2) or m.group(3) or m.group(4)
        for base in _TIME_PARAMS:
            if name.startswith(base + "_"):
                unit = name[len(base) + 1:]
                if unit in _UNITS:
                    return str(int(_time_value(cfg, base) // _UNITS[unit]))
        try:
            return str(cfg.get(name))
        except (KeyError, ValueError, AttributeError):
            return m.group(0)
    return _VAR_RE.sub(repl, text)


def parse_template(name: str, text: str, where: str = "", first_line: int = 1) -> Template:
    """parse_template - a Template from its text (headers, empty line, body)."""
    tpl = Template(name)
    lines = text.split("\n")
    i = 0
    while i < len(lines) and lines[i].strip():
        head, sep, value = lines[i].partition(":")
        key = head.strip().lower()
        if not sep or key not in _HEADERS:
            raise TemplateError(f"{where}:{first_line + i}: {name}: unknown or malformed "
                                f"template header: {lines[i]!r}")
        value = value.strip()
        if key == "charset":
            tpl.charset = value
        elif key == "from":
            tpl.from_ = value
        elif key == "subject":
            tpl.subject = value
        else:
            tpl.postmaster_subject = value
        i += 1
    if not tpl.subject:
        raise TemplateError(f"{where}:{first_line}: {name}: missing Subject: header")
    tpl.text = "\n".join(lines[i + 1:])
    if not tpl.text.endswith("\n"):
        tpl.text += "\n"
    return tpl


def parse_template_file(path: str) -> dict[str, Template]:
    """parse_template_file - the templates defined in a bounce(5) file."""
    with open(path, encoding="utf-8", errors="replace") as fp:
        lines = fp.read().split("\n")
    out: dict[str, Template] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        m = re.fullmatch(r"\s*([a-z_]+)\s*=\s*<<\s*(\S+)\s*", line)
        if m is None or m.group(1) not in TEMPLATE_NAMES:
            raise TemplateError(f"{path}:{i + 1}: expected 'NAME_template = <<EOF', "
                                f"got {line!r}")
        name, end = m.group(1), m.group(2)
        start = i + 1
        j = start
        while j < len(lines) and lines[j] != end:
            j += 1
        if j >= len(lines):
            raise TemplateError(f"{path}:{i + 1}: {name}: missing '{end}' terminator")
        out[name] = parse_template(name, "\n".join(lines[start:j]), path, start + 1)
        i = j + 1
    return out


def default_templates() -> Templates:
    """default_templates - Postfix's default texts."""
    t = {n: parse_template(n, _DEFAULTS[n], "(default)") for n in TEMPLATE_NAMES}
    return Templates(t["failure_template"], t["delay_template"], t["success_template"],
                     t["verify_template"], "(default)")


def load_templates(cfg) -> Templates:
    """load_templates - the defaults, overridden from $bounce_template_file."""
    tpl = default_templates()
    try:
        path = cfg.get("bounce_template_file")
    except (KeyError, AttributeError):
        path = ""
    if not path:
        return tpl
    try:
        found = parse_template_file(path)
    except OSError as exc:
        log.warning("bounce_template_file %s: %s; using default templates", path, exc.strerror)
        return tpl
    except TemplateError as exc:
        log.warning("%s; using default templates", exc)
        return tpl
    for name, t in found.items():
        setattr(tpl, name.removesuffix("_template"), t)
    tpl.source = path
    return tpl
