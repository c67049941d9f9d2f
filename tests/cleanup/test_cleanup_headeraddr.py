"""header_addrs(): the one-address fast path gives what email.utils.getaddresses gives."""

from __future__ import annotations

import email.utils

from hypothesis import given, settings
from hypothesis import strategies as st

from postel.cleanup.message import _SIMPLE_ADDR_RE, header_addrs

ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
TRICKY = ATEXT + ' \t."(),:;<>@[]\\\né'


def slow(value: str) -> list[str]:
    return [addr for _, addr in email.utils.getaddresses([value]) if addr]


atom = st.text(ATEXT, min_size=1, max_size=6)
dot_atom = st.lists(atom, min_size=1, max_size=3).map(".".join)
addr = st.one_of(dot_atom, st.tuples(dot_atom, dot_atom).map("@".join))
ws = st.text(" \t", max_size=2)
word = st.text(ATEXT + ".", min_size=1, max_size=6)
phrase = st.one_of(
    st.lists(word, min_size=1, max_size=3).map(" ".join),
    st.text(ATEXT + " .,;:<>@()[]", max_size=8).map(lambda t: f'"{t}"'))


@st.composite
def plain_values(draw) -> str:
    """plain_values - the shapes the fast path is for."""
    a = draw(addr)
    shape = draw(st.integers(0, 2))
    if shape == 0:
        core = a
    elif shape == 1:
        core = f"<{a}>"
    else:
        core = f"{draw(phrase)}{draw(ws)}<{a}>"
    return draw(ws) + core + draw(ws)


@given(plain_values())
@settings(max_examples=400)
def test_fast_path_matches_getaddresses(value):
    assert _SIMPLE_ADDR_RE.match(value) is not None
    assert header_addrs(value) == slow(value)


@given(st.text(TRICKY, max_size=30))
@settings(max_examples=800)
def test_any_value_matches_getaddresses(value):
    assert header_addrs(value) == slow(value)


@given(st.lists(plain_values(), min_size=1, max_size=4),
       st.sampled_from([",", ", ", " ,\n ", "\n\t"]))
@settings(max_examples=300)
def test_lists_and_folding_match_getaddresses(values, sep):
    value = sep.join(values)
    assert header_addrs(value) == slow(value)


def test_common_shapes():
    assert header_addrs(" <a@example.com>") == ["a@example.com"]
    assert header_addrs(' "Doe, John" <j@example.com>') == ["j@example.com"]
    assert header_addrs(" root") == ["root"]
    assert header_addrs(" x@y <a@b>") == ["x@y", "a@b"]
    assert header_addrs(" a@b, c@d") == ["a@b", "c@d"]


def _service(tmp_path, extra=""):
    from postel.cleanup.service import CleanupService
    from postel.config import load_config
    from postel.queue import QueueDir
    (tmp_path / "main.cf").write_text(
        f"queue_directory = {tmp_path}/q\nmyorigin = example.com\n"
        f"masquerade_domains = example.com\n{extra}")
    QueueDir(f"{tmp_path}/q").create_dirs()
    return CleanupService(load_config(str(tmp_path)), f"{tmp_path}/q", rewrite_client=object())


def test_header_rewrite_cache_gives_the_same_answers(tmp_path):
    svc = _service(tmp_path)
    for _ in range(2):
        assert svc.rewrite_header_addr("joe", "header_sender") == "joe@example.com"
        assert svc.rewrite_header_addr("a@host.example.com", "header_sender") == "a@example.com"
    assert svc.rewrite_header_addr.cache_info().hits == 2


def test_no_header_rewrite_cache_with_canonical_tables(tmp_path):
    svc = _service(tmp_path, "canonical_maps = inline:{ a@example.com=b@example.com }\n")
    assert not hasattr(svc.rewrite_header_addr, "cache_info")
    assert svc.rewrite_header_addr("a@example.com", "header_sender") == "b@example.com"
