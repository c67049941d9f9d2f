"""Unit tests: lookup strategies, commands, bad input, atomic rebuild, network tables."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading

import pytest

from postel.commands import postalias, postmap
from postel.tables import LookupFlags, TableError, TableUnavailable, close_all, open_table
from postel.tables.lookup import (
    access_address,
    access_client,
    addr_keys,
    transport_lookup,
    virtual_lookup,
)

POSTEL = [os.path.join(os.path.dirname(sys.executable), "postel")]


def inline(**entries: str):
    close_all()
    body = ", ".join("{%s = %s}" % (k, v) for k, v in entries.items())
    return open_table("inline:{" + body + "}")


def test_tables_access_address_order():
    table = inline(**{"joe+x@example.com": "EXT", "joe@example.com": "FULL",
                      "example.com": "DOMAIN", "joe@": "USER"})
    assert access_address(table, "joe+x@example.com", delimiter="+").value == "EXT"
    assert access_address(table, "joe+y@example.com", delimiter="+").value == "FULL"
    assert access_address(table, "ann@sub.example.com").value == "DOMAIN"
    assert access_address(table, "ann@sub.example.com", parent_matches=False) is None
    assert access_address(table, "joe@other.org").value == "USER"
    assert access_address(table, "joe+z@other.org", delimiter="+").key == "joe@"


def test_tables_access_dot_parent_form():
    table = inline(**{".example.com": "SUB"})
    assert access_address(table, "a@x.example.com", parent_matches=False).value == "SUB"
    assert access_address(table, "a@example.com", parent_matches=False) is None


def test_tables_client_address_prefixes():
    assert list(addr_keys("1.2.3.4")) == ["1.2.3.4", "1.2.3", "1.2", "1"]
    assert list(addr_keys("2001:db8::1")) == ["2001:db8::1", "2001:db8:", "2001:db8", "2001"]
    table = inline(**{"1.2.3": "NET", "mail.example.com": "HOST", "example.org": "PARENT"})
    assert access_client(table, "unknown", "1.2.3.9").value == "NET"
    assert access_client(table, "mail.example.com", "9.9.9.9").value == "HOST"
    assert access_client(table, "a.example.org", "9.9.9.9").key == "example.org"


def test_tables_virtual_and_transport_order():
    table = inline(**{"@example.com": "CATCHALL", "joe": "LOCALUSER", "*": "DEFAULT",
                      ".example.net": "SUBNET"})
    assert virtual_lookup(table, "joe@example.com").value == "CATCHALL"
    assert virtual_lookup(table, "joe@example.com", local=True).value == "LOCALUSER"
    assert virtual_lookup(table, "joe+x@example.com", local=True, delimiter="+").key == "joe"
    assert transport_lookup(table, "a@mx.example.net").value == "SUBNET"
    assert transport_lookup(table, "a@example.net").value == "DEFAULT"


def test_tables_case_folding():
    close_all()
    assert open_table("inline:{Key=Value}").lookup("KEY") == "Value"
    assert open_table("inline:{Key=Value}", LookupFlags.NONE).lookup("KEY") is None
    close_all()


def test_tables_fail_and_unknown_types():
    with pytest.raises(TableUnavailable):
        open_table("fail:test").lookup("x")
    with pytest.raises(TableError):
        open_table("nosuchtype:x")
    with pytest.raises(TableError):
        open_table("noprefix")
    with pytest.raises(TableError):
        open_table("inline:{a b}")


def run_cmd(main, argv, stdin="", capsys=None, monkeypatch=None):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    rc = main(argv, None)
    out, err = capsys.readouterr()
    return rc, out, err


def test_tables_postmap_build_query_delete(tmp_path, capsys, monkeypatch):
    src = tmp_path / "virtual"
    src.write_text("Joe@Example.com joe\nann@example.com ann\n")
    assert run_cmd(postmap.main, [f"lmdb:{src}"], "", capsys, monkeypatch)[0] == 0
    assert (tmp_path / "virtual.lmdb").exists()
    assert not (tmp_path / "virtual.lmdb.tmp").exists()
    rc, out, _ = run_cmd(postmap.main, ["-q", "JOE@example.com", f"lmdb:{src}"], "",
                         capsys, monkeypatch)
    assert (rc, out) == (0, "joe\n")
    rc, out, _ = run_cmd(postmap.main, ["-q", "-", f"lmdb:{src}"], "ann@example.com\nno\n",
                         capsys, monkeypatch)
    assert (rc, out) == (0, "ann@example.com\tann\n")
    assert run_cmd(postmap.main, ["-q", "nobody", f"lmdb:{src}"], "", capsys, monkeypatch)[0] == 1
    assert run_cmd(postmap.main, ["-d", "ann@example.com", f"lmdb:{src}"], "", capsys,
                   monkeypatch)[0] == 0
    rc, out, _ = run_cmd(postmap.main, ["-s", f"lmdb:{src}"], "", capsys, monkeypatch)
    assert out == "joe@example.com\tjoe\n"
    rc, _, _ = run_cmd(postmap.main, ["-i", f"lmdb:{src}"], "new@x v\n", capsys, monkeypatch)
    rc, out, _ = run_cmd(postmap.main, ["-s", f"lmdb:{src}"], "", capsys, monkeypatch)
    assert out.splitlines() == ["joe@example.com\tjoe", "new@x\tv"]


def test_tables_postmap_duplicates_and_bad_lines(tmp_path, capsys, monkeypatch):
    src = tmp_path / "map"
    src.write_text("a 1\na 2\nbad\n\"open x\n")
    rc, _, err = run_cmd(postmap.main, [f"lmdb:{src}"], "", capsys, monkeypatch)
    assert rc == 1
    assert f"{src}, line 3: expected format: key whitespace value" in err
    assert f"{src}, line 4: unbalanced" in err
    assert 'duplicate entry: "a"' in err
    assert run_cmd(postmap.main, ["-q", "a", f"lmdb:{src}"], "", capsys, monkeypatch)[1] == "1\n"
    src.write_text("a 1\na 2\n")
    rc, _, err = run_cmd(postmap.main, ["-r", f"lmdb:{src}"], "", capsys, monkeypatch)
    assert rc == 0 and err == ""
    assert run_cmd(postmap.main, ["-q", "a", f"lmdb:{src}"], "", capsys, monkeypatch)[1] == "2\n"


def test_tables_postmap_fatal_errors(tmp_path, capsys, monkeypatch):
    rc, _, err = run_cmd(postmap.main, [f"lmdb:{tmp_path}/missing"], "", capsys, monkeypatch)
    assert rc == 1 and "No such file or directory" in err and "Traceback" not in err
    rc, _, err = run_cmd(postmap.main, [f"regexp:{tmp_path}/x"], "", capsys, monkeypatch)
    assert rc == 1 and "does not support bulk-mode creation" in err
    rc, _, err = run_cmd(postmap.main, ["-q", "x", "fail:x"], "", capsys, monkeypatch)
    assert rc == 1 and "query error" in err
    rc, _, err = run_cmd(postmap.main, ["-Z", "x"], "", capsys, monkeypatch)
    assert rc == 1 and "usage" in err


def test_tables_regexp_bad_file_warnings(tmp_path, capsys, monkeypatch):
    src = tmp_path / "re"
    src.write_text("/a(b/ x\n/ok/ yes\nbogus\n/x/q r\n/(m)/ $2\nendif\nif /k/\n")
    rc, out, err = run_cmd(postmap.main, ["-q", "ok", f"regexp:{src}"], "", capsys, monkeypatch)
    assert (rc, out) == (0, "yes\n")
    for line, text in ((1, "Unmatched ( or \\("), (3, "ignoring unrecognized request"),
                       (4, 'unknown regexp option "q"'), (5, 'out of range replacement index "2"'),
                       (6, "ignoring ENDIF without matching IF"), (7, "IF has no matching ENDIF")):
        assert f"regexp map {src}, line {line}: {text}" in err


def test_tables_postmap_base64(tmp_path, capsys, monkeypatch):
    (tmp_path / "cert.pem").write_text("CERT")
    src = tmp_path / "sni"
    src.write_text(f"example.com {tmp_path}/cert.pem\n")
    assert run_cmd(postmap.main, ["-F", f"lmdb:{src}"], "", capsys, monkeypatch)[0] == 0
    assert run_cmd(postmap.main, ["-q", "example.com", f"lmdb:{src}"], "", capsys,
                   monkeypatch)[1] == "Q0VSVA==\n"
    assert run_cmd(postmap.main, ["-F", "-q", "example.com", f"lmdb:{src}"], "", capsys,
                   monkeypatch)[1] == "CERT\n"


def test_tables_postmap_header_mode(tmp_path, capsys, monkeypatch):
    src = tmp_path / "hc"
    src.write_text("/^Subject: (.*)/ SUBJ $1\n/body/ BODY\n")
    msg = "Subject: hi\n there\nFrom: x\n\nbody line\n"
    rc, out, _ = run_cmd(postmap.main, ["-h", "-q", "-", f"regexp:{src}"], msg, capsys,
                         monkeypatch)
    assert out == "Subject: hi\n there\tSUBJ hi\n there\n"
    rc, out, _ = run_cmd(postmap.main, ["-b", "-q", "-", f"regexp:{src}"], msg, capsys,
                         monkeypatch)
    assert out == "body line\tBODY\n"


def test_tables_postalias(tmp_path, capsys, monkeypatch):
    src = tmp_path / "aliases"
    src.write_text('Root: \\root, |"/bin/cmd arg"\n  , joe\n"x y": z\nnoval:\n')
    rc, _, err = run_cmd(postalias.main, [f"lmdb:{src}"], "", capsys, monkeypatch)
    assert rc == 1 and f"{src}, line 4: need name:value pair" in err
    rc, out, _ = run_cmd(postalias.main, ["-s", f"lmdb:{src}"], "", capsys, monkeypatch)
    assert out.splitlines() == ["@:\t@", 'root:\troot, |"/bin/cmd arg", joe', "x y:\tz"]
    rc, out, _ = run_cmd(postalias.main, ["-q", "ROOT", f"lmdb:{src}"], "", capsys, monkeypatch)
    assert out == 'root, |"/bin/cmd arg", joe\n'


def test_tables_newaliases_uses_alias_database(tmp_path, capsys, monkeypatch):
    src = tmp_path / "aliases"
    src.write_text("postmaster: root\n")
    monkeypatch.setattr(postmap, "config_value",
                        lambda d, name, default: f"lmdb:{src}" if name == "alias_database"
                        else "lmdb")
    rc, _, err = run_cmd(postalias.main, ["-I"], "", capsys, monkeypatch)
    assert rc == 0, err
    assert open_table(f"lmdb:{src}", cache=False).lookup("postmaster") == "root"


def test_tables_rebuild_is_atomic(tmp_path):
    """A reader looping during rebuilds never errs and never sees a partial table."""
    src = tmp_path / "big"
    n = 3000

    def write(gen: int) -> None:
        src.write_text("".join(f"key{i} gen{gen}\n" for i in range(n)))
    write(0)
    assert postmap.main([f"lmdb:{src}"], None) == 0
    stop = threading.Event()
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                table = open_table(f"lmdb:{src}", cache=False)
                values = {table.lookup(f"key{i}") for i in (0, n // 2, n - 1)}
                table.close()
            except Exception as exc:  # noqa: BLE001 - any error is a failure here
                problems.append(repr(exc))
                return
            if len(values) != 1 or None in values:
                problems.append(f"mixed or missing answers: {values}")
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for gen in range(1, 8):
            write(gen)
            proc = subprocess.run([*POSTEL, "map", f"lmdb:{src}"], capture_output=True)
            assert proc.returncode == 0, proc.stderr
    finally:
        stop.set()
        thread.join()
    assert problems == []
    assert open_table(f"lmdb:{src}", cache=False).lookup("key1") == "gen7"


def test_tables_needs_reopen(tmp_path):
    src = tmp_path / "t"
    src.write_text("a 1\n")
    close_all()
    table = open_table(f"texthash:{src}")
    assert not table.needs_reopen()
    src.write_text("a 2\nb 3\n")
    os.utime(src, (1, 1))
    assert table.needs_reopen()
    assert open_table(f"texthash:{src}").lookup("a") == "2"


def _serve(handler):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def loop():
        conn, _ = srv.accept()
        with conn:
            buf = b""
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
                buf = handler(conn, buf)
    threading.Thread(target=loop, daemon=True).start()
    return srv.getsockname()[1]


def test_tables_socketmap_protocol():
    def handler(conn, buf):
        while b":" in buf:
            size, _, rest = buf.partition(b":")
            if len(rest) < int(size) + 1:
                break
            request, buf = rest[:int(size)], rest[int(size) + 1:]
            name, _, key = request.decode().partition(" ")
            reply = {"joe": "OK joe@home", "down": "TEMP try later"}.get(key, "NOTFOUND ")
            data = reply.encode()
            conn.sendall(b"%d:%s," % (len(data), data))
        return buf
    port = _serve(handler)
    table = open_table(f"socketmap:inet:127.0.0.1:{port}:virtual", cache=False)
    assert table.lookup("joe") == "joe@home"
    assert table.lookup("ann") is None
    with pytest.raises(TableUnavailable):
        table.lookup("down")
    table.close()


def test_tables_tcp_protocol():
    def handler(conn, buf):
        while b"\n" in buf:
            line, _, buf = buf.partition(b"\n")
            key = line.decode()[4:]
            if key == "a%20b":
                conn.sendall(b"200 found%20it\n")
            elif key == "err":
                conn.sendall(b"400 broken\n")
            else:
                conn.sendall(b"500 no\n")
        return buf
    port = _serve(handler)
    table = open_table(f"tcp:127.0.0.1:{port}", cache=False)
    assert table.lookup("a b") == "found it"
    assert table.lookup("zz") is None
    with pytest.raises(TableUnavailable):
        table.lookup("err")
    table.close()
    with pytest.raises(TableUnavailable):
        open_table("tcp:127.0.0.1:1", cache=False).lookup("x")
