"""The IPv6 keys of the appliance TOML (each error with its line), the stable ULA, and which
remotes `run appliance.toml` pins for the kill switch (families by proto and by the WAN's IPv6)."""
from __future__ import annotations

import ipaddress
import socket

import pytest

from appliance.config.schema import parse_appliance_config
from appliance.openvpn.config import Options, Remote
from appliance.openvpn.errors import ConfigError
from appliance.router.nics import stable_ula
from appliance.run_toml import resolve_remotes


@pytest.fixture(scope="module")
def vpn(tmp_path_factory) -> str:
    from lab.pki import make_pki
    pki = make_pki(tmp_path_factory.mktemp("pki"), ["c"])
    crt, key = pki.clients["c"]
    return ("[vpn]\nrole = \"client\"\ninline = '''\nclient\ndev tun\nremote 198.18.0.1\n"
            f"ca {pki.ca}\ncert {crt}\nkey {key}\n'''\n")


def load(vpn: str, wan: str = "", lan: str | None = ""):
    text = f'[wan]\nname = "eth0"\naddress = "198.18.0.2/24"\n{wan}\n'
    if lan is not None:
        text += f'[lan]\nname = "eth1"\naddress = "198.18.50.1/24"\n{lan}\n'
    return parse_appliance_config(text + vpn, "a.toml")


def error(vpn: str, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        load(vpn, **kw)
    return str(e.value)


def test_ipv6_keys_load(vpn):
    c = load(vpn, wan='address6 = "2001:db8:18::2/64"\ngateway6 = "2001:db8:18::1"', lan='address6 = "fd18:50::1/64"')
    assert c.wan.address6 == ipaddress.IPv6Interface("2001:db8:18::2/64")
    assert c.wan.gateway6 == ipaddress.IPv6Address("2001:db8:18::1") and not c.wan.slaac
    assert c.lan.address6 == ipaddress.IPv6Interface("fd18:50::1/64") and c.lan.ipv6
    assert load(vpn, wan="slaac = true").wan.slaac
    assert load(vpn, wan='address6 = "2001:db8:18::2/64"\ngateway6 = "fe80::1"').wan.gateway6.is_link_local


@pytest.mark.parametrize("wan,lan,want", [
    ('address6 = "2001:db8:18::2/64"\nslaac = true', "", "a.toml:5: wan.slaac: give either `address6` or `slaac = true`"),
    ('address6 = "2001:db8:18::2/64"\ngateway6 = "2001:db8:99::1"', "",
     "a.toml:5: wan.gateway6: 2001:db8:99::1 is not inside 2001:db8:18::/64"),
    ('address6 = "2001:db8:18::2/64"\ngateway6 = "2001:db8:18::2"', "", "wan.gateway6: 2001:db8:18::2 is the WAN address itself"),
    ('slaac = true\ngateway6 = "fe80::1"', "", "a.toml:5: wan.gateway6: needs `address6`"),
    ('address6 = "2001:db8:18::2"', "", "a.toml:4: wan.address6: '2001:db8:18::2' needs a prefix length"),
    ('address6 = "198.18.0.9/24"', "", "wan.address6: not an IPv6 address with prefix length"),
    ('address6 = "fe80::2/64"', "", "wan.address6: fe80::2 is not a unicast address a NIC can be given"),
    ('gateway6 = "ff02::1"\naddress6 = "2001:db8:18::2/64"', "", "wan.gateway6: ff02::1 is not a unicast address"),
    ("", 'address6 = "fd18:50::1/48"', "a.toml:8: lan.address6: the LAN prefix must be a /64"),
    ('address6 = "2001:db8:18::2/64"', 'address6 = "2001:db8:18::5/64"', "lan.address6: 2001:db8:18::/64 overlaps the WAN"),
    ("", 'address6 = "fd18:50::1/64"\nipv6 = false', "lan.address6: not used with `ipv6 = false`"),
])
def test_ipv6_key_errors_name_the_line(vpn, wan, lan, want):
    assert want in error(vpn, wan=wan, lan=lan)


def test_stable_ula_is_a_ula_per_mac_and_stable():
    a, b = stable_ula("52:54:00:12:34:56"), stable_ula("52:54:00:12:34:57")
    assert a == stable_ula("52:54:00:12:34:56".upper()), "same NIC, same prefix on every boot"
    assert a.network != b.network and a.network.prefixlen == 64 and a.ip == a.network.network_address + 1
    assert a.ip in ipaddress.ip_network("fd00::/8") and b.ip in ipaddress.ip_network("fd00::/8")


def fake_getaddrinfo(table: dict[str, list[str]]):
    def gai(host, port, family, type_):
        if host not in table:
            raise socket.gaierror(-2, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, type_, 0, "", (a, port)) for a in table[host]]
    return gai


def opts(*remotes: Remote, family: str | None = None) -> Options:
    o = Options()
    o.remotes = list(remotes)
    o.proto_family = family
    return o


NAMES = {"vpn.test": ["2001:db8:18::1", "198.18.0.1"], "v6.test": ["2001:db8:18::7"], "v4.test": ["198.18.0.9"]}


def test_remotes_of_both_families_ipv4_first_when_the_wan_has_ipv6():
    o = opts(Remote("vpn.test", 1194, "udp"), Remote("v6.test", 443, "tcp"), Remote("gone.test", 1, "udp"))
    eps = resolve_remotes(o, True, fake_getaddrinfo(NAMES))
    assert [(e.address, e.port, e.proto) for e in eps] == [
        ("198.18.0.1", 1194, "udp"), ("2001:db8:18::1", 1194, "udp"), ("2001:db8:18::7", 443, "tcp")]
    assert [r.host for r in o.remotes] == ["198.18.0.1", "2001:db8:18::1", "2001:db8:18::7"], "pinned"


def test_ipv6_remotes_are_skipped_without_ipv6_on_the_wan():
    o = opts(Remote("vpn.test", 1194, "udp"), Remote("v6.test", 443, "tcp"))
    assert [e.address for e in resolve_remotes(o, False, fake_getaddrinfo(NAMES))] == ["198.18.0.1"]
    with pytest.raises(RuntimeError, match="IPv4 only: the WAN has no IPv6"):
        resolve_remotes(opts(Remote("v6.test", 1194, "udp")), False, fake_getaddrinfo(NAMES))


def test_proto_udp6_and_udp4_choose_the_family():
    six = opts(Remote("vpn.test", 1194, "udp"), Remote("v4.test", 1194, "udp"), family="6")
    assert [e.address for e in resolve_remotes(six, True, fake_getaddrinfo(NAMES))] == ["2001:db8:18::1"]
    four = opts(Remote("vpn.test", 1194, "udp"), family="4")
    assert [e.address for e in resolve_remotes(four, True, fake_getaddrinfo(NAMES))] == ["198.18.0.1"]
    with pytest.raises(RuntimeError, match="udp6/tcp6.*`address6` or `slaac = true`"):
        resolve_remotes(opts(Remote("vpn.test", 1194, "udp"), family="6"), False, fake_getaddrinfo(NAMES))


def test_ipv6_forwarding_keeps_the_hosts_own_slaac_and_undoes_it(tmp_path):
    """all/forwarding = 1 makes every interface ignore RAs unless accept_ra = 2: a host's uplinks
    taking RAs (1) are moved to 2 for the run and back on exit; others are left alone."""
    from appliance.router.nics import Undo, keep_host_slaac
    for name, v in (("all", "1"), ("default", "1"), ("lo", "1"), ("wlan0", "1"), ("eth9", "0"), ("wan0", "2")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "accept_ra").write_text(v + "\n")
    undo = Undo()
    keep_host_slaac(undo, str(tmp_path))
    now = {p.name: (p / "accept_ra").read_text().strip() for p in tmp_path.iterdir()}
    assert now == {"all": "1", "default": "1", "lo": "1", "wlan0": "2", "eth9": "0", "wan0": "2"}
    undo.run()
    assert (tmp_path / "wlan0" / "accept_ra").read_text().strip() == "1"


def test_a_remotes_own_udp6_or_udp4_chooses_its_family():
    o = opts(Remote("vpn.test", 1194, "udp", "6"), Remote("vpn.test", 1195, "udp", "4"),
             Remote("vpn.test", 1196, "udp", ""), family="4")
    eps = resolve_remotes(o, True, fake_getaddrinfo(NAMES))
    assert [(e.address, e.port) for e in eps] == [
        ("2001:db8:18::1", 1194), ("198.18.0.1", 1195), ("198.18.0.1", 1196), ("2001:db8:18::1", 1196)]
    assert [r.family for r in o.remotes] == ["6", "4", "", ""], "pinned remotes keep their family"
    with pytest.raises(RuntimeError, match="udp6/tcp6.*`address6` or `slaac = true`"):
        resolve_remotes(opts(Remote("vpn.test", 1194, "udp", "6")), False, fake_getaddrinfo(NAMES))
