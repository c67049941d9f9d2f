"""unix - unix:passwd.byname and unix:group.byname tables

SYNOPSIS
    local_recipient_maps = proxy:unix:passwd.byname $alias_maps

    open_table("unix:passwd.byname").lookup("root")
        -> "root:x:0:0:root:/root:/bin/bash"

DESCRIPTION
    The system's user and group databases as lookup tables, as Postfix's
    dict_unix: whatever the name service switch (files, LDAP, ...) answers
    through getpwnam(3) and getgrnam(3).

    unix:passwd.byname  the key is a login name; the result is the
                        passwd(5) line: name:passwd:uid:gid:gecos:dir:shell
    unix:group.byname   the key is a group name; the result is the group(5)
                        line: name:passwd:gid:member,member,...

    Keys are fixed strings: folded to lower case unless the table is opened
    without LookupFlags.FOLD_FIX (postmap -f).  Any other name is a
    configuration error ("unknown table: unix:NAME").  The tables cannot be
    updated and have no sequential access.
"""

from __future__ import annotations

import grp
import pwd

from postel.tables import LookupFlags, Table, TableError


def passwd_line(key: str) -> str | None:
    """passwd_line - the passwd(5) line of user key, or None."""
    try:
        pw = pwd.getpwnam(key)
    except (KeyError, ValueError, OverflowError):
        return None
    return (f"{pw.pw_name}:{pw.pw_passwd}:{pw.pw_uid}:{pw.pw_gid}:"
            f"{pw.pw_gecos}:{pw.pw_dir}:{pw.pw_shell}")


def group_line(key: str) -> str | None:
    """group_line - the group(5) line of group key, or None."""
    try:
        gr = grp.getgrnam(key)
    except (KeyError, ValueError, OverflowError):
        return None
    return f"{gr.gr_name}:{gr.gr_passwd}:{gr.gr_gid}:{','.join(gr.gr_mem)}"


_MAPS = {"passwd.byname": passwd_line, "group.byname": group_line}


class UnixTable(Table):
    """UnixTable - getpwnam()/getgrnam() as a table."""

    type_name = "unix"

    def __init__(self, name: str, flags: LookupFlags = LookupFlags.FOLD_FIX) -> None:
        super().__init__(name, flags)
        try:
            self._get = _MAPS[name]
        except KeyError:
            raise TableError(f"unknown table: unix:{name}") from None

    def get(self, key: str) -> str | None:
        """get - the database line for key."""
        if not key or "\0" in key:
            return None
        return self._get(key)


def register(register_type) -> None:
    """register - unix:."""
    register_type("unix", UnixTable)
