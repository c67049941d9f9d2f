"""control - postel init, start, stop, abort, reload, status, check, set-permissions

SYNOPSIS
    postel init [--port N | --listen ADDR:PORT] DIR
    postel [-c config_dir] start | start-fg | stop | abort | reload | status
    postel [-c config_dir] check | set-permissions

DESCRIPTION
    The administrator's controls, as postfix(1) and postfix-script:

    init DIR       create a self-contained instance in DIR: main.cf,
                   master.cf (Postfix's standard services, SMTP on
                   127.0.0.1:2525 or the --port/--listen address), the queue
                   directories, DIR/data, DIR/mail/ (local delivery in
                   Maildir form) and the log file DIR/maillog.  Refuses to
                   overwrite an existing main.cf.
                   Run by an ordinary user, everything belongs to and runs
                   as that user.  Run by root, the instance is privileged as
                   Postfix's is: mail_owner = postel, setgid_group =
                   postdrop (both created with useradd/groupadd --system
                   when missing), queue and data directories owned by
                   postel, local(8) runs as postel (unpriv y) and delivers
                   into DIR/mail/, and the set-group-ID postdrop wrapper
                   DIR/libexec/postdrop lets local users submit mail.  The
                   directories above DIR must be searchable by postel:
                   init adds o+x where they are not, and says so.
    start          create missing queue directories, start master in the
                   background, and wait until it reports that it is ready
                   (exit 0) or that it failed (message, exit 1).
    start-fg       run master in the foreground, logging also on stdout;
                   SIGTERM or SIGINT (^C) stops it.
    stop           graceful stop: in-flight clients are finished; waits
                   until master has exited.
    abort          immediate stop: service processes are killed.
    reload         re-read main.cf and master.cf (SIGHUP to master).
    status         "the Postel mail system is running: PID: N" (exit 0) or
                   "... is not running" (exit 1).
    check          report missing directories, bad ownership or modes and
                   configuration errors; exit 1 when something is missing or
                   the configuration does not parse.
    set-permissions  create missing queue directories, set the owner and
                   mode of the queue, data and (self-contained) mail
                   directories, and, as root, build the set-group-ID
                   postdrop wrapper $daemon_directory/postdrop with the
                   system C compiler (see docs/security.md).

    Messages go to stderr and the mail log as "postel/postel-script: ...",
    mirroring Postfix's "postfix/postfix-script: ...".

SECURITY
    See docs/security.md: master runs as root only to bind listeners and
    fork; every service with unpriv y runs as mail_owner; the queue is
    readable by mail_owner only; postdrop is the one privileged path into
    the maildrop queue for local users.

CONFIGURATION PARAMETERS
    queue_directory, data_directory, daemon_directory, mail_owner,
    setgid_group, mail_spool_directory, syslog_name, maillog_file
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time

from postel import log

SCRIPT = "postel-script"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 45.0

# queue directory -> (mode when privileged, owner, group is setgid_group)
# Postfix's modes: maildrop 1730 and public 2710 are group $setgid_group so
# that postdrop can write; private and the queues are mail_owner only.
QUEUE_DIRS: dict[str, tuple[int, str, bool]] = {
    "maildrop": (0o1730, "owner", True),
    "incoming": (0o700, "owner", False),
    "active": (0o700, "owner", False),
    "deferred": (0o700, "owner", False),
    "hold": (0o700, "owner", False),
    "corrupt": (0o700, "owner", False),
    "bounce": (0o700, "owner", False),
    "defer": (0o700, "owner", False),
    "trace": (0o700, "owner", False),
    "flush": (0o700, "owner", False),
    "saved": (0o700, "owner", False),
    "public": (0o2710, "owner", True),
    "private": (0o700, "owner", False),
    "pid": (0o755, "root", False),
    "recycle": (0o700, "owner", False),
}
# unprivileged instance: everything belongs to the one user
UNPRIV_MODES = {"pid": 0o755, "public": 0o710}

DEFAULT_PORT = 2525

# the accounts a privileged instance runs as (Postfix: postfix, postdrop)
SYSTEM_USER = "postel"
SYSTEM_GROUP = "postdrop"
ACCOUNT_RETRIES = 30       # concurrent useradd calls fail on the passwd lock


def _say(text: str) -> None:
    """_say - an informational postel-script line on stderr and in the log."""
    log.info("%s", text)


def _init_log(cfg) -> None:
    """_init_log - log as postel/postel-script, also on stderr."""
    try:
        log.init(SCRIPT, syslog_name=cfg.get("syslog_name"), maillog_file=cfg.get("maillog_file"),
                 stderr=True)
    except Exception:
        log.init(SCRIPT, stderr=True)


def _load(config_dir: str | None, validate: bool = False):
    """_load - the configuration, or None after printing why not.

    validate=True (start, start-fg, check) also checks every explicit main.cf
    value against its declared kind, so that a typo stops the start with a
    message naming file, line and parameter instead of a daemon crash loop.
    """
    from postel.config import ConfigError, load_config
    try:
        cfg = load_config(config_dir)
        cfg.master_entries()
        problems = cfg.validate() if validate else []
    except (ConfigError, KeyError, ValueError) as exc:
        log.init(SCRIPT, stderr=True)
        with contextlib.suppress(log.FatalError):
            log.fatal("%s", exc)
        return None
    if problems:
        log.init(SCRIPT, stderr=True)
        for problem in problems[:-1]:
            log.error("%s", problem)
        with contextlib.suppress(log.FatalError):
            log.fatal("%s", problems[-1])
        return None
    return cfg


# -- postel init

def _main_cf(dirpath: str, user: str, group: str) -> str:
    """_main_cf - the main.cf of a new self-contained instance."""
    host = socket.gethostname()
    lines = [
        "# Postel instance created by `postel init`.  See docs/instance.md.",
        f"config_directory = {dirpath}",
        "queue_directory = $config_directory/queue",
        "data_directory = $config_directory/data",
        "daemon_directory = $config_directory/libexec",
        "maillog_file = $config_directory/maillog",
        f"mail_owner = {user}",
        f"setgid_group = {group}",
    ]
    if "." not in host:
        lines.append("myhostname = localhost.localdomain")
    lines += [
        "mydestination = localhost, localhost.localdomain",
        "inet_interfaces = 127.0.0.1",
        "mynetworks = 127.0.0.0/8 [::1]/128",
        "# local delivery: a trailing slash means Maildir (Postfix semantics)",
        "mail_spool_directory = $config_directory/mail/",
        "alias_maps =",
        "alias_database =",
        "local_recipient_maps =",
        "",
    ]
    return "\n".join(lines)


MASTER_CF_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
{local}
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

LOCAL_ROOT = "local     unix  -       n       n       -       -       local"
# A self-contained instance made by root has no system users to switch to:
# local runs as mail_owner and delivers into $config_directory/mail/.
LOCAL_SELF_CONTAINED = (
    "# local runs as mail_owner (unpriv y): this self-contained instance delivers\n"
    "# every local name into $config_directory/mail/NAME/ as mail_owner.  For\n"
    "# delivery to system users' mailboxes, set unpriv to n (local then runs as\n"
    "# root and switches to each recipient) and see docs/security.md.\n"
    "local     unix  -       -       n       -       -       local")


def master_cf_text(listen: str, local_unpriv: bool = False) -> str:
    """master_cf_text - Postfix's standard service list with SMTP on listen."""
    head = (
        "# Postel master process configuration file; syntax as Postfix's master(5).\n"
        "# ==========================================================================\n"
        "# service type  private unpriv  chroot  wakeup  maxproc command + args\n"
        "#               (yes)   (yes)   (no)    (never) (100)\n"
        "# ==========================================================================\n"
    )
    services = MASTER_CF_SERVICES.format(
        local=LOCAL_SELF_CONTAINED if local_unpriv else LOCAL_ROOT)
    return head + f"{listen:<9} inet  n       -       n       -       -       smtpd\n" + services


def _parse_init_args(argv: list[str]) -> tuple[str, str] | str:
    """_parse_init_args - (directory, listen address) or an error message."""
    listen = f"127.0.0.1:{DEFAULT_PORT}"
    target = ""
    it = iter(argv)
    for arg in it:
        if arg in ("--port", "-p"):
            val = next(it, "")
            if not val.isdigit() or not 0 < int(val) < 65536:
                return f"bad port: {val!r}"
            listen = f"127.0.0.1:{val}"
        elif arg.startswith("--port="):
            return _parse_init_args(["--port", arg[7:], *list(it), *([target] if target else [])])
        elif arg == "--listen":
            listen = next(it, "")
            host, sep, port = listen.rpartition(":")
            if not sep or not host or not port.isdigit():
                return f"bad listen address (want ADDR:PORT): {listen!r}"
        elif arg.startswith("-"):
            return f"unknown option: {arg}"
        elif target:
            return "only one directory may be given"
        else:
            target = arg
    if not target:
        return "usage: postel init [--port N | --listen ADDR:PORT] DIR"
    return target, listen


class AccountError(Exception):
    """A system user or group could not be created; str() says why."""


def _run_account_tool(cmd: list[str], exists) -> bool:
    """_run_account_tool - run useradd/groupadd; True when it created the account."""
    for attempt in range(ACCOUNT_RETRIES):
        if exists():
            return False
        try:
            cp = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AccountError(f"cannot run {cmd[0]}: {exc}") from None
        if cp.returncode == 0:
            return True
        if exists():            # another `postel init` created it meanwhile
            return False
        # useradd/groupadd exit 10 when /etc/passwd or /etc/group is locked
        if cp.returncode != 10 and attempt >= 2:
            raise AccountError(f"{' '.join(cmd)}: {cp.stderr.strip() or f'exit {cp.returncode}'}")
        time.sleep(0.05 * (attempt + 1))
    raise AccountError(f"{' '.join(cmd)}: gave up (account database locked)")


def _user_exists(name: str) -> bool:
    """_user_exists - the passwd database knows name."""
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _group_exists(name: str) -> bool:
    """_group_exists - the group database knows name."""
    return _gid(name) is not None


def ensure_system_accounts(user: str = SYSTEM_USER, group: str = SYSTEM_GROUP) -> list[str]:
    """ensure_system_accounts - create mail_owner and setgid_group if missing; messages."""
    said: list[str] = []
    # Debian conventions for a daemon account: --system ids, own group, no
    # home directory (/nonexistent), no login shell.
    if _run_account_tool(["groupadd", "--system", group], lambda: _group_exists(group)):
        said.append(f"created system group {group} (setgid_group)")
    if _run_account_tool(["useradd", "--system", "--user-group", "--no-create-home",
                          "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                          "--comment", "Postel mail system", user],
                         lambda: _user_exists(user)):
        said.append(f"created system user {user} (mail_owner)")
    return said


def _can_search(st: os.stat_result, uid: int, gids: set[int]) -> bool:
    """_can_search - would uid (in gids) have search permission on this directory?"""
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _user_ids(owner: str) -> tuple[int, set[int]] | None:
    """_user_ids - uid and all group ids of a user, None when unknown."""
    try:
        pw = pwd.getpwnam(owner)
    except KeyError:
        return None
    return pw.pw_uid, set(os.getgrouplist(pw.pw_name, pw.pw_gid))


def unsearchable_parents(path: str, owner: str) -> list[str]:
    """unsearchable_parents - directories on the way to path that owner cannot search."""
    ids = _user_ids(owner)
    if ids is None:
        return []
    bad: list[str] = []
    here = os.path.abspath(path)
    chain = []
    while True:
        chain.append(here)
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    for item in reversed(chain):
        try:
            st = os.stat(item)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and not _can_search(st, *ids):
            bad.append(item)
    return bad


def _grant_search(path: str, owner: str) -> list[str]:
    """_grant_search - add o+x where owner could not reach path; messages."""
    said = []
    for item in unsearchable_parents(path, owner):
        mode = stat.S_IMODE(os.stat(item).st_mode)
        os.chmod(item, mode | stat.S_IXOTH)
        said.append(f"{item}: added search permission (o+x) so that {owner} can reach "
                    f"the instance")
    return said


def code_paths() -> list[str]:
    """code_paths - what a service needs to import after the switch: Python and Postel."""
    import sysconfig

    from postel.commands.postdrop import package_parent
    paths = sysconfig.get_paths()
    out = [os.path.dirname(os.path.realpath(sys.executable)), package_parent()]
    out += [paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths]
    return [p for p in dict.fromkeys(out) if os.path.isdir(p)]


def unreachable_code(owner: str) -> list[str]:
    """unreachable_code - directories above Python or Postel that owner cannot search."""
    bad: list[str] = []
    for path in code_paths():
        bad += [p for p in unsearchable_parents(path, owner) if p not in bad]
    return bad


def grant_code_search(owner: str) -> list[str]:
    """grant_code_search - o+x where owner could not reach Python's or Postel's files."""
    said = []
    for path in code_paths():
        for line in _grant_search(path, owner):
            said.append(line.replace("the instance", "Python and Postel's code"))
    return said


def init_main(argv: list[str], config_dir: str | None) -> int:
    """init_main - create a self-contained instance."""
    parsed = _parse_init_args(argv)
    if isinstance(parsed, str):
        print(f"postel init: {parsed}", file=sys.stderr)
        return 2
    target, listen = parsed
    dirpath = os.path.abspath(target)
    main_cf = os.path.join(dirpath, "main.cf")
    if os.path.exists(main_cf):
        print(f"postel init: {main_cf} exists; not overwriting", file=sys.stderr)
        return 1
    root = os.geteuid() == 0
    said: list[str] = []
    if root:
        user, group = SYSTEM_USER, SYSTEM_GROUP
        try:
            said += ensure_system_accounts(user, group)
        except AccountError as exc:
            print(f"postel init: {exc}", file=sys.stderr)
            return 1
    else:
        user = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
    try:
        os.makedirs(dirpath, mode=0o755, exist_ok=True)
        os.chmod(dirpath, 0o755)
        if root:
            said += _grant_search(dirpath, user)
            said += grant_code_search(user)
        _write_new(main_cf, _main_cf(dirpath, user, group))
        master_cf = os.path.join(dirpath, "master.cf")
        if not os.path.exists(master_cf):
            _write_new(master_cf, master_cf_text(listen, local_unpriv=root))
        problems = make_queue_dirs(os.path.join(dirpath, "queue"), user, group, create=True)
        problems += fix_owned_dirs([os.path.join(dirpath, "data"), os.path.join(dirpath, "mail")],
                                   user, create=True)
    except OSError as exc:
        print(f"postel init: {exc.filename or dirpath}: {exc.strerror}", file=sys.stderr)
        return 1
    if root:
        problems += _build_postdrop(os.path.join(dirpath, "libexec"), dirpath, group)
    for line in said:
        print(f"postel init: {line}", file=sys.stderr)
    for p in problems:
        print(f"postel init: warning: {p}", file=sys.stderr)
    who = f" (runs as {user}; local users submit through setgid-{group} postdrop)" if root else ""
    print(f"postel init: created instance in {dirpath} (SMTP on {listen}){who}", file=sys.stderr)
    print(f"start it with: postel -c {dirpath} start", file=sys.stderr)
    return 0


def _write_new(path: str, text: str) -> None:
    """_write_new - create a file that must not exist yet."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _build_postdrop(libexec: str, config_dir: str, group: str) -> list[str]:
    """_build_postdrop - the setgid postdrop wrapper in libexec; problems found."""
    from postel.commands.postdrop import WrapperError, build_setgid_wrapper
    try:
        os.makedirs(libexec, mode=0o755, exist_ok=True)
        build_setgid_wrapper(os.path.join(libexec, "postdrop"), config_dir, group)
    except WrapperError as exc:
        return [f"{exc}; local users cannot submit mail (see docs/security.md)"]
    except OSError as exc:
        return [f"{exc.filename or libexec}: {exc.strerror}; local users cannot submit mail"]
    return []


# -- queue directories

def _privileged(owner: str) -> tuple[int, int] | None:
    """_privileged - (uid, gid) of mail_owner when running as root for another user."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(owner)
    except KeyError:
        return None
    return None if pw.pw_uid == 0 else (pw.pw_uid, pw.pw_gid)


def _gid(group: str) -> int | None:
    """_gid - numeric id of setgid_group, None when unknown."""
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def expected_modes(owner: str, group: str) -> dict[str, tuple[int, int | None, int | None]]:
    """expected_modes - queue dir -> (mode, uid or None, gid or None)."""
    ids = _privileged(owner)
    gid = _gid(group)
    out: dict[str, tuple[int, int | None, int | None]] = {}
    for name, (mode, who, setgid) in QUEUE_DIRS.items():
        if ids is None:
            out[name] = (UNPRIV_MODES.get(name, 0o700), None, None)
        elif who == "root":
            out[name] = (mode, 0, 0)
        else:
            use_gid = gid if setgid and gid is not None else ids[1]
            eff = mode if (not setgid or gid is not None) else 0o700
            out[name] = (eff, ids[0], use_gid)
    return out


def make_queue_dirs(queue_dir: str, owner: str, group: str, create: bool,
                    fix: bool = True) -> list[str]:
    """make_queue_dirs - create/fix queue directories; returns problems found."""
    problems: list[str] = []
    if create:
        os.makedirs(queue_dir, mode=0o755, exist_ok=True)
    for name, (mode, uid, gid) in expected_modes(owner, group).items():
        path = os.path.join(queue_dir, name)
        if not os.path.isdir(path):
            if not create:
                problems.append(f"missing directory: {path}")
                continue
            os.mkdir(path, 0o700)
        if fix:
            if uid is not None:
                os.chown(path, uid, gid if gid is not None else -1)
            os.chmod(path, mode)
        else:
            st = os.stat(path)
            if stat.S_IMODE(st.st_mode) != mode:
                problems.append(f"{path}: mode {stat.S_IMODE(st.st_mode):04o}, expected {mode:04o}")
            if uid is not None and st.st_uid != uid:
                problems.append(f"{path}: not owned by {owner if uid else 'root'}")
    return problems


def fix_owned_dirs(paths: list[str], owner: str, create: bool, fix: bool = True) -> list[str]:
    """fix_owned_dirs - mail_owner-only (0700) directories such as data_directory; problems."""
    problems: list[str] = []
    ids = _privileged(owner)
    for path in paths:
        if not os.path.isdir(path):
            if not create:
                problems.append(f"missing directory: {path}")
                continue
            os.makedirs(path, mode=0o700, exist_ok=True)
        if fix:
            if ids is not None:
                os.chown(path, ids[0], ids[1])
            os.chmod(path, 0o700)
        elif ids is not None and os.stat(path).st_uid != ids[0]:
            problems.append(f"{path}: not owned by {owner}")
    return problems


def _chown_tree(top: str, uid: int, gid: int) -> None:
    """_chown_tree - give everything below top to uid (gid -1: keep the group)."""
    for base, dirs, files in os.walk(top):
        for item in dirs + files:
            os.lchown(os.path.join(base, item), uid, gid)


def _self_contained_mail(cfg) -> str:
    """_self_contained_mail - mail_spool_directory when it is inside config_directory."""
    spool = (cfg.get("mail_spool_directory") or "").rstrip("/")
    conf = cfg.config_directory.rstrip("/")
    return spool if spool.startswith(conf + "/") else ""


def _owned_dirs(cfg) -> list[str]:
    """_owned_dirs - data_directory and a self-contained mail directory."""
    return [d for d in (cfg.get("data_directory"), _self_contained_mail(cfg)) if d]


def postdrop_problems(cfg) -> list[str]:
    """postdrop_problems - what is wrong with the setgid postdrop wrapper of a root instance."""
    from postel.commands.postdrop import wrapper_path
    path = wrapper_path(cfg)
    gid = _gid(cfg.get("setgid_group"))
    try:
        st = os.stat(path)
    except OSError:
        return [f"missing setgid postdrop: {path} (run postel set-permissions)"]
    out = []
    if st.st_uid != 0 or (gid is not None and st.st_gid != gid):
        out.append(f"{path}: not owned by root:{cfg.get('setgid_group')}")
    if stat.S_IMODE(st.st_mode) != 0o2755:
        out.append(f"{path}: mode {stat.S_IMODE(st.st_mode):04o}, expected 2755")
    return out


# -- pid file

def running_pid(cfg) -> int | None:
    """running_pid - master's pid when its pid file is locked, else None."""
    path = os.path.join(cfg.get("queue_directory"), "pid", "master.pid")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else -1
        return None
    finally:
        os.close(fd)


def _process_alive(pid: int) -> bool:
    """_process_alive - pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _wait_gone(cfg, timeout: float, pid: int | None = None) -> bool:
    """_wait_gone - wait until master has released its pid file and exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running_pid(cfg) is None and (pid is None or not _process_alive(pid)):
            return True
        time.sleep(0.05)
    return False


# -- start / stop

def _prepare(cfg) -> bool:
    """_prepare - create missing queue directories before start."""
    try:
        make_queue_dirs(cfg.get("queue_directory"), cfg.get("mail_owner"),
                        cfg.get("setgid_group"), create=True)
        data = cfg.get("data_directory")
        if data:
            os.makedirs(data, mode=0o700, exist_ok=True)
        _purge_temp_files(cfg)
    except OSError as exc:
        with contextlib.suppress(log.FatalError):
            log.fatal("%s: %s", exc.filename or cfg.get("queue_directory"), exc.strerror)
        return False
    return True


def _purge_temp_files(cfg) -> None:
    """_purge_temp_files - no cleanup runs before master starts: its temporary files are debris.

    A cleanup killed in the middle of a message leaves NAME.tmp behind (never
    acknowledged, never visible to qmgr).  maildrop is left alone: sendmail
    writes there without the mail system running.
    """
    from postel.queue import QueueDir
    from postel.queue.qdir import FILE_QUEUES
    qd = QueueDir(cfg.get("queue_directory"), cfg.get("hash_queue_names"), cfg.get_int("hash_queue_depth"))
    qd.purge_temp(max_age=0, queues=[q for q in FILE_QUEUES if q != "maildrop"])


def _warn_unreachable(cfg) -> None:
    """_warn_unreachable - as root, say when mail_owner cannot import Python's modules."""
    owner = cfg.get("mail_owner")
    if _privileged(owner) is None:
        return
    for path in unreachable_code(owner):
        log.warning("%s: not searchable by %s (mail_owner): services will fail to import "
                    "modules; run postel set-permissions", path, owner)


def start_main(argv: list[str], config_dir: str | None) -> int:
    """start_main - start master in the background and wait until it is ready."""
    cfg = _load(config_dir, validate=True)
    if cfg is None:
        return 1
    _init_log(cfg)
    pid = running_pid(cfg)
    if pid is not None:
        with contextlib.suppress(log.FatalError):
            log.fatal("the Postel mail system is already running")
        return 1
    if not _prepare(cfg):
        return 1
    _warn_unreachable(cfg)
    _say("starting the Postel mail system")
    r, w = os.pipe()
    cmd = [sys.executable, "-m", "postel.master", "-c", cfg.config_directory, "-w", str(w)]
    cmd += [a for a in argv if a == "-v"]
    env = dict(os.environ, MAIL_CONFIG=cfg.config_directory)
    try:
        proc = subprocess.Popen(cmd, pass_fds=(w,), start_new_session=True, cwd="/", env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, close_fds=True)
    except OSError as exc:
        os.close(r)
        os.close(w)
        with contextlib.suppress(log.FatalError):
            log.fatal("cannot run master: %s", exc.strerror)
        return 1
    os.close(w)
    answer = _read_answer(r, START_TIMEOUT)
    if answer == "ok":
        return 0
    # A master that refused to start is on its way out: return only when it
    # has gone, so that a failed start leaves no process behind.
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with contextlib.suppress(log.FatalError):
        log.fatal("%s", answer.removeprefix("error: ") or "master did not start")
    return 1


def _read_answer(fd: int, timeout: float) -> str:
    """_read_answer - master's first line on the ready pipe ("" on EOF)."""
    import select
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                return "error: timed out waiting for master"
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace").split("\n", 1)[0].strip()


def start_fg_main(argv: list[str], config_dir: str | None) -> int:
    """start_fg_main - run master in the foreground."""
    cfg = _load(config_dir, validate=True)
    if cfg is None:
        return 1
    _init_log(cfg)
    if not _prepare(cfg):
        return 1
    from postel.master.master import run_master
    verbose = sum(1 for a in argv if a == "-v")
    return run_master(cfg.config_directory, foreground=True, verbose=verbose)


def _signal_master(config_dir: str | None, sig: int, what: str) -> tuple[int, object]:
    """_signal_master - signal a running master; (status, (cfg, pid)) or (status, cfg) on error."""
    cfg = _load(config_dir)
    if cfg is None:
        return 1, None
    _init_log(cfg)
    pid = running_pid(cfg)
    if pid is None or pid <= 0:
        with contextlib.suppress(log.FatalError):
            log.fatal("the Postel mail system is not running")
        return 1, cfg
    _say(what)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return 1, cfg
    except PermissionError:
        with contextlib.suppress(log.FatalError):
            log.fatal("cannot signal master pid %d: permission denied", pid)
        return 1, cfg
    return 0, (cfg, pid)


def stop_main(argv: list[str], config_dir: str | None) -> int:
    """stop_main - graceful stop; waits until master has gone."""
    rc, got = _signal_master(config_dir, signal.SIGTERM, "stopping the Postel mail system")
    if rc:
        return rc
    cfg, pid = got
    if not _wait_gone(cfg, STOP_TIMEOUT, pid):
        log.warning("master did not stop within %d seconds", int(STOP_TIMEOUT))
        return 1
    return 0


def abort_main(argv: list[str], config_dir: str | None) -> int:
    """abort_main - immediate stop."""
    rc, got = _signal_master(config_dir, signal.SIGINT, "aborting the Postel mail system")
    if rc:
        return rc
    cfg, pid = got
    return 0 if _wait_gone(cfg, 15.0, pid) else 1


def reload_main(argv: list[str], config_dir: str | None) -> int:
    """reload_main - tell master to re-read its configuration."""
    cfg = _load(config_dir)
    if cfg is None:
        return 1   # Postfix, too, refuses to reload a configuration that does not parse
    rc, _cfg = _signal_master(config_dir, signal.SIGHUP, "refreshing the Postel mail system")
    return rc


def status_main(argv: list[str], config_dir: str | None) -> int:
    """status_main - is master running?"""
    cfg = _load(config_dir)
    if cfg is None:
        return 1
    _init_log(cfg)
    pid = running_pid(cfg)
    if pid is None:
        _say("the Postel mail system is not running")
        return 1
    _say(f"the Postel mail system is running: PID: {pid}")
    return 0


# -- check / set-permissions

def check_main(argv: list[str], config_dir: str | None) -> int:
    """check_main - report configuration and file-system problems."""
    cfg = _load(config_dir, validate=True)
    if cfg is None:
        return 1
    _init_log(cfg)
    rc = 0
    for name in ("config_directory", "queue_directory"):
        path = cfg.get(name)
        if not os.path.isdir(path):
            log.warning("missing directory: %s (%s)", path, name)
            rc = 1
    for fname in ("main.cf", "master.cf"):
        path = os.path.join(cfg.config_directory, fname)
        try:
            st = os.stat(path)
        except OSError:
            if fname == "master.cf":
                log.warning("missing file: %s", path)
                rc = 1
            continue
        if st.st_mode & 0o022:
            log.warning("group or other writable: %s", path)
    data = cfg.get("data_directory")
    if data and not os.path.isdir(data):
        log.warning("missing directory: %s (data_directory)", data)
        rc = 1
    if os.path.isdir(cfg.get("queue_directory")):
        for problem in make_queue_dirs(cfg.get("queue_directory"), cfg.get("mail_owner"),
                                       cfg.get("setgid_group"), create=False, fix=False):
            log.warning("%s", problem)
            if problem.startswith("missing"):
                rc = 1
    owner = cfg.get("mail_owner")
    for problem in fix_owned_dirs(_owned_dirs(cfg), owner, create=False, fix=False):
        if not problem.startswith("missing"):
            log.warning("%s", problem)
    if _privileged(owner) is None and os.geteuid() == 0 and owner != "root":
        log.warning("unknown mail_owner user: %s", owner)
    if _privileged(owner) is not None:
        if _gid(cfg.get("setgid_group")) is None:
            log.warning("unknown setgid_group group: %s", cfg.get("setgid_group"))
        for path in unsearchable_parents(cfg.get("queue_directory"), owner):
            log.warning("%s: not searchable by %s (mail_owner): chmod o+x", path, owner)
        for path in unreachable_code(owner):
            log.warning("%s: not searchable by %s (mail_owner), who must import Python and "
                        "Postel modules below it: postel set-permissions adds o+x", path, owner)
        for problem in postdrop_problems(cfg):
            log.warning("%s", problem)
        _warn_python()
        for fname in ("main.cf", "master.cf"):
            path = os.path.join(cfg.config_directory, fname)
            with contextlib.suppress(OSError):
                if os.stat(path).st_uid != 0:
                    log.warning("not owned by root: %s", path)
    return rc


def set_permissions_main(argv: list[str], config_dir: str | None) -> int:
    """set_permissions_main - create queue directories and fix owner and mode."""
    cfg = _load(config_dir)
    if cfg is None:
        return 1
    _init_log(cfg)
    owner, group = cfg.get("mail_owner"), cfg.get("setgid_group")
    queue_dir = cfg.get("queue_directory")
    ids = _privileged(owner)
    try:
        make_queue_dirs(queue_dir, owner, group, create=True)
        fix_owned_dirs(_owned_dirs(cfg), owner, create=True)
        if ids is not None:
            for name, (_mode, who, _g) in QUEUE_DIRS.items():
                if who != "root":
                    _chown_tree(os.path.join(queue_dir, name), ids[0], -1)
            for path in _owned_dirs(cfg):
                _chown_tree(path, ids[0], ids[1])
    except OSError as exc:
        with contextlib.suppress(log.FatalError):
            log.fatal("%s: %s", exc.filename or queue_dir, exc.strerror)
        return 1
    if ids is None:
        return 0
    try:
        for line in grant_code_search(owner):
            _say(line)
    except OSError as exc:
        log.warning("%s: %s", exc.filename, exc.strerror)
    for path in unsearchable_parents(queue_dir, owner):
        log.warning("%s: not searchable by %s (mail_owner): chmod o+x", path, owner)
    from postel.commands.postdrop import wrapper_path
    wrapper = wrapper_path(cfg)
    for problem in _build_postdrop(os.path.dirname(wrapper), cfg.config_directory, group):
        log.warning("%s", problem)
        return 1
    _say(f"set-group-ID {group} postdrop: {wrapper}")
    _warn_python()
    return 0


def _warn_python() -> None:
    """_warn_python - say so when local users cannot run Postel's Python at all."""
    from postel.commands.postdrop import python_usable_by_others
    blocker = python_usable_by_others()
    if blocker:
        log.warning("%s is not searchable/executable by other users: local users cannot run "
                    "sendmail with %s", blocker, sys.executable)
