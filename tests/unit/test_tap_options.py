"""`dev tap` (layer 2) in a profile, as OpenVPN 2.6 reads it: the device type from dev-type or the
`dev` name, tap's tun-mtu-extra 32 (the mssfix figure), route-gateway for a tap client, and the
refusals that name their line: a tap server, a route-gateway name, the appliance TOML."""
from __future__ import annotations

import pytest

from appliance.config.ovpn_import import import_profile
from appliance.config.schema import parse_appliance_config
from appliance.openvpn.config import ConfigErrors, parse_config
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.settings import client_session_config, tcp_mss

BASE = "client\ndev tun\nremote 198.18.0.1\n<ca>\n</ca>\n"          # 5 lines
SERVER = "ca ca.crt\ncert s.crt\nkey s.key\ndh none\nserver 198.19.0.0 255.255.255.0\n"   # 5 lines


def _parse(text: str, path: str = "/p/c.ovpn"):
    return parse_config(text, path, read_file=lambda p: b"x")


def _errors(text: str, path: str = "/p/c.ovpn") -> list[str]:
    with pytest.raises(ConfigError) as ei:
        _parse(text, path)
    e = ei.value
    return [str(x) for x in (e.errors if isinstance(e, ConfigErrors) else [e])]


@pytest.mark.parametrize("lines, dev_type", [
    ("dev tap\n", "tap"), ("dev tap0\n", "tap"), ("dev tap7\n", "tap"),
    ("dev office\ndev-type tap\n", "tap"), ("dev-type tap\ndev office\n", "tap"),   # either order
    ("dev tun\n", "tun"), ("dev tun0\n", "tun"), ("", "tun"), ("dev office\n", "tun"),
    ("dev tap0\ndev-type tun\n", "tun"),            # dev-type decides, as 2.6's dev_type_enum
])
def test_the_device_type_as_openvpn_decides_it(lines, dev_type):
    o = _parse(BASE + lines)
    assert o.dev_type == dev_type
    assert o.tun_mtu_extra == (32 if dev_type == "tap" else 0)


def test_tap_keeps_a_given_tun_mtu_extra():
    assert _parse(BASE + "dev tap\ntun-mtu-extra 0\n").tun_mtu_extra == 0
    assert _parse(BASE + "tun-mtu-extra 40\ndev tap\n").tun_mtu_extra == 40


def test_tap_mss_is_openvpns_1368_for_aes_256_gcm():
    """Debian's 2.6 logs `mss_fix:1368` for a tap client with the defaults (tun: 1400)."""
    tap, tun = _parse(BASE + "dev tap\n"), _parse(BASE)
    assert tcp_mss(tap, None, False, cipher="AES-256-GCM") == 1368
    assert tcp_mss(tun, None, False, cipher="AES-256-GCM") == 1400


def test_the_session_config_carries_the_device_for_the_options_string():
    cfg = client_session_config(_parse(BASE + "dev tap\n"), "udp", "", "")
    assert (cfg.dev_type, cfg.tun_mtu_extra) == ("tap", 32)
    cfg = client_session_config(_parse(BASE + "tun-mtu-extra 32\n"), "udp", "", "")
    assert (cfg.dev_type, cfg.tun_mtu_extra) == ("tun", 0)       # tun's OCC string is unchanged by it


@pytest.mark.parametrize("lines, line, directive", [
    ("dev tap\n", 6, "dev"), ("dev tap0\n", 6, "dev"), ("dev srv\ndev-type tap\n", 7, "dev-type"),
])
def test_a_server_takes_the_device_type_by_the_same_rule(lines, line, directive):
    """The layer-2 server (d_layer2.py) and the tap client share one decision: dev-type, else
    the name; tap's tun-mtu-extra 32 for both."""
    o = _parse(SERVER + lines)
    assert (o.dev_type, o.tun_mtu_extra) == ("tap", 32)


def test_route_gateway_on_a_tap_client():
    assert _parse(BASE + "dev tap\nroute-gateway 198.19.0.1\n").route_gateway == "198.19.0.1"
    # dhcp: the gateway read from the DHCP reply on the tap, as 2.6 on Linux takes it (dhcprouter.py)
    assert _parse(BASE + "dev tap\nroute-gateway dhcp\n").route_gateway == "dhcp"
    assert _errors(BASE + "allow-pull-fqdn\nroute-gateway gw.example\ndev tap\n")[0].startswith(
        "/p/c.ovpn:7: route-gateway: route-gateway gw.example: on a tap device the routes' gateway must be")
    # a name without allow-pull-fqdn before it: 2.6.14 refuses the line (compat48)
    assert _errors(BASE + "route-gateway gw.example\ndev tap\n")[0].startswith(
        "/p/c.ovpn:6: route-gateway: gateway 'gw.example' must be an IPv4 address or dhcp (a name only after")


def test_other_device_types_are_refused():
    assert _errors(BASE + "dev-type foo\n") == ["/p/c.ovpn:6: dev-type: dev-type foo: only tun and tap are supported"]


@pytest.mark.parametrize("line, d", [("dev null\n", "dev"), ("dev-type null\n", "dev-type")])
def test_the_null_device_is_refused_with_why_and_what_to_use(line, d):
    """compat42: 2.6's `dev null` serves its own loopback self-tests; against a server that pushes
    an address Debian's 2.6 client exits ("Linux can't set mtu (1500) on null")."""
    (e,) = _errors(BASE + line)
    assert e.startswith(f"/p/c.ovpn:6: {d}: {d} null (OpenVPN's no-device mode"), e
    assert "Linux can't set mtu (1500) on null" in e and "dev tun" in e and "vpn-appliance bench" in e


def test_the_appliance_toml_refuses_a_tap_profile_before_start(tmp_path):
    """The VM's router mode (firewall, LAN routes and NAT by IP into a TUN) has no layer-2 form."""
    (tmp_path / "c.ovpn").write_text(BASE + "dev tap\n")
    toml = '[wan]\nname = "eth0"\ndhcp = true\n\n[vpn]\nrole = "client"\nconfig = "c.ovpn"\n'
    with pytest.raises(ConfigError) as ei:
        parse_appliance_config(toml, str(tmp_path / "appliance.toml"))
    assert f"{tmp_path / 'c.ovpn'}:6: dev: a tap (layer 2) device is not supported in the VM image" in str(ei.value)
    prof = tmp_path / "p.ovpn"
    prof.write_text("client\ndev tun\ndev-type tap\nremote 198.18.0.1\n<ca>\nx\n</ca>\n")
    with pytest.raises(ConfigError) as ei:
        import_profile(str(prof))
    assert str(ei.value).startswith(f"{prof}:3: dev-type: a tap (layer 2) device is not supported in the VM image")


def test_lladdr_sets_a_tap_devices_mac_address():
    assert _parse(BASE + "dev tap\nlladdr 02:00:5E:10:0:1\n").lladdr == "02:00:5e:10:00:01"
    assert _errors(BASE + "lladdr 02:00:5e:10:00:01\n") == [
        "/p/c.ovpn:6: lladdr: only a tap device has a MAC address (this profile's device is tun)"]
    assert _errors(BASE + "dev tap\nlladdr 01:00:5e:10:00:01\n")[0].startswith("/p/c.ovpn:7: lladdr: 01:00:5e:10:00:01 is a multicast")
    assert "not a MAC address" in _errors(BASE + "dev tap\nlladdr 02:00:5e:10:00\n")[0]
    assert "not a MAC address" in _errors(BASE + "dev tap\nlladdr 02:00:5e:10:00:zz\n")[0]
