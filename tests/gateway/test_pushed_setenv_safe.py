"""A pushed `setenv-safe NAME VALUE` sets OPENVPN_NAME for the client's scripts, as OpenVPN 2.6
(options.c: OPT_P_SETENV is pullable; env_set.c setenv_str_safe): the name is `OPENVPN_` and the
pushed name with all but letters, digits and `_` dropped (setenv_str's CC_NAME), nothing for a
name over 55 bytes ("name overflow"); a later one of the same name replaces it; it replaces the
profile's own setenv-safe of that name. It lives in the connection's set: up, route-up, down and
later tls-verify see it; ipchange at the connection's first handshake (before the push) does not.
Before, ours logged it as ignored."""
from __future__ import annotations

import pytest

from appliance.gateway.updown_env import up_env
from appliance.openvpn.config import parse_config
from appliance.openvpn.keymethod import MAX_PUSHED_OPTIONS, PushRejected, parse_push_reply_untrusted
from tests.gateway.conftest import client_conf


def _push(*opts: str):
    return parse_push_reply_untrusted("PUSH_REPLY," + ",".join(opts))


def test_pushed_setenv_safe_is_read_as_openvpn_reads_it():
    p = _push("setenv-safe MOTD hello", "setenv-safe my-var.x 1", "setenv-safe Q 'a b  c'",
              'setenv-safe D "x\\"y"', "setenv-safe EMPTY", "setenv-safe MOTD again",
              "setenv-safe " + "N" * 56 + " v", "setenv-safe " + "K" * 55 + " v", "setenv-safe A b c")
    assert p.setenv_safe == {"OPENVPN_MOTD": "again", "OPENVPN_myvarx": "1", "OPENVPN_Q": "a b  c",
                             "OPENVPN_D": 'x"y', "OPENVPN_EMPTY": "", "OPENVPN_" + "K" * 55: "v"}
    assert not any("setenv-safe MOTD" in x for x in p.ignored)
    assert any("N" * 20 in x for x in p.malformed + p.ignored)      # the overflow is logged
    assert any("setenv-safe A b c" in x for x in p.malformed + p.ignored + p.unrecognized)


def test_a_pushed_option_longer_than_openvpn_reads_is_left_out():
    p = _push("setenv-safe BIG " + "v" * 300, "setenv-safe OK 1")
    assert p.setenv_safe == {"OPENVPN_OK": "1"}


def test_a_thousand_pushed_setenv_safe_are_refused_as_any_flood():
    with pytest.raises(PushRejected):
        _push(*(f"setenv-safe V{i} x" for i in range(MAX_PUSHED_OPTIONS + 1)))


def test_the_profiles_setenv_safe_name_is_made_as_openvpn_makes_it(pki):
    o = parse_config(client_conf(pki, extra="setenv-safe my-tag green\n"), "/mem/c.ovpn")
    assert o.setenv == {"OPENVPN_mytag": "green"}


def test_the_up_environment_holds_the_pushed_variables_over_the_profiles(pki):
    o = parse_config(client_conf(pki, extra="setenv-safe MOTD mine\nsetenv-safe KEEP k\n"), "/mem/c.ovpn")
    p = _push("ifconfig 198.19.0.6 198.19.0.5", "setenv-safe MOTD theirs")
    e = up_env(o, p, remote=("198.18.0.1", 1194), chain=[], common_name="server", dev="tun0",
               net_gateway=None, started=0.0)
    assert e["OPENVPN_MOTD"] == "theirs" and e["OPENVPN_KEEP"] == "k"
    before = up_env(o, None, remote=("198.18.0.1", 1194), chain=[], common_name="server", dev="tun0",
                    net_gateway=None, started=0.0)
    assert before["OPENVPN_MOTD"] == "mine"


class _Session:
    peer_certificate = None
    peer_chain: list = []
    peer_common_name = "server"


def test_a_reconnect_whose_push_lacks_it_drops_it_and_tls_verify_sees_the_current_one(pki):
    from appliance.gateway.updown import UpDown
    o = parse_config(client_conf(pki, extra="persist-tun\nsetenv-safe KEEP mine\nmanagement-up-down\n"
                                 "management 127.0.0.1 7505\n"), "/mem/c.ovpn")
    u = UpDown(o, net_gateway=lambda _dev: "0.0.0.0")
    first = _push("ifconfig 198.19.0.6 198.19.0.5", "setenv-safe MOTD hi", "setenv-safe KEEP theirs")
    u.up(_Session(), ("198.18.0.1", 1194), first, "tun0", None)
    assert u.mgmt_env["OPENVPN_MOTD"] == "hi" and u.mgmt_env["OPENVPN_KEEP"] == "theirs"
    assert u.verify_base("198.18.0.1", 1194)["OPENVPN_MOTD"] == "hi"       # a renegotiation's tls-verify
    u.new_connection()                              # a reconnect: the set is made afresh (2.6's level-2 context)
    assert "OPENVPN_MOTD" not in u.verify_base("198.18.0.1", 1194)
    u.up(_Session(), ("198.18.0.1", 1194), _push("ifconfig 198.19.0.6 198.19.0.5"), "tun0", None)
    assert "OPENVPN_MOTD" not in u.mgmt_env and u.mgmt_env["OPENVPN_KEEP"] == "mine"   # (down sees this)


def test_a_plain_setenv_name_is_cleaned_and_a_one_byte_name_refused_as_openvpn(pki):
    """2.6's setenv_str keeps only letters, digits and `_` of a setenv name (`my-var.x` is
    `myvarx`; a shell passes no `my-var.x` on to what it runs), and stops at start on a name of
    one byte (an assertion, seen with Debian's 2.6.14): refused here at its line."""
    from appliance.openvpn.config import ConfigError
    o = parse_config(client_conf(pki, extra="setenv my-var.x v1\nsetenv Plain v2\n"), "/mem/c.ovpn")
    assert o.setenv == {"myvarx": "v1", "Plain": "v2"}
    for bad in ("setenv X 1", "setenv .- 1"):
        with pytest.raises(ConfigError, match="c.ovpn:"):
            parse_config(client_conf(pki, extra=bad + "\n"), "/mem/c.ovpn")


def test_the_up_environment_interleaves_pushed_setenv_safe_and_foreign_options_as_openvpn(pki):
    """2.6 sets both as it reads the push: newest first, a name set again moved to the front
    (tests/interop/test_updown_setenv_order_vs_openvpn.py shows Debian's client's >UPDOWN)."""
    o = parse_config(client_conf(pki, extra="setenv-safe KEEP mine\n"), "/mem/c.ovpn")
    p = _push("ifconfig 198.19.0.6 198.19.0.5", "dhcp-option DNS 198.18.5.5", "setenv-safe A 1",
              "dhcp-option DOMAIN example.org", "setenv-safe KEEP theirs", "setenv-safe A 2",
              "dhcp-option DOMAIN-SEARCH b.example")
    e = up_env(o, p, remote=("198.18.0.1", 1194), chain=[], common_name="server", dev="tun0",
               net_gateway=None, started=0.0)
    names = [k for k in e if k.startswith(("OPENVPN_", "foreign_option_"))]
    assert names[:5] == ["foreign_option_3", "OPENVPN_A", "OPENVPN_KEEP", "foreign_option_2",
                         "foreign_option_1"], names
