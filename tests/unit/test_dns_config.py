"""`[lan] dns_forwarder`: on by default in the client role (a DnsForwarder among the LAN
observers), off on request, refused in the server role."""
import pytest

from appliance.config.schema import parse_appliance_config
from appliance.lan import lan_observers
from appliance.lan import dns_wire as w
from appliance.lan.dns_forwarder import DnsForwarder
from appliance.openvpn.config import ConfigErrors
from appliance.openvpn.errors import ConfigError

OVPN = "client\ndev tun\nremote 198.18.0.1 1194\n<ca>\nx\n</ca>\n"
TOML = ('[wan]\nname = "eth0"\ndhcp = true\n\n[lan]\nname = "eth1"\naddress = "198.18.50.1/24"\n{extra}\n'
        '[vpn]\nrole = "{role}"\nconfig = "client.ovpn"\n')


def load(tmp_path, extra="", role="client"):
    (tmp_path / "client.ovpn").write_text(OVPN)
    return parse_appliance_config(TOML.format(extra=extra, role=role), str(tmp_path / "appliance.toml"))


def test_default_on_in_the_client_role(tmp_path):
    cfg = load(tmp_path)
    assert cfg.lan.dns_forwarder is True
    (f,) = [o for o in lan_observers(cfg, "eth0", "eth1") if isinstance(o, DnsForwarder)]
    assert f.listen == ["198.18.50.1"] and f.lan_if == "eth1" and f.port == 53 and f.bind_device


def test_the_forwarder_knows_the_lans_networks_and_the_dhcp_leases(tmp_path):
    """What it answers itself (dns_local.py): the LAN's IPv4 network, its IPv6 /64, `[lan] routes`
    networks; lease names from the DHCP server of the same TOML."""
    import ipaddress
    from appliance.lan.dhcp_server import DhcpService
    cfg = load(tmp_path, 'address6 = "fd18:50::1/64"\nroutes = ["198.18.60.0/24 via 198.18.50.254"]\n'
                         'dhcp_range = ["198.18.50.100", "198.18.50.199"]')
    obs = lan_observers(cfg, "eth0", "eth1")
    (f,) = [o for o in obs if isinstance(o, DnsForwarder)]
    (d,) = [o for o in obs if isinstance(o, DhcpService)]
    zones = f.core.local
    assert zones.lan == [ipaddress.ip_network(n) for n in ("198.18.50.0/24", "fd18:50::/64", "198.18.60.0/24")]
    assert zones.leases is d


def test_the_profiles_own_routes_name_the_vpns_networks_too(tmp_path):
    """`route 10.8.0.0 255.255.0.0` in the profile (not pushed): the reverse zone of 10.8/16 is
    the VPN's servers' to answer, as a pushed route's is."""
    import ipaddress
    from appliance.gateway.observers import TunnelState
    from appliance.openvpn.config.model import Route, Route6
    from appliance.openvpn.keymethod import PushedOptions

    class Opts:
        route = [Route("10.8.0.0", "255.255.0.0", None, None), Route("0.0.0.0", "0.0.0.0", None, None)]
        route_ipv6 = [Route6("fd00:8::/32", None, None)]

    (f,) = [o for o in lan_observers(load(tmp_path), "eth0", "eth1", Opts()) if isinstance(o, DnsForwarder)]
    p = PushedOptions()
    p.routes = [("10.9.0.0", "255.255.0.0", None, None)]
    f.tunnel_changed(TunnelState(True, "x", None, p))
    rev = lambda a: w.parse_untrusted(w.encode_query(1, ipaddress.ip_address(a).reverse_pointer, 12)).question.name  # noqa: E731
    assert [f.core.local.answer(rev(a), 12) for a in ("10.8.1.1", "10.9.1.1", "fd00:8::1")] == [None] * 3
    assert f.core.local.answer(rev("10.10.1.1"), 12)[0] == w.NXDOMAIN


def test_off_on_request(tmp_path):
    cfg = load(tmp_path, "dns_forwarder = false")
    assert not [o for o in lan_observers(cfg, "eth0", "eth1") if isinstance(o, DnsForwarder)]


def test_refused_in_the_server_role_with_its_line(tmp_path):
    with pytest.raises(ConfigError) as ei:
        load(tmp_path, "dns_forwarder = true", role="server")
    errs = [str(x) for x in (ei.value.errors if isinstance(ei.value, ConfigErrors) else [ei.value])]
    assert any(e.startswith(f"{tmp_path / 'appliance.toml'}:8: lan.dns_forwarder: ") for e in errs), errs


def test_rebinding_protection_on_by_default_with_the_lans_networks_off_and_allowed_domains_on_request(tmp_path):
    """`dns_rebind_protection` (default true) and `dns_rebind_allow` (dns_rebind.py); a bad
    domain name fails the load with its line."""
    import ipaddress
    (f,) = [o for o in lan_observers(load(tmp_path, 'address6 = "fd18:50::1/64"'), "eth0", "eth1")
            if isinstance(o, DnsForwarder)]
    rb = f.core.rebind
    assert rb is not None and rb.protected(ipaddress.ip_address("198.18.50.77").packed)
    assert rb.protected(ipaddress.ip_address("fd18:50::9").packed)
    assert not rb.protected(ipaddress.ip_address("10.1.2.3").packed) and not rb.allowed(w.encode_query(1, "x")[12:-4])
    (f,) = [o for o in lan_observers(load(tmp_path, 'dns_rebind_allow = ["NAS.example.com"]'), "eth0", "eth1")
            if isinstance(o, DnsForwarder)]
    assert f.core.rebind.allowed(w.encode_query(1, "a.nas.example.com")[12:-4])
    (f,) = [o for o in lan_observers(load(tmp_path, "dns_rebind_protection = false"), "eth0", "eth1")
            if isinstance(o, DnsForwarder)]
    assert f.core.rebind is None
    with pytest.raises(ConfigError) as ei:
        load(tmp_path, 'dns_rebind_allow = ["not a name!"]')
    errs = [str(x) for x in (ei.value.errors if isinstance(ei.value, ConfigErrors) else [ei.value])]
    assert any(e.startswith(f"{tmp_path / 'appliance.toml'}:8: lan.dns_rebind_allow: ") for e in errs), errs


def test_rebinding_keys_without_the_forwarder_are_refused_with_their_line(tmp_path):
    for extra in ("dns_forwarder = false\ndns_rebind_protection = true", 'dns_forwarder = false\ndns_rebind_allow = ["a.b"]'):
        with pytest.raises(ConfigError) as ei:
            load(tmp_path, extra)
        errs = [str(x) for x in (ei.value.errors if isinstance(ei.value, ConfigErrors) else [ei.value])]
        assert any(e.startswith(f"{tmp_path / 'appliance.toml'}:9: lan.dns_rebind_") for e in errs), errs
    assert load(tmp_path, "dns_forwarder = false\ndns_rebind_protection = false").lan.dns_rebind_protection is False
