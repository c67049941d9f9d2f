"""postdrop - Postel mail posting utility

SYNOPSIS
    postel [-c config_dir] drop [-v]
    sendmail ... (uses write_maildrop() or runs `postel drop`)

DESCRIPTION
    postdrop puts one message into the maildrop queue and wakes up
    pickup(8).  It reads a complete queue file (the format of
    docs/queue.md, as sendmail(1) writes it) on standard input, checks that
    it is well-formed and complete (size record final, file size, record
    grammar, envelope and content checksums), and only then makes it
    visible:

        maildrop/QID.tmp   created with O_EXCL, written, fsync'ed, checked
        maildrop/QID       rename(2), then fsync of the maildrop directory

    A truncated, damaged or oversized stream leaves nothing behind and
    makes postdrop exit with a non-zero status.  pickup(8) never sees a
    partial file: it ignores names with a dot.

    Installed as root, postdrop is the only privileged submission path: the
    maildrop directory is mode 1730, owned by mail_owner, group
    setgid_group.  A Python program cannot be set-group-ID, so `postel
    set-permissions` (and `postel init` as root) compiles a small C front
    end, $daemon_directory/postdrop, mode 2755 root:$setgid_group.  When
    `postel drop` finds that it cannot write the maildrop queue, it execs
    that front end, which ignores its arguments and environment, closes
    every descriptor above 2, and runs this module with the venv's Python
    in isolated mode (-I), with the package directory first on sys.path,
    on the configuration directory compiled into it:

        $daemon_directory/postdrop  ->  python -I -c "...setgid_main..."
                                            --setgid CONFIG_DIR

    A file written by postdrop belongs to the submitting user, which is how
    pickup(8) learns the user's uid.  Run as an ordinary user (an instance
    made by `postel init`), the queue belongs to that user and sendmail(1)
    writes maildrop files itself, through the same write_maildrop()
    function.  See docs/security.md.

    Library use (sendmail):

        write_maildrop(qd, envelope, chunks, size_limit) -> qid
        check_maildrop_file(path, size_limit)    # DropError when bad
        wake_pickup(queue_directory) -> bool

SECURITY
    postdrop trusts nothing in its input: the stream is checked as a whole
    by the queue file reader, and pickup(8) passes on only the envelope
    attributes that a local user may set.

DIAGNOSTICS
    "postdrop: fatal: ..." on standard error and in the mail log, with
    exit status 65 (EX_DATAERR) for malformed input, 75 (EX_TEMPFAIL) for
    a queue that cannot be written, 64 (EX_USAGE) for bad usage.  A pickup
    service that does not listen is reported as a warning; the message is
    safe in the maildrop queue and pickup finds it on its next wakeup.

CONFIGURATION PARAMETERS
    queue_directory                 where the maildrop queue is
    message_size_limit (10240000)   largest message content, in bytes
    setgid_group (postdrop)         group of the maildrop directory
    daemon_directory                where the set-group-ID front end is
"""

from __future__ import annotations

import contextlib
import grp
import os
import signal
import stat
import sys
from collections.abc import Iterable

from postel.commands._qadmin import (
    EX_TEMPFAIL,
    EX_USAGE,
    Fatal,
    fatal,
    load,
    maillog_writable,
    queue_dir,
    warn,
)
from postel.queue import Envelope, QueueDir, QueueFileCorrupt, QueueFileReader, QueueFileWriter
from postel.queue.file import fsync_dir
from postel.queue.qid import new_qid

TYPE_CHECKING = False      # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import BinaryIO

PROG = "postdrop"
EX_DATAERR = 65
USAGE = "usage: postel drop [-v] < queue-file-stream"
MAILDROP = "maildrop"
PICKUP_ENDPOINT = "public/pickup"
READ_CHUNK = 64 * 1024
# Envelope, extracted segment and record framing on top of the content.
STREAM_OVERHEAD = 16 * 1024 * 1024
# Maildrop files are world-readable as Postfix's (0444): pickup(8) runs as
# mail_owner, who is not in the submitter's group; maildrop/ itself (1730)
# keeps everyone else out.
MAILDROP_MODE = 0o644
WRAPPER_MODE = 0o2755
SETGID_FLAG = "--setgid"


class DropError(Exception):
    """DropError - the message could not be dropped: message and exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def check_maildrop_file(path: str, size_limit: int = 0) -> QueueFileReader:
    """check_maildrop_file - read a whole maildrop file once; DropError when bad."""
    try:
        reader = QueueFileReader(path, writable=False)
    except QueueFileCorrupt as exc:
        raise DropError(f"malformed input: offset {exc.offset}: {exc.reason}",
                        EX_DATAERR) from None
    except OSError as exc:
        raise DropError(f"{path}: {exc.strerror}", EX_TEMPFAIL) from None
    try:
        for _line in reader.iter_lines():
            pass
    except QueueFileCorrupt as exc:
        reader.close()
        raise DropError(f"malformed input: offset {exc.offset}: {exc.reason}",
                        EX_DATAERR) from None
    if size_limit and reader.message_size > size_limit:
        reader.close()
        raise DropError(f"message file too big ({reader.message_size} > {size_limit} bytes)",
                        EX_DATAERR)
    return reader


def _publish(qd: QueueDir, qid: str, temp_path: str) -> str:
    """_publish - fsync'ed temp file to its final name, then fsync the directory."""
    path = qd.path(MAILDROP, qid)
    os.rename(temp_path, path)
    try:
        fsync_dir(os.path.dirname(path))
    except PermissionError:
        # set-group-ID postdrop may write but not read maildrop/ (1730), so
        # it cannot open the directory to fsync it: flush everything instead.
        os.sync()
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path


def drop_stream(qd: QueueDir, stream: BinaryIO, size_limit: int = 0) -> str:
    """drop_stream - copy a queue-file stream into maildrop/; returns the queue ID."""
    qid = new_qid()
    temp_path = qd.path(MAILDROP, qid) + ".tmp"
    limit = size_limit + STREAM_OVERHEAD if size_limit else 0
    try:
        fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise DropError(f"create file {MAILDROP}/{qid}: {exc.strerror}", EX_TEMPFAIL) from None
    published = False
    try:
        total = 0
        try:
            while True:
                chunk = stream.read(READ_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if limit and total > limit:
                    raise DropError("message file too big", EX_DATAERR)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            os.fchmod(fd, MAILDROP_MODE)
            os.fsync(fd)
        except OSError as exc:
            raise DropError(f"{MAILDROP}/{qid}: write: {exc.strerror}", EX_TEMPFAIL) from None
        finally:
            os.close(fd)
        if total == 0:
            raise DropError("malformed input: empty input", EX_DATAERR)
        check_maildrop_file(temp_path, size_limit).close()
        try:
            _publish(qd, qid, temp_path)
        except OSError as exc:
            raise DropError(f"{MAILDROP}/{qid}: {exc.strerror}", EX_TEMPFAIL) from None
        published = True
        return qid
    finally:
        if not published:
            with contextlib.suppress(OSError):
                os.unlink(temp_path)


def write_maildrop(qd: QueueDir, env: Envelope, chunks: Iterable[bytes],
                   size_limit: int = 0) -> str:
    """write_maildrop - write one maildrop file directly; returns the queue ID."""
    try:
        writer = QueueFileWriter(qd, MAILDROP)
    except OSError as exc:
        raise DropError(f"create file {MAILDROP}: {exc.strerror}", EX_TEMPFAIL) from None
    try:
        with writer:
            write_queue_stream(writer, env, chunks, size_limit)
            os.chmod(writer.temp_path, MAILDROP_MODE)
            writer.commit_sync()
    except OSError as exc:
        raise DropError(f"{MAILDROP}/{writer.qid}: {exc.strerror}", EX_TEMPFAIL) from None
    return writer.qid


def write_queue_stream(writer: QueueFileWriter, env: Envelope, chunks: Iterable[bytes],
                       size_limit: int = 0) -> None:
    """write_queue_stream - envelope and content into an open writer (DropError: too big)."""
    writer.write_envelope(env)
    for chunk in chunks:
        writer.write_content(chunk)
        if size_limit and writer.message_size > size_limit:
            raise DropError("message file too big", EX_DATAERR)
    writer.finish()


def wake_pickup(queue_directory: str) -> bool:
    """wake_pickup - send pickup a wakeup trigger; False when it does not listen."""
    from postel.ipc.trigger import TRIGGER_WAKEUP, send_trigger
    return send_trigger(queue_directory, PICKUP_ENDPOINT, TRIGGER_WAKEUP)


def _parse(argv: list[str]) -> None:
    """_parse - postdrop takes only -v (and -c, handled by the dispatcher); -r is accepted."""
    for arg in argv:
        if arg in ("-v", "-r"):
            continue
        raise Fatal(f"invalid option: {arg}\n{USAGE}", EX_USAGE)


def main(argv: list[str], config_dir: str | None) -> int:
    """main - postel drop: stdin to maildrop/, then wake up pickup."""
    try:
        _parse(argv)
        cfg = _load(config_dir)
        qd = queue_dir(cfg)
        maildrop = os.path.join(qd.queue_directory, MAILDROP)
        if not os.access(maildrop, os.W_OK | os.X_OK):
            _exec_wrapper(cfg)              # returns only when there is none
        return _drop(cfg, qd)
    except Fatal as exc:
        return fatal(PROG, exc)


def _load(config_dir: str | None):
    """_load - main.cf; log to maillog_file only when this user may write it."""
    cfg = load(PROG, config_dir) if _maillog_writable(config_dir) else _load_quiet(config_dir)
    return cfg


def _maillog_writable(config_dir: str | None) -> bool:
    """_maillog_writable - may this (real) user append to $maillog_file?"""
    from postel.config import ConfigError, load_config
    try:
        path = load_config(config_dir).get("maillog_file")
    except (ConfigError, KeyError, ValueError):
        return True                         # load() reports the error
    return maillog_writable(path)


def _load_quiet(config_dir: str | None):
    """_load_quiet - main.cf without the mail log: errors go to stderr only."""
    from postel import log
    from postel.config import ConfigError, load_config
    try:
        cfg = load_config(config_dir)
        log.init(PROG, syslog_name=cfg.get("syslog_name"), use_syslog=False)
    except (ConfigError, KeyError, ValueError) as exc:
        raise Fatal(str(exc), 1) from None
    return cfg


def _drop(cfg, qd: QueueDir) -> int:
    """_drop - stdin into maildrop/, then wake pickup; the exit status."""
    size_limit = cfg.get_size("message_size_limit")
    try:
        qid = drop_stream(qd, sys.stdin.buffer, size_limit)
    except DropError as exc:
        raise Fatal(f"uid={os.getuid()}: {exc.message}", exc.status) from None
    if not wake_pickup(qd.queue_directory):
        warn(PROG, f"unable to look up {PICKUP_ENDPOINT}: pickup is not running; "
                   f"{qid} waits in the maildrop queue")
    return 0


# -- the set-group-ID path

class WrapperError(Exception):
    """The setgid front end cannot be built safely; str() says why."""


def wrapper_path(cfg) -> str:
    """wrapper_path - $daemon_directory/postdrop."""
    return os.path.join(cfg.get("daemon_directory"), "postdrop")


def _exec_wrapper(cfg) -> None:
    """_exec_wrapper - become the setgid front end; returns when there is none."""
    path = wrapper_path(cfg)
    gid = _group_id(cfg.get("setgid_group"))
    try:
        st = os.stat(path)
    except OSError:
        return
    if st.st_uid != 0 or not st.st_mode & stat.S_ISGID or st.st_gid != gid:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(path, [path])
    except OSError as exc:
        raise Fatal(f"cannot run {path}: {exc.strerror}", EX_TEMPFAIL) from None


def _group_id(name: str) -> int | None:
    """_group_id - numeric id of a group, None when unknown."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def setgid_main(args: list[str]) -> int:
    """setgid_main - run by the front end: drop stdin for the invoking user."""
    if len(args) != 2 or args[0] != SETGID_FLAG or not os.path.isabs(args[1]):
        print(f"{PROG}: fatal: {USAGE}", file=sys.stderr)
        return EX_USAGE
    # Postfix's postdrop removes the file on HUP, INT, QUIT and TERM.
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM):
        signal.signal(sig, _interrupted)
    try:
        cfg = _load_quiet(args[1])
        gid = _group_id(cfg.get("setgid_group"))
        if os.getegid() != gid and os.geteuid() != 0:
            raise Fatal(f"not running set-group-ID {cfg.get('setgid_group')}", EX_USAGE)
        return _drop(cfg, queue_dir(cfg))
    except Fatal as exc:
        return fatal(PROG, exc)


def _interrupted(signo: int, _frame) -> None:
    """_interrupted - unwind (drop_stream removes its temporary file)."""
    raise SystemExit(EX_TEMPFAIL)


def _c_bytes(text: str) -> str:
    """_c_bytes - a C char-array initializer for text: no quoting to get wrong."""
    return "{" + ", ".join(str(b) for b in os.fsencode(text)) + ", 0}"


WRAPPER_C = """\
/* postdrop - set-group-ID front end of Postel's postdrop (generated by
 * postel set-permissions; see postel.commands.postdrop and docs/security.md).
 * Arguments and environment are ignored; the interpreter, the code it runs
 * and the configuration directory are fixed here. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static const char python[] = %(python)s;
static const char code[] = %(code)s;
static const char config_dir[] = %(config_dir)s;

int main(void)
{
    int fd;
    long max;

    /* descriptors 0-2 must be open, so that no file we open becomes one */
    for (fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
            _exit(75);
    max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (fd = 3; fd < max; fd++)
        (void) close(fd);
    umask(022);
    {
        char *const args[] = {(char *) python, "-I", "-c", (char *) code,
                              "%(flag)s", (char *) config_dir, 0};
        char *const env[] = {"PATH=/usr/bin:/bin", "LC_ALL=C.UTF-8", 0};
        execve(python, args, env);
    }
    _exit(75);          /* EX_TEMPFAIL */
}
"""

# What the interpreter runs (python -I: no PYTHON* variables, no user site,
# no script directory on sys.path); the package location comes first.
WRAPPER_CODE = ("import sys; sys.path.insert(0, {path!r}); "
                "from postel.commands.postdrop import setgid_main; "
                "sys.exit(setgid_main(sys.argv[1:]))")


def _unsafe_paths(paths: list[str]) -> list[str]:
    """_unsafe_paths - paths (and their parents) writable by someone other than root.

    A sticky world-writable parent such as /tmp is safe: other users may add
    entries there but cannot rename or remove the root-owned one on our path.
    """
    bad: list[str] = []
    seen: set[str] = set()
    for top in paths:
        here = os.path.abspath(top)
        child_is_root_owned = False
        while here not in seen:
            seen.add(here)
            try:
                st = os.stat(here)
            except OSError:
                bad.append(here)
                break
            sticky_parent = bool(st.st_mode & stat.S_ISVTX) and child_is_root_owned
            if st.st_uid != 0 or (st.st_mode & 0o022 and not sticky_parent):
                bad.append(here)
            child_is_root_owned = st.st_uid == 0
            parent = os.path.dirname(here)
            if parent == here:
                break
            here = parent
    return bad


def package_parent() -> str:
    """package_parent - the directory that holds the postel package."""
    import postel
    return os.path.dirname(os.path.dirname(os.path.abspath(postel.__file__)))


def _trusted_code(python: str, parent: str) -> list[str]:
    """_trusted_code - what the setgid front end will run: interpreter and package."""
    import sysconfig
    package = os.path.join(parent, "postel")
    paths = [python, os.path.realpath(python), parent, package]
    if python == sys.executable:
        paths.append(sysconfig.get_paths()["purelib"])
    for base, dirs, files in os.walk(package):
        paths += [os.path.join(base, d) for d in dirs if d != "__pycache__"]
        paths += [os.path.join(base, f) for f in files if f.endswith(".py")]
    return paths


def build_setgid_wrapper(path: str, config_dir: str, group: str,
                         python: str | None = None) -> None:
    """build_setgid_wrapper - compile the front end at path, root:group mode 2755."""
    import subprocess
    import tempfile
    if os.geteuid() != 0:
        raise WrapperError("only root can install a set-group-ID postdrop")
    gid = _group_id(group)
    if gid is None:
        raise WrapperError(f"unknown setgid_group: {group}")
    python = python or sys.executable
    if not os.path.isabs(python) or not os.path.isabs(config_dir):
        raise WrapperError("python and config_directory must be absolute paths")
    parent = package_parent()
    unsafe = _unsafe_paths(_trusted_code(python, parent))
    if unsafe:
        raise WrapperError(f"refusing a set-group-ID postdrop: {unsafe[0]} is writable by "
                           f"a user other than root")
    cc = next((c for c in ("/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/clang")
               if os.access(c, os.X_OK)), "")
    if not cc:
        raise WrapperError("no C compiler (cc) to build the set-group-ID postdrop")
    source = WRAPPER_C % {"python": _c_bytes(python), "config_dir": _c_bytes(config_dir),
                          "code": _c_bytes(WRAPPER_CODE.format(path=parent)),
                          "flag": SETGID_FLAG}
    target_dir = os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryDirectory(prefix="postdrop.") as tmp:
        src = os.path.join(tmp, "postdrop.c")
        with open(src, "w") as f:
            f.write(source)
        binary = os.path.join(tmp, "postdrop")
        try:
            cp = subprocess.run([cc, "-O2", "-Wall", "-o", binary, src], capture_output=True,
                                text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WrapperError(f"{cc}: {exc}") from None
        if cp.returncode != 0:
            raise WrapperError(f"{cc} failed: {cp.stderr.strip()[:500]}")
        fd, temp = tempfile.mkstemp(prefix=".postdrop.", dir=target_dir)
        try:
            with open(binary, "rb") as src_f, os.fdopen(fd, "wb") as out:
                out.write(src_f.read())
            os.chown(temp, 0, gid)
            os.chmod(temp, WRAPPER_MODE)      # after chown: chown clears set-group-ID
            os.rename(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise


def python_usable_by_others(python: str | None = None) -> str:
    """python_usable_by_others - "" or the first path that stops other users running python."""
    here = os.path.realpath(python or sys.executable)
    st = os.stat(here)
    if not st.st_mode & stat.S_IXOTH:
        return here
    while True:
        parent = os.path.dirname(here)
        if parent == here:
            return ""
        here = parent
        if not os.stat(here).st_mode & stat.S_IXOTH:
            return here


if __name__ == "__main__":
    sys.exit(setgid_main(sys.argv[1:]))
