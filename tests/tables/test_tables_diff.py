"""Differential tests: Postel's tables answer exactly as Postfix's postmap -q."""

from __future__ import annotations

import ipaddress
import os
import sqlite3
import subprocess

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from tables_helpers import pf_config, postel_query, postfix_query

from peerlib import require_peer
from postel.commands import postmap as postel_postmap

SETTINGS = settings(max_examples=40, deadline=None, phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

REGEXP_TABLE = r"""
# comment
/^(postmaster|abuse)@/          OK $1
/^([^@]+)\+([^@]*)@(.*)$/       ext=${2} user=$(1) dom=$3 $$
/^User@Example\.COM$/i          case-insensitive-off
/^[[:digit:]]{3,}$/             digits
/^[[:alpha:]]+[.][[:alnum:]_-]+$/   dotted
if /@example\.org$/
/^a/                            a-at-example.org
if !/^b/
/x/                             x-not-b
endif
/./                             any-example.org
endif
!/@/                            no-at
/\[/                            bracket
/(a)|(b)/                       alt=$1,$2
/multi/
  line result
  continued
/^$/                            empty
"""

PCRE_TABLE = r"""
/^(?!owner-)(.*)-outgoing@(.*)/ 550 Use ${1}@${2} instead
/^(?<local>[a-z]+)@/            named=$1
/\d{2,}\z/                      digits-at-end
/CASE/                          nocase
/Sensitive/i                    sensitive
/^a.*b$/                        ab
/(a+?)(a*)z/                    lazy=$1:$2
/(a+?)(a*)y/U                   ungreedy=$1:$2
/^[[:upper:]]+$/i               upper-only
/x y/x                          extended
if !/^no/
/o/                             has-o
endif
"""

CIDR_TABLE = """
192.168.1.1         host1
192.168.0.0/16      net192
[10.0.0.0]/8        ten
!172.16.0.0/12      not172-v4only
if 2001:db8::/32
2001:db8:0:1::/64   sub64
2001:DB8::1         v6host
endif
::ffff:1.2.3.4      mapped
::/0                anyv6
0.0.0.0/0           anyv4
1.2.3.4/24          badbits
1.2.3.0/33          badmask
"""

ADDRESSES = st.lists(
    st.one_of(
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(str),
        st.sampled_from(["192.168.1.1", "192.168.200.7", "10.1.2.3", "172.16.0.1", "172.31.9.9",
                         "2001:db8::1", "2001:0db8:0000::0001", "2001:db8:0:1::5", "::ffff:1.2.3.4",
                         "1.2.3.4", "::", "::1", "0.0.0.0", "255.255.255.255", "bogus", "1.2.3",
                         "2001:db8:0:2::1"]),
        st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))),
    min_size=1, max_size=40)

TEXT_KEYS = st.lists(
    st.one_of(
        st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20),
        st.sampled_from(["postmaster@x", "Abuse@Example.net", "joe+list@example.com",
                         "User@Example.COM", "user@example.com", "12345", "ab", "abc.d_e",
                         "apple@example.org", "box@example.org", "bx@example.org", "cx@example.org",
                         "a[b", "multi", "owner-list-outgoing@x", "list-outgoing@host",
                         "aaaz", "aaay", "ABC", "Sensitive", "sensitive", "x y", "xy",
                         "none", "no-o", "joe+@x", "@", "a", "b"])),
    min_size=1, max_size=40)


def _write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    os.utime(path, (1_000_000_000, 1_000_000_000))  # Postfix waits on files < 1s old
    return str(path)


def _assert_same(postmap: str, spec: str, keys: list[str]) -> None:
    keys = list(dict.fromkeys(k for k in keys if k.strip() == k and "\n" not in k))
    theirs = postfix_query(postmap, spec, keys)
    ours = postel_query(spec, keys)
    assert ours == theirs


@SETTINGS
@given(keys=TEXT_KEYS)
def test_tables_regexp_matches_postfix(tmp_path_factory, keys):
    postmap = require_peer("postmap")
    path = _write(tmp_path_factory.mktemp("re"), "regexp", REGEXP_TABLE)
    _assert_same(postmap, f"regexp:{path}", keys)


@SETTINGS
@given(keys=TEXT_KEYS)
def test_tables_pcre_matches_postfix(tmp_path_factory, keys):
    postmap = require_peer("postmap")
    path = _write(tmp_path_factory.mktemp("pcre"), "pcre", PCRE_TABLE)
    _assert_same(postmap, f"pcre:{path}", keys)


@SETTINGS
@given(keys=ADDRESSES)
def test_tables_cidr_matches_postfix(tmp_path_factory, keys):
    postmap = require_peer("postmap")
    path = _write(tmp_path_factory.mktemp("cidr"), "cidr", CIDR_TABLE)
    _assert_same(postmap, f"cidr:{path}", keys)


def test_tables_cidr_edge_cases(tmp_path):
    postmap = require_peer("postmap")
    path = _write(tmp_path, "cidr", "::/128 zero\n1.2.3.4/32 exact\n2001:db8::/127 pair\n"
                  "0.0.0.0/0 all\n")
    keys = ["::", "::0", "1.2.3.4", "1.2.3.5", "2001:db8::", "2001:db8::1", "2001:db8::2",
            "::ffff:1.2.3.4", "[1.2.3.4]", "01.2.3.4"]
    _assert_same(postmap, f"cidr:{path}", keys)


SOURCE = """\
Foo bar
baz  qux quux
  cont line
# comment
User@Example.COM val
"a b"@x.com  quoted value
foo dup
k3 v3 # not a comment
unicodé wert
"""


@SETTINGS
@given(keys=TEXT_KEYS)
def test_tables_texthash_inline_static_match_postfix(tmp_path_factory, keys):
    postmap = require_peer("postmap")
    path = _write(tmp_path_factory.mktemp("th"), "src", SOURCE)
    keys = keys + ["foo", "FOO", "baz", "user@example.com", '"a b"@x.com', "k3"]
    _assert_same(postmap, f"texthash:{path}", keys)
    _assert_same(postmap, "inline:{Foo=1, {a = c d}, abc=x=y, abc=last}", keys + ["a"])
    _assert_same(postmap, "static:{ some value }", keys[:3])
    _assert_same(postmap, "unionmap:{inline:{foo=1}, static:2}", keys[:3] + ["foo"])
    _assert_same(postmap, "pipemap:{inline:{foo=bar}, inline:{bar=baz}}", keys + ["foo"])


def test_tables_lmdb_built_by_both_tools(tmp_path):
    postmap = require_peer("postmap")
    ours = _write(tmp_path, "ours", SOURCE)
    theirs = _write(tmp_path, "theirs", SOURCE)
    assert postel_postmap.main([f"lmdb:{ours}"], None) == 0
    subprocess.run([postmap, "-c", pf_config(), f"lmdb:{theirs}"], check=True,
                   capture_output=True)
    keys = ["foo", "FOO", "baz", "user@example.com", '"a b"@x.com', "k3", "unicodé", "none"]
    expected = postfix_query(postmap, f"lmdb:{theirs}", keys)
    assert expected["foo"] == "bar"
    # Postfix reads Postel's file, Postel reads Postfix's, both agree.
    assert postfix_query(postmap, f"lmdb:{ours}", keys) == expected
    assert postel_query(f"lmdb:{theirs}", keys) == expected
    assert postel_query(f"lmdb:{ours}", keys) == expected
    dump_pf = subprocess.run([postmap, "-c", pf_config(), "-s", f"lmdb:{ours}"],
                             capture_output=True, check=True).stdout.decode()
    assert sorted(dump_pf.splitlines()) == sorted(f"{k}\t{v}" for k, v in expected.items()
                                                  if k == k.lower())


def test_tables_sqlite_matches_postfix(tmp_path):
    postmap = require_peer("postmap")
    db = tmp_path / "db.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE aliases (mailbox TEXT, target TEXT, dom TEXT)")
    conn.executemany("INSERT INTO aliases VALUES (?, ?, ?)", [
        ("joe@example.com", "joe@home.net", "example.com"),
        ("o'hara@example.com", "quoted@x", "example.com"),
        ("list@example.com", "a@x", "example.com"),
        ("list@example.com", "b@x", "example.com"),
        ("mail.example.com", "relay", "mail.example.com"),
        ("bob", "bob-local", ""),
    ])
    conn.commit()
    conn.close()
    keys = ["joe@example.com", "JOE@Example.com", "o'hara@example.com", "list@example.com",
            "bob", "nobody@example.com", "user@mail.example.com", "'; DROP TABLE aliases; --",
            "@example.com", "x@com"]
    configs = {
        "plain": "query = SELECT target FROM aliases WHERE mailbox = '%s'\n",
        "format": "query = SELECT target FROM aliases WHERE mailbox = '%s'\n"
                  "result_format = smtp:[%s] %u %d %U\n",
        "parts": "query = SELECT target FROM aliases WHERE mailbox = '%u@%d' OR mailbox = '%3.%2.%1'\n",
        "domain": "query = SELECT target FROM aliases WHERE mailbox = '%s'\ndomain = example.com\n",
        "limit": "query = SELECT target FROM aliases WHERE mailbox = '%s'\nexpansion_limit = 5\n",
        "legacy": "table = aliases\nselect_field = target\nwhere_field = mailbox\n",
    }
    for name, text in configs.items():
        cf = _write(tmp_path, f"{name}.cf", f"dbpath = {db}\n{text}")
        _assert_same(postmap, f"sqlite:{cf}", keys)
