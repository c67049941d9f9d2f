"""smtp(8) MX routing through a real unbound on 127.0.0.1 and smtp-sink."""

from __future__ import annotations

import pytest
from smtp_harness import Env, Sink, free_port, split_dump

from peerlib import Unbound, require_peer

MSG = b"Subject: mx\n\nbody\n"

ZONE = [
    "mx.test.example. IN MX 10 mx1.test.example.",
    "mx1.test.example. IN A 127.0.0.1",
    # the preferred MX refuses connections, the second one works
    "two.test.example. IN MX 10 dead.test.example.",
    "two.test.example. IN MX 20 mx1.test.example.",
    "dead.test.example. IN A 127.0.0.2",
    # no MX: the domain's own address (RFC 5321 5.1)
    "plain.test.example. IN A 127.0.0.1",
    # RFC 7505 null MX
    "nullmx.test.example. IN MX 0 .",
    # MX host without any address
    "noaddr.test.example. IN MX 10 nowhere.test.example.",
]


@pytest.fixture(scope="module")
def unbound_port():
    with Unbound(ZONE, probe=('mx1.test.example', 'A')) as port:
        yield port


def _env(tmp_path, unbound_port, sink, extra=None):
    main = {"dns_nameservers": f"127.0.0.1:{unbound_port}", "smtp_tcp_port": str(sink.port),
            "inet_protocols": "ipv4"}
    main.update(extra or {})
    return Env(tmp_path, main)


@pytest.fixture
def sink():
    s = Sink(require_peer("smtp-sink"))
    yield s
    s.stop()


def test_smtp_mx_lookup_delivers(tmp_path, unbound_port, sink):
    env = _env(tmp_path, unbound_port, sink)
    qid = env.queue(MSG, ["u@mx.test.example"])
    dctx = env.deliver(env.request(qid, "mx.test.example"))
    assert dctx.status == ["sent"]
    assert split_dump(sink.messages(1)[0])[1] == MSG
    assert f"relay=mx1.test.example[127.0.0.1]:{sink.port}" in env.log_text()


def test_smtp_mx_preference_order_and_next_mx(tmp_path, unbound_port, sink):
    env = _env(tmp_path, unbound_port, sink)
    qid = env.queue(MSG, ["u@two.test.example"])
    dctx = env.deliver(env.request(qid, "two.test.example"))
    text = env.log_text()
    assert dctx.status == ["sent"]
    assert f"connect to dead.test.example[127.0.0.2]:{sink.port}: Connection refused" in text
    assert text.index("dead.test.example") < text.index("relay=mx1.test.example")


def test_smtp_no_mx_uses_address_record(tmp_path, unbound_port, sink):
    env = _env(tmp_path, unbound_port, sink)
    qid = env.queue(MSG, ["u@plain.test.example"])
    dctx = env.deliver(env.request(qid, "plain.test.example"))
    assert dctx.status == ["sent"]
    assert f"relay=plain.test.example[127.0.0.1]:{sink.port}" in env.log_text()


def test_smtp_bracket_suppresses_mx(tmp_path, unbound_port, sink):
    env = _env(tmp_path, unbound_port, sink)
    qid = env.queue(MSG, ["u@mx1.test.example"])
    # [mx.test.example] has no A record: no MX lookup means "not found".
    dctx = env.deliver(env.request(qid, "[mx.test.example]"))
    assert dctx.status == ["bounced"]
    assert "Name service error for name=mx.test.example type=A: " in env.log_text()
    qid2 = env.queue(MSG, ["u@mx1.test.example"])
    assert env.deliver(env.request(qid2, f"[mx1.test.example]:{sink.port}")).status == ["sent"]


def test_smtp_nxdomain_bounces(tmp_path, unbound_port, sink):
    env = _env(tmp_path, unbound_port, sink)
    qid = env.queue(MSG, ["u@nosuch.test.example"])
    dctx = env.deliver(env.request(qid, "nosuch.test.example"))
    assert dctx.status == ["bounced"]
    assert ("dsn=5.4.4, status=bounced (Host or domain name not found. Name service error for "
            "name=nosuch.test.example type=MX: Host not found)") in env.log_text()


def test_smtp_verify_nxdomain_is_undeliverable(tmp_path, unbound_port, sink):
    """sendmail -bv: a domain that does not exist is undeliverable, with the DNS text."""
    env = _env(tmp_path, unbound_port, sink)
    qid = env.queue(MSG, ["u@nosuch.test.example", "u@mx.test.example"])
    dctx = env.deliver(env.request(qid, "nosuch.test.example", flags=frozenset({"verify"})))
    assert dctx.status == ["bounced", "bounced"]
    assert ("dsn=5.4.4, status=undeliverable (Host or domain name not found. Name service error "
            "for name=nosuch.test.example type=MX: Host not found)") in env.log_text()
    qid = env.queue(MSG, ["u@mx.test.example"])
    dctx = env.deliver(env.request(qid, "mx.test.example", flags=frozenset({"verify"})))
    assert dctx.status == ["sent"] and "status=deliverable (250 " in env.log_text()
    assert sink.messages(0, timeout=0.2) == []          # no message was sent


def test_smtp_null_mx_bounces(tmp_path, unbound_port, sink):
    env = _env(tmp_path, unbound_port, sink)
    qid = env.queue(MSG, ["u@nullmx.test.example"])
    dctx = env.deliver(env.request(qid, "nullmx.test.example"))
    assert dctx.status == ["bounced"]
    assert "dsn=5.1.10" in env.log_text()


def test_smtp_mx_without_address(tmp_path, unbound_port, sink):
    env = _env(tmp_path, unbound_port, sink)
    qid = env.queue(MSG, ["u@noaddr.test.example"])
    dctx = env.deliver(env.request(qid, "noaddr.test.example"))
    assert dctx.status == ["bounced"]
    assert "no MX host for noaddr.test.example has a valid address record" in env.log_text()


def test_smtp_dns_failure_defers_site_dead(tmp_path, sink):
    # A name server that does not answer: temporary failure.
    env = Env(tmp_path, {"dns_nameservers": f"127.0.0.1:{free_port()}",
                         "smtp_tcp_port": str(sink.port)})
    env_client = env.client()
    env_client.dns.resolver.lifetime = 0.5
    qid = env.queue(MSG, ["u@mx.test.example"])
    req = env.request(qid, "mx.test.example")

    import asyncio

    dctx = asyncio.run(env.adeliver(env_client, req))
    assert dctx.status == ["deferred"] and dctx.site_dead
    assert ("dsn=4.4.3, status=deferred (Host or domain name not found. Name service error for "
            "name=mx.test.example type=MX: Host not found, try again)") in env.log_text()
