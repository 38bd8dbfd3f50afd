"""`inactive N [BYTES]` (gateway/inactivity.py): the directive, its pushed form, and the check.
(Against OpenVPN 2.6, both roles: tests/interop/test_inactive.py.)"""
from __future__ import annotations

import pytest

from appliance.gateway.inactivity import Inactivity
from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import BadPacket, ConfigError
from appliance.openvpn.keymethod import parse_push_reply_untrusted

BASE = "client\nremote 198.18.0.1\n<ca>\nX\n</ca>\n"


@pytest.mark.parametrize("line, want", [("inactive 3600", (3600, 0)), ("inactive 600 100000", (600, 100000)),
                                        ("inactive 0", None), ("inactive 0 5", None)])
def test_directive_values(line, want):
    o = parse_config(BASE + line + "\n", "/p.ovpn")
    assert o.inactive == want
    assert not any("inactive" in n for n in o.notes)        # applied, not "accepted, has no effect"


@pytest.mark.parametrize("line", ["inactive -1", "inactive x", "inactive 5 -3", "inactive 1 2 3", "inactive"])
def test_bad_values_are_errors_at_their_line(line):
    with pytest.raises(ConfigError) as ei:
        parse_config(BASE + line + "\n", "/p.ovpn")
    assert "/p.ovpn:6" in str(ei.value) and "inactive" in str(ei.value)


def test_pushed_inactive_is_parsed_and_bounded():
    p = parse_push_reply_untrusted("PUSH_REPLY,ifconfig 10.8.0.2 255.255.255.0,inactive 30 500")
    assert p.inactive == (30, 500) and "inactive 30 500" not in " ".join(p.ignored)
    assert parse_push_reply_untrusted("PUSH_REPLY,inactive 0").inactive == (0, 0)     # turns ours off
    # OpenVPN takes any positive int (positive_atoi): a long limit is a server's choice, not an
    # attack (nothing spins on a far timer), and refusing it would refuse the whole connection.
    assert parse_push_reply_untrusted("PUSH_REPLY,inactive 99999999").inactive == (99999999, 0)
    assert parse_push_reply_untrusted("PUSH_REPLY,inactive 2147483647 1").inactive == (2**31 - 1, 1)
    for bad in ("inactive -1", "inactive 2147483648", "inactive 5 -1", "inactive x",
                "inactive 1 99999999999999999999", "inactive " + "9" * 5000):
        with pytest.raises(BadPacket):
            parse_push_reply_untrusted("PUSH_REPLY,ifconfig 10.8.0.2 255.255.255.0," + bad)


def test_check_ends_only_a_window_without_more_than_min_bytes():
    i = Inactivity.start((10, 100), total=1000, now=0.0)
    assert i is not None and i.due == 10.0
    assert not i.expired(1101, 10.0) and i.due == 20.0 and i.base == 1101     # 101 bytes: activity
    assert i.expired(1201, 20.0)                                              # exactly 100: not more
    assert Inactivity.start(None, 0, 0.0) is None and Inactivity.start((0, 0), 0, 0.0) is None


def test_check_with_no_byte_minimum_takes_any_traffic():
    i = Inactivity.start((5, 0), total=0, now=100.0)
    assert not i.expired(1, 105.0) and i.due == 110.0
    assert i.expired(1, 110.0)
