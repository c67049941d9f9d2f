"""local - Postel local mail delivery

SYNOPSIS
    local [generic daemon options]      (master.cf: local unix - n n - - local)

DESCRIPTION
    Delivers mail for the local domains ($mydestination) as local(8) does.
    qmgr(8) sends delivery requests on private/local; for each recipient
    user[+extension]@domain the agent, in this order:

      1. Loop check: when the message already has a Delivered-To: header
         with this recipient, it bounces with 5.4.6 "mail forwarding loop
         for ADDRESS".
      2. Aliases: $alias_maps is searched for "user+extension", then for
         "user".  Each item of the value is delivered in its own way:
           |command        run by the shell (allow_mail_to_commands "alias")
           /file/name      appended in mbox format (allow_mail_to_files
                           "alias"); a name ending in "/" is a Maildir
           :include:/file  the file's items, processed the same way
                           ("include" in allow_mail_to_commands/_files)
           \\user, or the alias name itself
                           delivered to that user's mailbox, without
                           further alias expansion
           address         forwarded: a new message with the same sender
                           and content, plus Delivered-To:, through
                           cleanup(8)
         When an alias "owner-NAME" exists, the forwarded mail gets
         "owner-NAME" as its sender, so that errors go to the list owner.
         Aliases that are commands or files run with the rights of the
         alias database's owner, or $default_privs when root owns it.
      3. The user: looked up in the passwd database.  An unknown user
         bounces with 5.1.1 "unknown user", unless $luser_relay is set: the
         mail is then forwarded to its expansion.
      4. .forward: the first file of $forward_path that exists (expanded
         with $user, $home, $shell, $recipient, $extension, $domain, $local,
         $recipient_delimiter) is read as the user; its items are handled
         as in an alias ("forward" class).
      5. The mailbox: $mailbox_command (run as the user) when set; else
         $home/$home_mailbox when set; else $mail_spool_directory/user.  A
         name ending in "/" is a Maildir, otherwise an mbox, locked with
         $mailbox_delivery_lock and limited to $mailbox_size_limit bytes.

    Address verification (sendmail -bv, request flag "verify"): the same
    decisions are made (loop check, aliases, :include: and .forward files
    are read, unknown users bounce), but nothing is written, no command
    runs and nothing is forwarded; each destination is reported instead:
    "delivers to mailbox", "delivers to command: CMD", "delivers to file:
    PATH", "forwards to ADDRESS", as "deliverable" or "undeliverable".

    When running as root, commands run and files are written as the user
    (or alias owner); the agent never runs a command as root.

    Self-contained instances (Postel extension).  When the agent does not
    run as root, or when $mail_owner is the user the agent runs as (what
    `postel init` sets up), the passwd database is not used: every local
    user name is valid, deliveries run as the agent's own user, no
    .forward file is read, and mail for "anyone" goes to
    $mail_spool_directory/anyone (a Maildir: `postel init` sets
    mail_spool_directory = $config_directory/mail/).  Names containing "/"
    or starting with "." bounce as unknown users.

    Headers: mailbox and file deliveries get Return-Path:, X-Original-To:
    (the original recipient) and Delivered-To: (per
    $prepend_delivered_header) as Postfix writes them; an mbox also gets
    the From_ line and ">From " quoting (see postel.deliver.mailbox).

CONFIGURATION PARAMETERS
    alias_maps                     alias tables
    allow_mail_to_commands (alias, forward)  where |command may appear
    allow_mail_to_files (alias, forward)     where /file/name may appear
    command_time_limit (1000s)     time limit for a command (also
                                   $local_time_limit / transport_time_limit)
    default_privs (nobody)         rights for root-owned alias commands/files
    export_environment             variables passed on to commands
    forward_path                   .forward files to look for
    home_mailbox                   mailbox relative to the home directory
    local_command_shell            shell for |command (default /bin/sh -c)
    luser_relay                    destination for unknown users
    mail_spool_directory (/var/mail)   spool mailboxes
    mailbox_command                command for mailbox delivery
    mailbox_delivery_lock (fcntl, dotlock)   mbox locking
    mailbox_size_limit (51200000)  largest mbox or message
    mail_owner                     see "Self-contained instances"
    owner_request_special (yes)    owner-NAME for NAME's errors
    prepend_delivered_header (command, file, forward)
    recipient_delimiter            user+extension separator(s)

SEE ALSO
    docs/local.md, docs/aliases.md, postel.deliver.mailbox, postel.deliver.command
"""

from __future__ import annotations

import contextlib
import os
import pwd
from dataclasses import dataclass, field

from postel import log
from postel.config.expand import ExpandError, expand
from postel.deliver.agent import delivery_agent_main
from postel.deliver.command import CommandResult, run_command
from postel.deliver.mailbox import (
    MailboxError,
    Message,
    as_user,
    deliver_maildir,
    deliver_mbox,
    delivered_to_headers,
    delivery_headers,
    from_line,
    is_self_contained,
    joined_lines,
    make_maildir,
    parse_locks,
)
from postel.deliver.request import FLAG_VERIFY, DeliverRcpt, DeliverRequest
from postel.deliver.status import DeliveryContext, bounce, defer, sent
from postel.ipc.skeleton import ServiceContext
from postel.mail.address import split_addr, split_extension
from postel.tables import TableError, TableUnavailable, open_table
from postel.tables.source import split_addresses

MAX_DEPTH = 20          # nested alias/include/forward levels before "loop"
MAX_ITEMS = 1000        # expansion items per recipient


@dataclass(slots=True)
class Outcome:
    """The result of delivering one item: "sent", "defer" or "bounce"."""

    status: str
    dsn: str
    text: str


@dataclass(slots=True)
class User:
    """A local user: passwd entry, or the agent's own identity (self-contained)."""

    name: str
    uid: int | None
    gid: int | None
    home: str = ""
    shell: str = ""


@dataclass(slots=True)
class Settings:
    """local(8) parameters, read once per process."""

    alias_maps: list[str]
    allow_commands: set[str]
    allow_files: set[str]
    time_limit: float
    default_privs: tuple[int, int]
    export_env: dict[str, str]
    forward_path: str
    home_mailbox: str
    command_shell: str
    luser_relay: str
    spool: str
    mailbox_command: str
    locks: list[str]
    size_limit: int
    delivered_hdr: set[str]
    delimiters: str
    owner_request_special: bool
    self_contained: bool
    queue_directory: str


def _words(value: str) -> set[str]:
    """_words - a comma/space separated list as a set of lower-case words."""
    return {w.lower() for w in value.replace(",", " ").split()}


def _privs(name: str) -> tuple[int, int]:
    """_privs - (uid, gid) of a user name; nobody's ids when unknown."""
    try:
        pw = pwd.getpwnam(name)
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        return 65534, 65534


def load_settings(cfg) -> Settings:
    """load_settings - read the parameters local(8) uses."""
    export = {}
    for name in cfg.get_list("export_environment"):
        if name in os.environ:
            export[name] = os.environ[name]
    time_limit = cfg.get_time("command_time_limit")
    with contextlib.suppress(Exception):
        time_limit = cfg.get_time("local_time_limit")
    return Settings(
        alias_maps=cfg.get_list("alias_maps"),
        allow_commands=_words(cfg.get("allow_mail_to_commands")),
        allow_files=_words(cfg.get("allow_mail_to_files")),
        time_limit=time_limit,
        default_privs=_privs(cfg.get("default_privs")),
        export_env=export,
        forward_path=cfg.raw("forward_path") or "",
        home_mailbox=cfg.get("home_mailbox"),
        command_shell=cfg.get("local_command_shell"),
        luser_relay=cfg.raw("luser_relay") or "",
        spool=cfg.get("mail_spool_directory"),
        mailbox_command=cfg.raw("mailbox_command") or "",
        locks=parse_locks(cfg.get("mailbox_delivery_lock")),
        size_limit=cfg.get_size("mailbox_size_limit"),
        delivered_hdr=_words(cfg.get("prepend_delivered_header")),
        delimiters=cfg.get("recipient_delimiter"),
        owner_request_special=cfg.get_bool("owner_request_special"),
        self_contained=is_self_contained(cfg.get("mail_owner")),
        queue_directory=cfg.get("queue_directory"),
    )


@dataclass(slots=True)
class State:
    """One recipient's delivery in progress."""

    req: DeliverRequest
    rcpt: DeliverRcpt
    lines: list[bytes]
    delivered_to: set[str]
    s: Settings
    cfg: object
    seen: set[tuple[str, str]] = field(default_factory=set)
    items: int = 0
    verify: bool = False            # sendmail -bv: decide, write nothing


# -- content

def message_lines(qf) -> list[bytes]:
    """message_lines - the content lines of the queue file (read once per request)."""
    return list(qf.iter_lines())


def _message(st: State, address: str, context: str) -> Message:
    """_message - the Message to write for one delivery context (file, command)."""
    delivered = address if context in st.s.delivered_hdr else ""
    return Message(st.req.sender, st.lines, orig_rcpt=st.rcpt.orig_rcpt or st.rcpt.address,
                   delivered=delivered)


# -- the pieces of an address

def split_local(address: str, delimiters: str) -> tuple[str, str, str | None]:
    """split_local - (user, domain, extension) of a local address, user lower case."""
    local, domain = split_addr(address)
    user, ext = split_extension(local, delimiters)
    return user.lower(), domain, ext


def attr_lookup(attrs: dict[str, str]):
    """attr_lookup - a lookup for expand() over local(8) attributes ($ in values kept)."""
    def lookup(name: str) -> str | None:
        value = attrs.get(name)
        return None if value is None else value.replace("$", "$$")
    return lookup


def expand_attrs(template: str, attrs: dict[str, str]) -> str:
    """expand_attrs - expand $user, $home, ... in a forward_path or luser_relay value."""
    return expand(template, attr_lookup(attrs))


def user_attrs(st: State, user: User | None, address: str) -> dict[str, str]:
    """user_attrs - the attribute table for $name expansion and command environment."""
    name, domain, ext = split_local(address, st.s.delimiters)
    local = split_addr(address)[0]
    return {
        "user": user.name if user else name, "home": user.home if user else "",
        "shell": user.shell if user else "", "recipient": address,
        "extension": ext or "", "domain": domain, "local": local.lower(),
        "mailbox": name, "recipient_delimiter": st.s.delimiters[:1],
    }


# -- users

def find_user(st: State, name: str) -> User | None:
    """find_user - the User for a local name, or None when unknown."""
    if st.s.self_contained:
        if not name or "/" in name or name.startswith(".") or "\0" in name:
            return None
        return User(name, None, None)
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    return User(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir, pw.pw_shell)


# -- delivery of one recipient

async def deliver_recipient(st: State) -> Outcome:
    """deliver_recipient - deliver one envelope recipient; the combined outcome."""
    address = st.rcpt.address
    if address.lower() in st.delivered_to:
        return Outcome("bounce", "5.4.6", f"mail forwarding loop for {address}")
    return await deliver_address(st, address, 0, allow_alias=True)


async def deliver_address(st: State, address: str, depth: int, *, allow_alias: bool) -> Outcome:
    """deliver_address - aliases, then the user's .forward, then the mailbox."""
    if depth > MAX_DEPTH:
        return Outcome("bounce", "5.4.6", f"mail forwarding loop for {address}")
    name, domain, ext = split_local(address, st.s.delimiters)
    if allow_alias and st.s.alias_maps:
        keys = [f"{name}{st.s.delimiters[:1]}{ext}".lower(), name] if ext is not None else [name]
        for key in keys:
            found = lookup_alias(st, key)
            if isinstance(found, Outcome):
                return found
            if found is not None:
                value, spec = found
                return await deliver_alias(st, key, domain, value, spec, address, depth)
    user = find_user(st, name)
    if user is None:
        if st.s.luser_relay:
            attrs = user_attrs(st, None, address)
            try:
                target = expand_attrs(st.s.luser_relay, attrs)
            except ExpandError as exc:
                return Outcome("defer", "4.3.5", f"mail system configuration error: luser_relay: {exc}")
            return await forward(st, address, [target], st.req.sender)
        return Outcome("bounce", "5.1.1", f'unknown user: "{name}"')
    if not st.s.self_contained and user.home and st.s.forward_path:
        result = await deliver_forward_file(st, user, address, depth)
        if result is not None:
            return result
    return await deliver_mailbox(st, user, address)


def lookup_alias(st: State, key: str) -> tuple[str, str] | Outcome | None:
    """lookup_alias - (value, table spec) for key in alias_maps, an error, or None."""
    for spec in st.s.alias_maps:
        try:
            value = open_table(spec, cfg=st.cfg).lookup(key)
        except TableUnavailable as exc:
            return Outcome("defer", "4.3.0", f"alias database unavailable: {exc}")
        except TableError as exc:
            return Outcome("defer", "4.3.5", f"mail system configuration error: {spec}: {exc}")
        if value is not None:
            return value, spec
    return None


def _table_owner(st: State, spec: str) -> tuple[int, int]:
    """_table_owner - rights for alias commands/files: the table file's owner, default_privs for root."""
    _, _, name = spec.partition(":")
    for path in (name, name + ".lmdb", name + ".db"):
        with contextlib.suppress(OSError):
            info = os.stat(path)
            if info.st_uid != 0:
                return info.st_uid, info.st_gid
            break
    return st.s.default_privs


async def deliver_alias(st: State, key: str, domain: str, value: str, spec: str,
                        address: str, depth: int) -> Outcome:
    """deliver_alias - deliver each item of an alias value."""
    sender = st.req.sender
    if st.s.owner_request_special and not key.startswith("owner-"):
        owner = lookup_alias(st, f"owner-{key}")
        if isinstance(owner, tuple):
            sender = f"owner-{key}@{domain}" if domain else f"owner-{key}"
    privs = _table_owner(st, spec)
    return await deliver_items(st, split_addresses(value), "alias", key, address, sender,
                               privs, None, depth + 1)


async def deliver_items(st: State, items: list[str], context: str, self_name: str,
                        address: str, sender: str, privs: tuple[int, int] | None,
                        home: str | None, depth: int) -> Outcome:
    """deliver_items - deliver alias/.forward/:include: items; the worst outcome wins."""
    results: list[Outcome] = []
    forwards: list[str] = []
    for raw in items:
        st.items += 1
        if st.items > MAX_ITEMS:
            results.append(Outcome("bounce", "5.4.6", f"unreasonable alias expansion for {address}"))
            break
        item = raw.strip()
        if item.startswith('"') and item.endswith('"') and len(item) >= 2:
            item = item[1:-1]
        if not item:
            continue
        if item.startswith("|"):
            results.append(await deliver_command_item(st, item[1:].strip(), context, address,
                                                      privs, home))
        elif item.lower().startswith(":include:"):
            results.append(await deliver_include(st, item[9:].strip(), context, self_name,
                                                 address, sender, privs, depth))
        elif item.startswith("/"):
            results.append(deliver_file_item(st, item, context, address, privs))
        elif item.startswith("\\"):
            results.append(await self_delivery(st, item[1:], address, depth))
        else:
            target_local = split_addr(item)[0].lower()
            if target_local == self_name.lower() and (not split_addr(item)[1]
                                                      or "@" not in item):
                results.append(await self_delivery(st, item, address, depth))
            else:
                forwards.append(item)
    if forwards:
        results.append(await forward(st, address, forwards, sender))
    return combine(results, address)


def combine(results: list[Outcome], address: str) -> Outcome:
    """combine - one outcome for many items: defer beats bounce beats sent."""
    for status in ("defer", "bounce"):
        for r in results:
            if r.status == status:
                return r
    if not results:
        return Outcome("sent", "2.0.0", "delivered to nothing: empty expansion")
    texts = "; ".join(dict.fromkeys(r.text for r in results))
    return Outcome("sent", "2.0.0", texts)


async def self_delivery(st: State, name: str, address: str, depth: int) -> Outcome:
    """self_delivery - \\user or an alias to itself: the user's own mailbox, no aliasing."""
    user_name, _, _ = split_local(name, st.s.delimiters)
    user = find_user(st, user_name)
    if user is None:
        return Outcome("bounce", "5.1.1", f'unknown user: "{user_name}"')
    target = address if split_local(address, st.s.delimiters)[0] == user_name else name
    return await deliver_mailbox(st, user, target)


async def deliver_forward_file(st: State, user: User, address: str, depth: int) -> Outcome | None:
    """deliver_forward_file - use the first $forward_path file that exists; None if none."""
    attrs = user_attrs(st, user, address)
    try:
        expanded = expand_attrs(st.s.forward_path, attrs)
    except ExpandError as exc:
        return Outcome("defer", "4.3.5", f"mail system configuration error: forward_path: {exc}")
    for path in expanded.replace(",", " ").split():
        if not path.startswith("/"):
            continue
        try:
            with as_user(user.uid, user.gid):
                with open(path, encoding="utf-8", errors="replace") as f:
                    text = f.read(1 << 20)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno in (13,):   # EACCES: as Postfix, skip an unreadable .forward
                continue
            return Outcome("defer", "4.3.0", f"cannot open {path}: {exc.strerror}")
        items = _file_items(text)
        log.info("%s: forward file %s for %s", st.req.queue_id, path, address)
        return await deliver_items(st, items, "forward", user.name, address, st.req.sender,
                                   (user.uid, user.gid) if user.uid is not None else None,
                                   user.home, depth + 1)
    return None


def _file_items(text: str) -> list[str]:
    """_file_items - the items of a .forward or :include: file (comments and blank lines skipped)."""
    items: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        items.extend(split_addresses(line))
    return items


async def deliver_include(st: State, path: str, context: str, self_name: str, address: str,
                          sender: str, privs: tuple[int, int] | None, depth: int) -> Outcome:
    """deliver_include - :include:/file: its items, with the rights of the file's owner."""
    if not path.startswith("/"):
        return Outcome("bounce", "5.3.5", f"mail system configuration error: "
                       f":include: path is not absolute: {path}")
    try:
        with as_user(*_rights(st, privs)):
            with open(path, encoding="utf-8", errors="replace") as f:
                info = os.fstat(f.fileno())
                text = f.read(1 << 20)
    except FileNotFoundError:
        return Outcome("bounce", "5.3.5", f"cannot open include file {path}: No such file or directory")
    except OSError as exc:
        return Outcome("defer", "4.3.0", f"cannot open include file {path}: {exc.strerror}")
    inc_privs = privs
    if info.st_uid != 0:
        inc_privs = (info.st_uid, info.st_gid)
    return await deliver_items(st, _file_items(text), "include", self_name, address, sender,
                               inc_privs, None, depth + 1)


def _rights(st: State, privs: tuple[int, int] | None) -> tuple[int | None, int | None]:
    """_rights - (uid, gid) to act as: none in a self-contained instance, else privs or default_privs."""
    if st.s.self_contained:
        return None, None
    if privs is None or privs[0] is None:
        return st.s.default_privs if os.geteuid() == 0 else (None, None)
    return privs


def _allowed(allow: set[str], context: str) -> bool:
    """_allowed - may a command/file appear in this context (alias, forward, include)?"""
    return context in allow


def command_env(st: State, address: str, user: User | None, home: str | None) -> dict[str, str]:
    """command_env - the environment of a delivery command, as local(8) sets it."""
    name, domain, ext = split_local(address, st.s.delimiters)
    env = dict(st.s.export_env)
    env.update({
        "PATH": "/usr/bin:/bin", "SHELL": (user.shell if user and user.shell else "/bin/sh"),
        "HOME": home or (user.home if user else "") or "/", "LOGNAME": user.name if user else name,
        "USER": user.name if user else name, "EXTENSION": ext or "", "DOMAIN": domain,
        "LOCAL": split_addr(address)[0].lower(), "RECIPIENT": address,
        "SENDER": st.req.sender, "ORIGINAL_RECIPIENT": st.rcpt.orig_rcpt or st.rcpt.address,
        "CLIENT_ADDRESS": st.req.client_address, "CLIENT_HOSTNAME": st.req.client_name,
        "CLIENT_HELO": st.req.client_helo, "CLIENT_PROTOCOL": st.req.client_protocol,
        "SASL_USERNAME": st.req.sasl_username, "QUEUE_ID": st.req.queue_id,
    })
    return env


def command_argv(st: State, command: str) -> list[str]:
    """command_argv - local_command_shell (or /bin/sh -c) plus the command."""
    if st.s.command_shell:
        return st.s.command_shell.split() + [command]
    return ["/bin/sh", "-c", command]


def command_bytes(msg: Message):
    """command_bytes - what a command reads: From_ line, delivery headers, content."""
    yield from_line(msg.sender) + b"\n"
    yield from joined_lines(delivery_headers(msg))
    yield from joined_lines(msg.lines)


async def deliver_command_item(st: State, command: str, context: str, address: str,
                               privs: tuple[int, int] | None, home: str | None,
                               user: User | None = None) -> Outcome:
    """deliver_command_item - |command from an alias, .forward or include file."""
    if context != "mailbox" and not _allowed(st.s.allow_commands, context):
        return Outcome("bounce", "5.7.1", f"mail to command is restricted: |{command}")
    key = ("command", command)
    if key in st.seen:
        return Outcome("sent", "2.0.0", f"delivered to command: {command}")
    st.seen.add(key)
    if st.verify:
        return Outcome("sent", "2.0.0", f"delivers to command: {command}")
    uid, gid = _rights(st, privs)
    msg = _message(st, address, "command")
    result: CommandResult = await run_command(
        command_argv(st, command), command_bytes(msg), uid=uid, gid=gid,
        env=command_env(st, address, user, home), cwd=home or None,
        time_limit=st.s.time_limit, label=command)
    return Outcome(result.status, result.dsn, result.text)


def deliver_file_item(st: State, path: str, context: str, address: str,
                      privs: tuple[int, int] | None) -> Outcome:
    """deliver_file_item - /file/name (mbox) or /dir/ (Maildir) from an alias or .forward."""
    if not _allowed(st.s.allow_files, context):
        return Outcome("bounce", "5.7.1", f"mail to file is restricted: {path}")
    key = ("file", path)
    if key in st.seen:
        return Outcome("sent", "2.0.0", f"delivered to file: {path}")
    st.seen.add(key)
    if st.verify:
        return Outcome("sent", "2.0.0", f"delivers to file: {path}")
    uid, gid = _rights(st, privs)
    msg = _message(st, address, "file")
    try:
        with as_user(uid, gid):
            if path.endswith("/"):
                deliver_maildir(path, msg, size_limit=st.s.size_limit)
                return Outcome("sent", "2.0.0", f"delivered to maildir: {path}")
            deliver_mbox(path, msg, locks=st.s.locks, size_limit=st.s.size_limit)
    except MailboxError as exc:
        return Outcome("defer" if exc.temporary else "bounce", exc.dsn, exc.text)
    except OSError as exc:
        return Outcome("defer", "4.3.0", f"cannot deliver to file {path}: {exc.strerror}")
    return Outcome("sent", "2.0.0", f"delivered to file: {path}")


async def deliver_mailbox(st: State, user: User, address: str) -> Outcome:
    """deliver_mailbox - mailbox_command, home_mailbox or the spool mailbox."""
    key = ("mailbox", user.name)
    if key in st.seen:
        return Outcome("sent", "2.0.0", "delivered to mailbox")
    st.seen.add(key)
    if st.verify and not st.s.mailbox_command:
        return Outcome("sent", "2.0.0", "delivers to mailbox")
    if st.s.mailbox_command:
        # As postconf(5): mailbox_command gets no $name substitution, so that
        # shell syntax is easy to write; the command sees $USER, $HOME, ...
        command = st.s.mailbox_command
        privs = (user.uid, user.gid) if user.uid is not None else None
        return await deliver_command_item(st, command, "mailbox", address, privs,
                                          user.home, user)
    msg = Message(st.req.sender, st.lines, orig_rcpt=st.rcpt.orig_rcpt or st.rcpt.address,
                  delivered=address if "file" in st.s.delivered_hdr else "")
    owner = (user.uid, user.gid) if user.uid is not None else None
    try:
        if st.s.home_mailbox and user.home:
            path = os.path.join(user.home, st.s.home_mailbox)
            with as_user(user.uid, user.gid):
                return _write_mailbox(st, path, msg, None)
        spool = st.s.spool
        path = os.path.join(spool, user.name) + ("/" if spool.endswith("/") else "")
        if path.endswith("/"):
            # A spool Maildir: the directory is made as root and given to the
            # user; the message itself is written with the user's rights.
            if not os.path.isdir(path):
                make_maildir(path, owner)
            with as_user(user.uid, user.gid):
                return _write_mailbox(st, path, msg, None)
        return _write_mailbox(st, path, msg, owner)
    except MailboxError as exc:
        return Outcome("defer" if exc.temporary else "bounce", exc.dsn, exc.text)
    except OSError as exc:
        return Outcome("defer", "4.3.0", f"cannot deliver to mailbox of {user.name}: {exc.strerror}")


def _write_mailbox(st: State, path: str, msg: Message, owner: tuple[int, int] | None) -> Outcome:
    """_write_mailbox - Maildir when path ends in "/", else mbox."""
    if path.endswith("/"):
        deliver_maildir(path, msg, size_limit=st.s.size_limit, owner=owner)
        return Outcome("sent", "2.0.0", "delivered to maildir")
    deliver_mbox(path, msg, locks=st.s.locks, size_limit=st.s.size_limit, owner=owner)
    return Outcome("sent", "2.0.0", "delivered to mailbox")


async def forward(st: State, address: str, targets: list[str], sender: str) -> Outcome:
    """forward - resubmit the message to targets through cleanup, with Delivered-To added."""
    if st.verify:
        return Outcome("sent", "2.0.0", f"forwards to {', '.join(targets)}")
    client = _cleanup_client(st)
    msg = _message(st, address, "forward")
    head = [f"Delivered-To: {address.lower()}".encode("utf-8", "surrogateescape")] \
        if msg.delivered else []

    def content():
        yield from joined_lines(head, b"\r\n")
        yield from joined_lines(st.lines, b"\r\n")

    recipients = [(t, st.rcpt.orig_rcpt or st.rcpt.address, 0) for t in targets]
    attrs = {"rewrite_context": "local"}
    try:
        result = await client.submit(sender, recipients, content(), attrs=attrs)
    except Exception as exc:   # cleanup unreachable: try again later
        return Outcome("defer", "4.3.0", f"cannot forward mail: {exc}")
    if not result.ok:
        return Outcome("defer" if str(result.status).startswith("4") else "bounce",
                       result.dsn or "4.3.0", f"cannot forward mail: {result.reason}")
    return Outcome("sent", "2.0.0", f"forwarded as {result.queue_id}")


_CLEANUP: dict[str, object] = {}


def _cleanup_client(st: State):
    """_cleanup_client - one CleanupClient per process (connections are reused)."""
    from postel.ipc.cleanup_client import CleanupClient
    client = _CLEANUP.get(st.s.queue_directory)
    if client is None:
        client = CleanupClient(st.s.queue_directory, "public/cleanup")
        _CLEANUP[st.s.queue_directory] = client
    return client


# -- the agent

async def deliver(req: DeliverRequest, dctx: DeliveryContext, ctx: ServiceContext) -> None:
    """deliver - deliver each recipient of a request (the delivery agent callback)."""
    settings = ctx.state.get("local_settings")
    if settings is None:
        settings = load_settings(ctx.cfg)
        ctx.state["local_settings"] = settings
    lines = message_lines(dctx.qf)
    delivered_to = delivered_to_headers(lines)
    verify = FLAG_VERIFY in req.flags
    for rcpt in req.recipients:
        st = State(req, rcpt, lines, delivered_to, settings, ctx.cfg, verify=verify)
        outcome = await deliver_recipient(st)
        report(dctx, rcpt, outcome)


# sendmail -bv: the local agent answers for itself (aliases, users, .forward), see agent.py.
deliver.handles_verify = True  # type: ignore[attr-defined]


def report(dctx: DeliveryContext, rcpt: DeliverRcpt, outcome: Outcome) -> None:
    """report - hand one outcome to postel.deliver.status."""
    if outcome.status == "sent":
        sent(dctx, rcpt, "local", outcome.dsn, outcome.text)
    elif outcome.status == "bounce":
        bounce(dctx, rcpt, "local", outcome.dsn, outcome.text)
    else:
        defer(dctx, rcpt, "local", outcome.dsn, outcome.text)


def main(argv: list[str]) -> int:
    """main - the local(8) service."""
    return delivery_agent_main("local", argv, deliver)
