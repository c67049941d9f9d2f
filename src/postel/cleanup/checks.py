"""checks - header_checks(5) and body_checks actions for cleanup(8)

SYNOPSIS
    from postel.cleanup.checks import CheckTables, parse_action, Action

DESCRIPTION
    Each logical message header, or each body line, is looked up in a list
    of pattern tables (header_checks, mime_header_checks,
    nested_header_checks, body_checks); the first table that answers
    decides.  The answer is an action, parsed by parse_action() into an
    Action record (name in upper case, optional text).

    Actions, as in header_checks(5):
      REJECT [text]     refuse the whole message (550 5.7.1 text)
      DEFER [text]      refuse with a temporary error (451 4.7.1 text)
      DISCARD [text]    claim success, queue nothing
      HOLD [text]       queue to the hold queue
      WARN [text]       log a warning, keep the line
      INFO [text]       log an informational line, keep the line
      IGNORE            delete the line
      REPLACE text      replace the line
      PREPEND text      insert a line before it
      REDIRECT addr     send the message to addr only (at delivery time)
      BCC addr          add addr as a recipient
      FILTER tr:dest    set the content filter
      DUNNO, OK         as if nothing matched
    An unknown action is logged as a warning and ignored, as Postfix does.
"""

from __future__ import annotations

from dataclasses import dataclass

from postel import log

KNOWN_ACTIONS = frozenset({
    "REJECT", "DEFER", "DISCARD", "HOLD", "WARN", "INFO", "IGNORE", "REPLACE", "PREPEND",
    "REDIRECT", "BCC", "FILTER", "DUNNO", "OK",
})

# Actions whose text is mandatory.
NEEDS_TEXT = frozenset({"REPLACE", "PREPEND", "REDIRECT", "BCC", "FILTER"})


@dataclass(slots=True)
class Action:
    """Action - one parsed header/body check result."""

    name: str
    text: str = ""


def parse_action(value: str) -> Action | None:
    """parse_action - split "REJECT some text" into an Action; None if unusable."""
    value = value.strip()
    if not value:
        return None
    word, _, text = value.partition(" ")
    if "\t" in word:
        word, _, rest = word.partition("\t")
        text = (rest + " " + text).strip() if text else rest
    name = word.upper()
    text = text.strip()
    if name not in KNOWN_ACTIONS:
        log.warning("unknown command in header/body check: %s", value[:100])
        return None
    if name in NEEDS_TEXT and not text:
        log.warning("missing argument in header/body check action: %s", name)
        return None
    return Action(name, text)


class CheckTables:
    """CheckTables - an ordered list of opened pattern tables."""

    __slots__ = ("names", "tables")

    def __init__(self, names: list[str], opener) -> None:
        self.names = list(names)
        self.tables = [opener(n) for n in self.names]

    def __bool__(self) -> bool:
        return bool(self.tables)

    def lookup(self, text: str) -> Action | None:
        """lookup - the first table's action for text (TableUnavailable propagates)."""
        for table in self.tables:
            value = table.lookup(text)
            if value is not None:
                act = parse_action(value)
                if act is not None and act.name not in ("DUNNO", "OK"):
                    return act
                return None
        return None
