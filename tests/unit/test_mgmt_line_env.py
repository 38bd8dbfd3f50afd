"""helper mgmt42: what OpenVPN 2.6.14 keeps of an over-long management line (manage.c's 1,024-byte
command buffer, which a byte finding it full empties), and env-filter's rules (env_filter_match,
man_output_peer_info_env), as pure functions."""
from __future__ import annotations

import pytest

from appliance.gateway.mgmt_env import EnvBlock, env_filter_match
from appliance.gateway.mgmt_line import MAX_LINE, Overlong, what_2_6_reads


def _reads(line: bytes) -> bytes | None:
    o = Overlong()
    for i in range(0, len(line), 4096):         # fed in pieces, as reads come
        o.add(line[i:i + 4096])
    return what_2_6_reads(o.length, o.tail)


@pytest.mark.parametrize("n,want", [
    (0, b""), (1, b"a"), (MAX_LINE, None), (1024, "none"), (1025, b""), (1026, b"a"), (2049, "none"),
    (20_004, 529), ((1 << 20), 1),
])
def test_what_2_6_keeps_of_a_line_of_n_bytes(n, want):
    line = bytes(b"abcdefghijklmnopqrstuvwxyz"[i % 26] for i in range(n))
    got = _reads(line)
    if want == "none":
        assert got is None                        # its LF found the buffer full: 2.6 reads nothing
    elif want is None:
        assert got == line                        # whole
    elif isinstance(want, int):
        assert got == line[-want:]
    else:
        assert got == (line[-len(want):] if want else b"")


def test_the_tail_kept_is_bounded_whatever_the_line():
    o = Overlong()
    for _ in range(300):
        o.add(b"x" * 65536)
    assert o.length == 300 * 65536 and len(o.tail) == MAX_LINE


@pytest.mark.parametrize("var,level,kept", [
    ("X509_1_O=x", 1, True), ("X509_1_O=x", 2, False), ("X509_0_CN=c", 2, True), ("X509_0_CN=c", 3, False),
    ("IV_VER=2.6", 1, False), ("n_clients=3", 1, False), ("n_clients=3", 0, True), ("tls_serial_hex_0=ab", 2, True),
    ("usernamex=1", 2, False), ("password=p", 2, True), ("common_name=c", 1, False),
])
def test_env_filter_match_is_2_6s(var, level, kept):
    assert env_filter_match(var, level) is kept


def test_a_login_block_gives_its_peer_info_first_and_unfiltered_from_level_1_on():
    env = {"n_clients": "1", "IV_VER": "2.6", "password": "p", "common_name": "c"}
    b = EnvBlock((">CLIENT:CONNECT,0,1",), env, peer_info={"IV_VER": "2.6", "IV_PLAT": "linux"})
    assert b.lines(0) == [">CLIENT:CONNECT,0,1", ">CLIENT:ENV,n_clients=1", ">CLIENT:ENV,IV_VER=2.6",
                          ">CLIENT:ENV,password=p", ">CLIENT:ENV,common_name=c", ">CLIENT:ENV,END"]
    assert b.lines(5) == [">CLIENT:CONNECT,0,1", ">CLIENT:ENV,IV_VER=2.6", ">CLIENT:ENV,IV_PLAT=linux",
                          ">CLIENT:ENV,END"]
    up = EnvBlock((">UPDOWN:UP",), env, "UPDOWN", filtered=False)
    assert up.lines(3) == up.lines(0) and len(up.lines(3)) == 6
