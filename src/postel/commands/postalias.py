"""postalias - Postel alias database maintenance

SYNOPSIS
    postel alias [-Nfinoprsvw] [-c config_dir] [-d key] [-q key]
                 [file_type:]file_name ...
    newaliases

DESCRIPTION
    Creates, queries or updates alias databases, as postalias(1).  The
    source is in aliases(5) format:

        name: value, value, ...

    where a logical line may go on over lines that start with whitespace,
    the name may be quoted ("x y": ...), and the values are stored as one
    comma-separated list.  The name is folded to lower case (unless -f).
    Like Postfix, each database also gets the entry "@" -> "@", which
    Sendmail-compatible readers take as "the database is complete".

    The options are those of "postel map" (see postmap(1) / docs/postmap.md);
    -s and "-q -" print "name:<TAB>value".  With -I (how newaliases calls
    it) and no file names, the tables named by $alias_database are rebuilt.

CONFIGURATION PARAMETERS
    alias_database (lmdb:$config_directory/aliases)   tables rebuilt by newaliases
    default_database_type (lmdb)   type used when file_type is omitted
"""

from __future__ import annotations

from postel.commands import postmap
from postel.tables.source import parse_aliases


def main(argv: list[str], config_dir: str | None) -> int:
    """main - postel alias (and newaliases, which passes -I)."""
    return postmap.run("postalias", argv, config_dir, parse_aliases, key_suffix=":",
                       extra_entries=[("@", "@")])
