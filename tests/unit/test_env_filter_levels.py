"""`env-filter LEVEL` as OpenVPN 2.6.14's manage.c applies it (env_filter_match, and
man_output_peer_info_env for CONNECT, REAUTH and CR_RESPONSE), through the one writer of ENV
blocks (appliance/gateway/mgmt_env.py, helper mgmt42). Minimal reproducers of the fuzz target
`env-filter` (tests/fuzz/conn42_targets.py, helper fuzz42), whose model of 2.6 found the same
differences mgmt42 fixed, and one more: a negative level filters as level 1 (2.6 tests the level
`== 0`, then `<= 1`, then `<= 2`) and gives no peer-info (only `> 0` does); ours showed every line."""
from __future__ import annotations

from appliance.gateway.mgmt_env import EnvBlock

ENV = {"untrusted_ip": "198.18.0.2", "X509_1_O": "Example", "IV_VER": "2.6.14", "X509_0_CN": "client0",
       "UV_ROLE": "x", "common_name": "client0", "IV_PLAT": "linux"}
PEER_INFO = {"IV_VER": "2.6.14", "UV_ROLE": "x", "IV_PLAT": "linux"}


def note(head: str, names: list[str]) -> list[str]:
    return [head] + [f">CLIENT:ENV,{k}={ENV[k]}" for k in names] + [">CLIENT:ENV,END"]


def block(head: str, login: bool) -> EnvBlock:
    return EnvBlock((head,), ENV, peer_info=PEER_INFO if login else None)


def test_level_0_prints_everything_as_it_is():
    for login in (False, True):
        assert block(">CLIENT:ESTABLISHED,0", login).lines(0) == note(">CLIENT:ESTABLISHED,0", list(ENV))


def test_connect_gives_the_peer_info_first_at_every_level_above_0():
    for level, rest in ((1, ["untrusted_ip", "X509_1_O", "X509_0_CN"]), (2, ["untrusted_ip", "X509_0_CN"]),
                        (3, []), (99, [])):
        for head in (">CLIENT:CONNECT,0,1", ">CLIENT:REAUTH,0,3", ">CLIENT:CR_RESPONSE,0,1,eA=="):
            assert block(head, True).lines(level) == note(head, list(PEER_INFO) + rest), (head, level)


def test_established_and_disconnect_drop_the_iv_lines_above_0():
    for head in (">CLIENT:ESTABLISHED,0", ">CLIENT:DISCONNECT,0"):
        assert block(head, False).lines(1) == note(head, ["untrusted_ip", "X509_1_O", "X509_0_CN"])
        assert block(head, False).lines(2) == note(head, ["untrusted_ip", "X509_0_CN"])
        assert block(head, False).lines(3) == note(head, [])


def test_a_negative_level_filters_as_level_1_without_the_peer_info():
    want = ["untrusted_ip", "X509_1_O", "X509_0_CN"]
    assert block(">CLIENT:CONNECT,0,1", True).lines(-1) == note(">CLIENT:CONNECT,0,1", want)
    assert block(">CLIENT:DISCONNECT,0", False).lines(-5) == note(">CLIENT:DISCONNECT,0", want)
