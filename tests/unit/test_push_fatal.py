"""Which pushes end the client's run (gateway/push_fatal.py), as OpenVPN 2.6's M_FATAL does:
a pushed ifconfig-ipv6 with a device MTU under 1280 (the kernel refuses the address on every
connection). Debian's 2.6 exits there: tests/interop/test_link_mtu_vs_openvpn.py."""
from __future__ import annotations

import pytest

from appliance.gateway.push_fatal import fatal_push
from appliance.openvpn.config import parse_config
from appliance.openvpn.keymethod import parse_push_reply_untrusted as parse_push_reply


def _no_files(path: str) -> bytes:
    raise FileNotFoundError(2, "No such file or directory", path)


def _opts(extra: str = ""):
    return parse_config("client\ndev tun\nremote 198.18.0.1 1194\n<ca>\n</ca>\n" + extra, "/p/c.ovpn", _no_files)


def _push(*opts: str):
    return parse_push_reply("PUSH_REPLY," + ",".join(("ifconfig 198.19.0.2 255.255.255.0", "topology subnet") + opts))


V6 = "ifconfig-ipv6 2001:db8::1000/64 2001:db8::1"


def test_ipv6_on_a_small_tun_is_fatal_and_names_the_profiles_line():
    why = fatal_push(_opts("tun-mtu 1200\n"), _push(V6))
    assert why is not None
    assert "2001:db8::1000/64" in why and "1200" in why and "/p/c.ovpn:6" in why and "1280" in why
    assert "pull-filter ignore" in why


def test_link_mtu_that_leaves_under_1280_names_its_line():
    why = fatal_push(_opts("link-mtu 1200\n"), _push(V6))
    assert why is not None and "/p/c.ovpn:6" in why


@pytest.mark.parametrize("extra, opts", [
    ("", (V6,)),                                     # the default 1500
    ("tun-mtu 1280\n", (V6,)),                       # exactly the floor
    ("tun-mtu 1200\n", (V6, "tun-mtu 1500")),        # the server's tun-mtu replaces ours (2.6's push)
    ("tun-mtu 1200\n", ()),                          # IPv4 only: down to 100
    ("tun-mtu 100\n", ()),
])
def test_what_the_kernel_takes_is_not_fatal(extra, opts):
    assert fatal_push(_opts(extra), _push(*opts)) is None


def test_a_pushed_small_tun_mtu_is_named_as_the_servers():
    why = fatal_push(_opts(), _push(V6, "tun-mtu 1000"))
    assert why is not None and "pushed tun-mtu 1000" in why


def test_no_push_nothing_fatal():
    assert fatal_push(_opts("tun-mtu 1200\n"), None) is None
