"""`fragment N [mtu]` in a config: read as OpenVPN 2.6 reads it, refused where it refuses it, and
the MSS clamp it implies (Debian's openvpn logs `mss_fix:1204 max_frag:1272` for `fragment 1300`
with AES-256-GCM over UDP/IPv4: mssfix takes the fragment value with the default's `mtu` meaning).
"""
from __future__ import annotations

import pytest

from appliance.openvpn import ciphers
from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.fragment import max_fragment_size
from appliance.openvpn.settings import fragment_room, tcp_mss

BASE = "client\ndev tun\nremote 198.18.0.1 1194\nca ca.crt\n"


def _opts(extra: str):
    return parse_config(BASE + extra, "/cfg/p.ovpn", lambda p: b"")


def _err(text: str) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "/cfg/p.ovpn", lambda p: b"")
    return [str(e) for e in getattr(ei.value, "errors", [ei.value])]


def test_expressvpn_style_lines_parse():
    o = _opts("tun-mtu 1500\nfragment 1300\nmssfix 1200\n")
    assert (o.fragment, o.fragment_mtu, o.mssfix) == (1300, False, 1200)
    assert fragment_room(o, False) == 1300
    o = _opts("fragment 1400 mtu\n")
    assert fragment_room(o, False) == 1400 - 28 and fragment_room(o, True) == 1400 - 48


@pytest.mark.parametrize("line,why", [
    ("fragment 67", "at least 68"),
    ("fragment 1300 foo", "Unknown parameter to --fragment: foo"),
    ("fragment x", "expected a number"),
])
def test_bad_values_are_refused_at_their_line(line, why):
    msgs = _err(BASE + line + "\n")
    assert any(m.startswith("/cfg/p.ovpn:5: fragment:") and why in m for m in msgs), msgs


@pytest.mark.parametrize("text", [
    "client\ndev tun\nproto tcp\nremote 198.18.0.1 1194\nfragment 1300\n",
    "client\ndev tun\nremote 198.18.0.1 1194 udp\nremote 198.18.0.1 443 tcp\nfragment 1300\n",
    "mode server\ntls-server\nproto tcp-server\nserver 198.19.0.0 255.255.255.0\nfragment 1300\n",
])
def test_tcp_with_fragment_is_refused_as_openvpn_does(text):
    assert any("fragment: --fragment can only be used with --proto udp" in m for m in _err(text))


def test_the_mss_clamp_follows_fragment_as_openvpn_2_6():
    o = _opts("fragment 1300\n")
    assert tcp_mss(o, None, False, cipher="AES-256-GCM") == 1204                 # Debian's mss_fix
    assert max_fragment_size(ciphers.spec("AES-256-GCM"), "SHA1", True, fragment_room(o, False)) == 1272
    # An explicit mssfix wins; `mssfix 0` still turns clamping off.
    assert tcp_mss(_opts("fragment 1300\nmssfix 1200\n"), None, False, cipher="AES-256-GCM") == 1200 - 24 - 4 - 40
    assert tcp_mss(_opts("fragment 1300\nmssfix 0\n"), None, False, cipher="AES-256-GCM") is None
    # Without fragment nothing moves: OpenVPN's default 1492 mtu.
    assert tcp_mss(_opts(""), None, False, cipher="AES-256-GCM") == 1492 - 24 - 28 - 40
