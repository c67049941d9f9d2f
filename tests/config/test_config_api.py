"""Tests for postel.config: main.cf parsing, expansion, typed getters, derive."""

import pytest

from postel.config import ConfigError, load_config
from postel.config.params import PARAMS, lookup_param
from postel.config.parser import split_list


def write(tmp_path, text, master=None):
    (tmp_path / "main.cf").write_text(text)
    if master is not None:
        (tmp_path / "master.cf").write_text(master)
    return load_config(str(tmp_path))


def test_defaults_and_symbolic_expansion(tmp_path):
    cfg = write(tmp_path, "myhostname = mx.example.org\n")
    assert cfg.raw("myorigin") == "$myhostname"
    assert cfg.get("myorigin") == "mx.example.org"
    assert cfg.get("mydomain") == "example.org"
    assert cfg.get("mydestination") == "mx.example.org, localhost.example.org, localhost"
    assert cfg.get("syslog_name") == "postel"
    assert cfg.get("config_directory") == str(tmp_path)
    assert cfg.get("mail_owner") == "postel"
    assert not cfg.is_set("myorigin") and cfg.is_set("myhostname")


def test_comments_continuations_and_overrides(tmp_path):
    cfg = write(tmp_path, "# c\n  # indented comment\na = 1\nb = x\n  y\n  # not part\n\n   z\na = 2\n")
    assert cfg.get("a") == "2"
    assert cfg.raw("b") == "x  y   z"
    assert cfg.explicit == {"a": "2", "b": "x  y   z"}


@pytest.mark.parametrize("value,expected", [
    ("$a${a}$(a)", "111"),
    ("${a?yes}|${zz?yes}|${a:no}|${zz:no}", "yes|||no"),
    ("${a?{x y}}|${zz?{x}:{y}}|${a?{x}:{y}}", "x y|y|x"),
    ("$$a and $$", "$a and $"),
    ("${e?x}|${e:y}", "|y"),
    ("${{$a} == {1} ? {eq} : {ne}}", "eq"),
    ("${{3.6} <level {2} ? {old} : {new}}", "new"),
    ("$undefined end", " end"),
])
def test_expansion(tmp_path, value, expected):
    cfg = write(tmp_path, f"a = 1\ne =\nv = {value}\n")
    assert cfg.get("v") == expected


@pytest.mark.parametrize("value,message", [
    ("end$", "empty macro name"),
    ("${a", "truncated macro reference"),
    ("$(a}", "truncated macro reference"),
    ("$loop1", "unreasonable macro call nesting"),
])
def test_expansion_errors(tmp_path, value, message):
    cfg = write(tmp_path, f"a = 1\nloop1 = $loop2\nloop2 = $loop1\nv = {value}\n")
    with pytest.raises(ConfigError) as info:
        cfg.get("v")
    assert message in str(info.value)
    assert str(info.value).startswith(f"{tmp_path}/main.cf, line 4: parameter v: ")


@pytest.mark.parametrize("text,message", [
    ("junk line\n", "line 1: missing '=' after attribute name"),
    ("ok = 1\n= value\n", "line 2: missing attribute name"),
])
def test_syntax_errors(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        write(tmp_path, text)
    assert message in str(info.value)


def test_missing_main_cf(tmp_path):
    with pytest.raises(ConfigError, match="main.cf: No such file"):
        load_config(str(tmp_path))


def test_typed_getters(tmp_path):
    cfg = write(tmp_path, "smtpd_timeout = 5m\nmaximal_queue_lifetime = 2\nbiff = True\n"
                "message_size_limit = 1000\ndefault_process_limit = 0\nhopcount_limit = x\n"
                "smtpd_helo_restrictions = permit_mynetworks, { check_policy_service "
                "{ inet:127.0.0.1:9998, timeout=10s } }, reject\n")
    assert cfg.get_time("smtpd_timeout") == 300.0
    assert cfg.get_time("maximal_queue_lifetime") == 2 * 86400  # default unit d
    assert cfg.get_time("smtp_connect_timeout") == 30.0
    assert cfg.get_bool("biff") is True
    assert cfg.get_size("message_size_limit") == 1000
    assert cfg.get_list("smtpd_helo_restrictions") == [
        "permit_mynetworks", "check_policy_service { inet:127.0.0.1:9998, timeout=10s }", "reject"]
    with pytest.raises(ConfigError, match=r"line 5: parameter default_process_limit: .*minimum 1"):
        cfg.get_int("default_process_limit")
    with pytest.raises(ConfigError, match="line 6: parameter hopcount_limit: bad numerical"):
        cfg.get_int("hopcount_limit")


def test_unknown_names(tmp_path):
    cfg = write(tmp_path, "my_own = 1\n")
    with pytest.raises(KeyError):
        cfg.get("nonexistent_parameter")
    assert cfg.get("my_own") == "1"
    assert cfg.derive({"other": "$my_own!"}).get("other") == "1!"


def test_per_transport_defaults(tmp_path):
    cfg = write(tmp_path, "default_destination_concurrency_limit = 7\n"
                "relay_destination_concurrency_limit = 3\n")
    assert cfg.get_int("relay_destination_concurrency_limit") == 3
    assert cfg.get_int("smtp_destination_concurrency_limit") == 7
    assert cfg.get_int("mytransport_destination_recipient_limit") == 50
    assert cfg.get_int("local_destination_recipient_limit") == 1
    assert lookup_param("foo_time_limit").default == "$command_time_limit"


def test_derive_sees_overrides(tmp_path):
    cfg = write(tmp_path, "myhostname = a.example\nsmtpd_banner = $myhostname hi\n")
    d = cfg.derive({"myhostname": "b.example"})
    assert d.get("smtpd_banner") == "b.example hi"
    assert cfg.get("smtpd_banner") == "a.example hi"
    assert d.is_set("myhostname")


def test_split_list():
    assert split_list("{ a b } , c,,d\te") == ["a b", "c", "d", "e"]
    assert split_list("") == []


def test_registry_sanity():
    assert PARAMS["config_directory"].default == "/etc/postel"
    assert PARAMS["queue_directory"].default == "/var/spool/postel"
    assert PARAMS["dns_nameservers"].doc.startswith("Postel extension")
    assert PARAMS["smtpd_timeout"].min == 1
    for name in ("smtpd_recipient_restrictions", "virtual_alias_maps", "qmgr_message_active_limit",
                 "fast_flush_domains", "qmqpd_timeout", "alias_maps", "double_bounce_sender"):
        assert name in PARAMS
