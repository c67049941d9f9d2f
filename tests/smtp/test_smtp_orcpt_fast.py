"""smtp client: the ORCPT fast path (address left as it is by xtext) equals orcpt_param()."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from postel.protocol.smtp_client import orcpt_param
from postel.smtp import client

ADDR = st.one_of(st.text(max_size=40),
                 st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x80), max_size=40),
                 st.sampled_from(["u1@d1.example", "a+b@x", "a=b@x", "a b@x", "\x7f@x", "é@x", ""]))


@given(ADDR, st.sampled_from(["rfc822", "utf-8", "x"]))
def test_orcpt_fast_path_equals_orcpt_param(address, addr_type):
    assert client._orcpt(address, addr_type) == orcpt_param(address, addr_type)


def test_orcpt_examples():
    assert client._orcpt("u1@d1.example") == "rfc822;u1@d1.example"
    assert client._orcpt("a+b=c d@x") == "rfc822;a+2Bb+3Dc+20d@x"
