"""cache - address verification cache entries and the refresh/expire rules

SYNOPSIS
    from postel.verify.cache import VerifyEntry, parse_entry, Policy, decide_query

    entry = parse_entry("0:0:1700000000:250 2.1.5 Ok")      # VerifyEntry or None
    answer, probe = decide_query(entry, now, Policy.from_config(cfg))
    update_entry(old, status, text, now) -> VerifyEntry | None

DESCRIPTION
    The sans-IO half of verify(8): what an $address_verify_map entry looks
    like and what to do with it.  One entry per address, the value is

        status:probed:updated:text

    status is a recipient status (RCPT_STAT_OK 0, RCPT_STAT_DEFER 1,
    RCPT_STAT_BOUNCE 2, RCPT_STAT_TODO 3, the values of Postfix's
    DEL_RCPT_STAT_*), probed the time the last probe was sent (0: none
    pending), updated the time of the last probe result (0: never), text
    the delivery agent's reason.  Times are UNIX seconds.

    A query (decide_query):
      * an entry that is missing, unreadable, or older than its expire time
        ($address_verify_positive_expire_time for a deliverable address,
        $address_verify_negative_expire_time otherwise) counts as unknown:
        status TODO, "Address verification in progress";
      * a probe is sent when the address is unknown, or the result is older
        than its refresh time ($address_verify_positive_refresh_time,
        $address_verify_negative_refresh_time), unless a probe was sent
        less than PROBE_TTL seconds ago: so that a busy address is not
        probed once per query while the first probe is on its way.
    The client always gets the cached answer at once; a refresh happens in
    the background, as in Postfix.

    An update (update_entry) stores the probe result; a failed probe never
    replaces a still-valid "deliverable" entry (it is dropped, and the
    address is probed again on the next query).  With
    address_verify_negative_cache = no a negative result is reported to
    one query and then forgotten (forget_after_reply), so that every
    later query probes again.
"""

from __future__ import annotations

from dataclasses import dataclass

RCPT_STAT_OK = 0
RCPT_STAT_DEFER = 1
RCPT_STAT_BOUNCE = 2
RCPT_STAT_TODO = 3
RCPT_STAT_NAMES = {RCPT_STAT_OK: "deliverable", RCPT_STAT_DEFER: "undeliverable",
                   RCPT_STAT_BOUNCE: "undeliverable", RCPT_STAT_TODO: "unknown"}

PROBE_TTL = 1000            # seconds during which a sent probe suppresses another
IN_PROGRESS = "Address verification in progress"


@dataclass(slots=True)
class VerifyEntry:
    """One cached verification result."""

    status: int = RCPT_STAT_TODO
    probed: int = 0
    updated: int = 0
    text: str = IN_PROGRESS

    def format(self) -> str:
        """format - the value stored in $address_verify_map."""
        text = self.text.replace("\n", " ").replace("\r", " ")
        return f"{self.status}:{self.probed}:{self.updated}:{text}"


def parse_entry(raw: str | None) -> VerifyEntry | None:
    """parse_entry - a VerifyEntry from a stored value; None when absent or malformed."""
    if not raw:
        return None
    parts = raw.split(":", 3)
    if len(parts) != 4:
        return None
    try:
        status, probed, updated = (int(p) for p in parts[:3])
    except ValueError:
        return None
    if status not in RCPT_STAT_NAMES or probed < 0 or updated < 0:
        return None
    return VerifyEntry(status, probed, updated, parts[3])


@dataclass(slots=True)
class Policy:
    """The cache timing parameters, in seconds."""

    positive_expire: int = 31 * 86400
    positive_refresh: int = 7 * 86400
    negative_expire: int = 3 * 86400
    negative_refresh: int = 3 * 3600
    negative_cache: bool = True

    @classmethod
    def from_config(cls, cfg) -> Policy:
        """from_config - the address_verify_* timing parameters of main.cf."""
        return cls(int(cfg.get_time("address_verify_positive_expire_time")),
                   int(cfg.get_time("address_verify_positive_refresh_time")),
                   int(cfg.get_time("address_verify_negative_expire_time")),
                   int(cfg.get_time("address_verify_negative_refresh_time")),
                   bool(cfg.get_bool("address_verify_negative_cache")))


def expired(entry: VerifyEntry, now: int, policy: Policy) -> bool:
    """expired - the result is too old to be used at all."""
    if entry.status == RCPT_STAT_TODO:
        return False
    limit = policy.positive_expire if entry.status == RCPT_STAT_OK else policy.negative_expire
    return entry.updated + limit < now


def needs_refresh(entry: VerifyEntry, now: int, policy: Policy) -> bool:
    """needs_refresh - the result is old enough that a new probe should be sent."""
    if entry.status == RCPT_STAT_TODO or entry.updated == 0:
        return True
    limit = policy.positive_refresh if entry.status == RCPT_STAT_OK else policy.negative_refresh
    return now - entry.updated > limit


def decide_query(entry: VerifyEntry | None, now: int, policy: Policy
                 ) -> tuple[VerifyEntry, bool]:
    """decide_query - (the answer to give, whether to send a probe now)."""
    if entry is None or expired(entry, now, policy):
        entry = VerifyEntry(RCPT_STAT_TODO, entry.probed if entry else 0, 0, IN_PROGRESS)
    probe = needs_refresh(entry, now, policy) and now - entry.probed > PROBE_TTL
    return entry, probe


def probed_entry(entry: VerifyEntry, now: int) -> VerifyEntry:
    """probed_entry - the entry to store after a probe was sent."""
    return VerifyEntry(entry.status, now, entry.updated, entry.text)


def update_entry(old: VerifyEntry | None, status: int, text: str, now: int,
                 policy: Policy) -> VerifyEntry | None:
    """update_entry - the entry to store for a probe result; None: store nothing."""
    if status not in (RCPT_STAT_OK, RCPT_STAT_DEFER, RCPT_STAT_BOUNCE):
        raise ValueError(f"bad recipient status {status}")
    if status != RCPT_STAT_OK:
        # Robustness (as Postfix): a failed probe does not clobber an OK
        # address before that expires; the next query probes again.
        if old is not None and old.status == RCPT_STAT_OK and not expired(old, now, policy):
            return None
    return VerifyEntry(status, 0, now, text)


def forget_after_reply(entry: VerifyEntry, policy: Policy) -> bool:
    """forget_after_reply - a negative result that must not stay in the cache."""
    return not policy.negative_cache and entry.status in (RCPT_STAT_DEFER, RCPT_STAT_BOUNCE)
