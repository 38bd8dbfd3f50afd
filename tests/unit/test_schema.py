"""The appliance TOML: what a user writes, what the appliance resolves, and where errors point."""
from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from appliance.config.schema import check_file, load_appliance_config, parse_appliance_config
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.config import ConfigErrors
from lab.pki import make_pki

CLIENT_OVPN = """\
client
dev tun
dev tun
proto udp
remote 198.18.0.1 1194
<ca>
-----BEGIN CERTIFICATE-----
MIIB
-----END CERTIFICATE-----
</ca>
"""

FULL = """\
[appliance]
hostname = "vpn-gw"
log_level = "debug"

[wan]
name = "eth0"
address = "198.18.0.2/24"
gateway = "198.18.0.1"
dns = ["198.18.0.1", "198.18.0.53"]

[lan]
mac = "52:54:00:AB:34:56"
address = "198.18.50.1/24"
nat = false

[vpn]
role = "client"
config = "client.ovpn"
"""


def write(d: Path, toml: str, ovpn: str | None = CLIENT_OVPN) -> str:
    if ovpn is not None:
        (d / "client.ovpn").write_text(ovpn)
    p = d / "appliance.toml"
    p.write_text(toml)
    return str(p)


def errors_of(path: str) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        load_appliance_config(path)
    e = ei.value
    return [str(x) for x in (e.errors if isinstance(e, ConfigErrors) else [e])]


def test_full_router_config_resolves_every_key(tmp_path):
    cfg = load_appliance_config(write(tmp_path, FULL))
    assert cfg.appliance.hostname == "vpn-gw" and cfg.appliance.log_level == "debug"
    assert cfg.wan.name == "eth0" and cfg.wan.mac is None and not cfg.wan.dhcp
    assert cfg.wan.address == ipaddress.IPv4Interface("198.18.0.2/24")
    assert cfg.wan.gateway == ipaddress.IPv4Address("198.18.0.1")
    assert [str(d) for d in cfg.wan.dns] == ["198.18.0.1", "198.18.0.53"]
    assert cfg.lan.mac == "52:54:00:ab:34:56" and cfg.lan.name is None and cfg.lan.nat is False
    assert cfg.vpn.role == "client" and cfg.vpn.config == str(tmp_path / "client.ovpn")
    assert cfg.vpn_options.role == "client"
    assert [(r.host, r.port, r.proto) for r in cfg.vpn_options.remotes] == [("198.18.0.1", 1194, "udp")]
    assert cfg.tun_name == "tun0"  # `dev tun` gets a fixed name so the firewall rules can name it


def test_minimal_dhcp_config_has_defaults_and_no_lan(tmp_path):
    cfg = load_appliance_config(write(tmp_path, '[wan]\nname = "eth0"\ndhcp = true\n'
                                                 '[vpn]\nrole = "client"\nconfig = "client.ovpn"\n'))
    assert cfg.wan.dhcp and cfg.wan.address is None and cfg.lan is None
    assert cfg.appliance.hostname == "vpn-appliance" and cfg.appliance.log_level == "info"


def test_explicit_dev_name_is_kept(tmp_path):
    cfg = load_appliance_config(write(tmp_path, FULL, CLIENT_OVPN.replace("dev tun\n", "dev tun7\n")))
    assert cfg.tun_name == "tun7"


def test_inline_config_lines_map_onto_the_toml(tmp_path):
    toml = textwrap.dedent("""\
        [wan]
        name = "eth0"
        dhcp = true

        [vpn]
        role = "client"
        inline = '''
        client
        remote 198.18.0.1 1194
        frobnicate yes
        <ca>
        x
        </ca>
        dev tun
        '''
        """)
    p = write(tmp_path, toml, None)
    # `inline = '''` is line 7; inline line 3 (`frobnicate yes`) is TOML line 10.
    assert errors_of(p) == [f"{p}:10: frobnicate: unknown or unsupported directive"]
    cfg = parse_appliance_config(toml.replace("frobnicate yes\n", ""), p)
    assert cfg.vpn.inline.startswith("client\n") and cfg.vpn.inline_line == 7
    assert cfg.vpn_options.source["remotes"] == (p, 9)


def test_errors_in_the_ovpn_file_keep_its_own_file_and_line(tmp_path):
    p = write(tmp_path, FULL, CLIENT_OVPN.replace("proto udp", "proto sctp"))
    assert errors_of(p) == [f"{tmp_path / 'client.ovpn'}:4: proto: unknown protocol sctp"]


def test_toml_syntax_error_points_at_its_line(tmp_path):
    p = write(tmp_path, '[wan]\nname = "eth0"\naddress = 198.18.0.2/24\n')
    (err,) = errors_of(p)
    assert err.startswith(f"{p}:3: TOML syntax: ")


def test_all_problems_are_reported_together_with_their_lines(tmp_path):
    toml = textwrap.dedent("""\
        [appliance]
        hostname = "vpn gw"
        log_level = "loud"
        colour = "blue"

        [wan]
        name = "eth0"
        mac = "52:54:00:12:34:56"
        address = "198.18.0.300/24"
        dhcp = true
        dns = "198.18.0.1"

        [lan]
        name = 1
        address = "198.18.50.1"
        nat = "yes"

        [vpn]
        role = "server"
        config = "client.ovpn"

        [extra]
        x = 1
        """)
    p = write(tmp_path, toml)
    assert errors_of(p) == [
        f"{p}:2: appliance.hostname: not a valid hostname: 'vpn gw'",
        f"{p}:3: appliance.log_level: 'loud' is not one of error|warning|info|debug",
        f"{p}:4: appliance.colour: unknown key (allowed in [appliance]: hostname, log_level, status_interval)",
        f"{p}:6: [wan]: give exactly one of `name` (like \"eth0\") or `mac` (like \"52:54:00:12:34:56\")",
        f"{p}:9: wan.address: not an IPv4 address with prefix length: '198.18.0.300/24'",
        f"{p}:10: wan.dhcp: give either `address` or `dhcp = true`, not both",
        f"{p}:11: wan.dns: expected a list of addresses like [\"198.18.0.1\"], got string '198.18.0.1'",
        f"{p}:14: lan.name: expected a string, got integer 1",
        f"{p}:15: lan.address: '198.18.50.1' needs a prefix length, like \"198.18.0.2/24\"",
        f"{p}:16: lan.nat: expected true or false, got string 'yes'",
        f"{p}:19: vpn.role: role is 'server' but the OpenVPN config is a client config",
        f"{p}:22: [extra]: unknown section (expected one of: appliance, wan, lan, vpn)",
    ]


def test_missing_pieces_are_named(tmp_path):
    p = write(tmp_path, '[wan]\nname = "eth0"\n\n[vpn]\nconfig = "client.ovpn"\ninline = "client"\n')
    assert errors_of(p) == [
        f"{p}:1: [wan]: needs `address = \"A.B.C.D/LEN\"` (with `gateway`) or `dhcp = true`",
        f"{p}:4: [vpn]: needs `role = \"client\"` or `role = \"server\"`",
        f"{p}:4: [vpn]: give exactly one of `config = \"client.ovpn\"` or `inline = '''...'''`",
    ]
    p = write(tmp_path, '[appliance]\nhostname = "x"\n')
    assert errors_of(p) == [f"{p}: [wan]: missing [wan] section (the uplink NIC)",
                            f"{p}: [vpn]: missing [vpn] section (role and OpenVPN config)"]


def test_gateway_and_lan_must_fit_the_wan(tmp_path):
    toml = FULL.replace('gateway = "198.18.0.1"', 'gateway = "198.19.0.1"') \
               .replace('mac = "52:54:00:AB:34:56"', 'name = "eth0"').replace("198.18.50.1/24", "198.18.0.9/16")
    p = write(tmp_path, toml)
    assert errors_of(p) == [
        f"{p}:8: wan.gateway: 198.19.0.1 is not inside 198.18.0.0/24",
        f"{p}:12: lan.name: the LAN must be a different NIC from the WAN",
        f"{p}:13: lan.address: 198.18.0.0/16 overlaps the WAN network 198.18.0.0/24",
    ]


def test_unreadable_ovpn_file_is_reported_on_the_config_key(tmp_path):
    p = write(tmp_path, FULL.replace("client.ovpn", "missing.ovpn"))
    assert errors_of(p) == [f"{p}:18: vpn.config: cannot read missing.ovpn: No such file or directory"]


def test_an_ovpn_file_that_is_a_pipe_is_refused_on_the_config_key_not_waited_on(tmp_path):
    """A FIFO named by mistake as [vpn] config: its open() waited for a writer, the start hung
    without a word (and /dev/zero grew the process without end)."""
    import os
    from tests.unit.test_config_files_not_pipes import _bounded
    fifo = tmp_path / "fifo.ovpn"
    os.mkfifo(fifo)
    p = write(tmp_path, FULL.replace("client.ovpn", "fifo.ovpn"))
    blocked, out = _bounded(lambda: errors_of(p), fifo)
    assert not blocked, "the start waited for a writer on the profile's FIFO"
    assert out == [[f"{p}:18: vpn.config: cannot read fifo.ovpn: not a regular file "
                    "(a pipe or device would block or never end)"]]


def test_bad_mac_and_interface_name(tmp_path):
    toml = FULL.replace('name = "eth0"', 'name = "a-very-long-interface-name"').replace(
        'mac = "52:54:00:AB:34:56"', 'mac = "52:54:00:ab:34"')
    p = write(tmp_path, toml)
    assert errors_of(p) == [
        f"{p}:6: wan.name: not an interface name (1-15 letters, digits, . _ - @): 'a-very-long-interface-name'",
        f"{p}:12: lan.mac: not a MAC address like 52:54:00:12:34:56: '52:54:00:ab:34'",
    ]


@pytest.mark.openvpn   # make_pki makes the static keys with openvpn --genkey
def test_check_file_prints_a_summary_or_the_errors(tmp_path, capsys):
    pki = make_pki(tmp_path / "pki", ["c1"])
    crt, key = pki.clients["c1"]
    ovpn = (f"client\ndev tun\nremote 198.18.0.1 1194 udp\nca {pki.ca}\ncert {crt}\nkey {key}\n"
            "remote-cert-tls server\n")
    p = write(tmp_path, FULL, ovpn)
    assert check_file(p) == 0
    out = capsys.readouterr().out
    assert f"{p}: ok" in out
    assert "wan: name eth0, address 198.18.0.2/24, gateway 198.18.0.1, dns 198.18.0.1, 198.18.0.53" in out
    assert "lan: mac 52:54:00:ab:34:56, address 198.18.50.1/24, routed" in out
    assert "remote 198.18.0.1 1194 udp" in out and "tun tun0" in out
    # every TOML key with the line it came from, then every OpenVPN setting likewise
    assert f"wan.gateway = 198.18.0.1   # {p}:8: default gateway for a static address" in out
    assert "wan.dhcp = false   # (default)" in out and f"lan.nat = false   # {p}:14:" in out
    assert f"remote-cert-tls = server   # {tmp_path / 'client.ovpn'}:7" in out

    p = write(tmp_path, FULL.replace('log_level = "debug"', 'log_level = 3'), ovpn)
    assert check_file(p) == 2
    assert capsys.readouterr().err.strip() == f"{p}:3: appliance.log_level: expected a string, got integer 3"


def test_check_file_reports_undecodable_key_material(tmp_path, capsys):
    p = write(tmp_path, FULL)  # the CA in CLIENT_OVPN is not a certificate
    assert check_file(p) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{tmp_path / 'client.ovpn'}:") and "certificate" in err


def test_scripts_are_refused_in_the_appliance_toml_with_the_line(tmp_path):
    """The VM image runs no scripts: client-connect in its OpenVPN config is an error at its line
    (in this client profile also because it is a server directive)."""
    ovpn = CLIENT_OVPN + "script-security 2\nclient-connect /usr/local/bin/cc\n"
    p = write(tmp_path, FULL, ovpn)
    errs = errors_of(p)
    assert any("client.ovpn:12: client-connect: " in e for e in errs), errs


def test_lan_routes_load_and_bad_ones_fail_with_their_line(tmp_path):
    """`[lan] routes`: networks behind a LAN router (with its gateway) or on the LAN's link."""
    ok = FULL.replace("nat = false", 'nat = false\naddress6 = "fd18:50::1/64"\nroutes = ["198.18.60.0/24 via 198.18.50.254", '
                      '"198.18.61.0/24", "fd18:60::/64 via fe80::1", "fd18:61::/64 via fd18:50::fe"]')
    cfg = load_appliance_config(write(tmp_path, ok))
    assert [str(r) for r in cfg.lan.routes] == ["198.18.60.0/24 via 198.18.50.254", "198.18.61.0/24",
                                                "fd18:60::/64 via fe80::1", "fd18:61::/64 via fd18:50::fe"]
    assert cfg.lan.routes[1].gateway is None
    bad = ["198.18.60.1/24", "198.18.60.0", "0.0.0.0/0", "224.0.0.0/4", "127.0.0.0/8", "10.0.0.0/8 dev eth1",
           "198.18.50.128/25", "198.18.0.0/16", "198.18.62.0/24 via 198.18.60.1", "198.18.63.0/24 via 198.18.50.1",
           "198.18.64.0/24 via 198.18.50.255", "198.18.64.0/24 via fe80::1", "198.18.65.0/24", "198.18.65.128/25",
           "fd18:62::/64 via fd18:63::1", "not a net", 7]
    text = FULL.replace("nat = false", 'nat = false\naddress6 = "fd18:50::1/64"\nroutes = [\n'
                        + "".join(f"  {x!r},\n".replace("'", '"') if isinstance(x, str) else f"  {x},\n" for x in bad) + "]")
    p = write(tmp_path, text)
    errs = errors_of(p)
    assert all(e.startswith(f"{p}:16: lan.routes: ") for e in errs), errs
    whys = [e.split("lan.routes: ", 1)[1] for e in errs]
    for want in ["198.18.60.1/24 has host bits set", "'198.18.60.0' needs a prefix length",
                 "0.0.0.0/0 is every address", "224.0.0.0/4 overlaps 224.0.0.0/4 (multicast)",
                 "127.0.0.0/8 overlaps 127.0.0.0/8 (loopback)", "is not \"NETWORK/LEN\"",
                 "198.18.50.128/25 overlaps the LAN network 198.18.50.0/24",
                 "198.18.0.0/16 overlaps the LAN network", "198.18.0.0/16 overlaps the WAN network 198.18.0.0/24",
                 "198.18.62.0/24 via 198.18.60.1: the gateway must be a host of the LAN network",
                 "198.18.63.0/24 via 198.18.50.1: the gateway must be", "198.18.64.0/24 via 198.18.50.255: the gateway",
                 "not an IPv4 address: 'fe80::1'", "198.18.65.128/25 overlaps 198.18.65.0/24, given before",
                 "fd18:62::/64 via fd18:63::1: the gateway must be link-local", "not a network: 'not a network'"[:14],
                 "expected strings like"]:
        assert any(want in w for w in whys), (want, whys)
    p = write(tmp_path, FULL.replace("nat = false", 'ipv6 = false\nroutes = ["fd18:60::/64"]'))
    assert errors_of(p) == [f"{p}:15: lan.routes: fd18:60::/64: IPv6 with `ipv6 = false`"]


def test_a_wan_dhcp_lease_may_not_overlap_the_lan_networks(tmp_path):
    """What the WAN's DHCP client is told to refuse (boot/dhcp_client.py `avoid`): the LAN's IPv4
    network and `[lan] routes`, as the config refuses them for a static WAN address."""
    from appliance.run_toml import lan_networks4
    text = FULL.replace("nat = false", 'nat = false\nroutes = ["198.18.60.0/24 via 198.18.50.254", "fd18:60::/64 via fe80::1"]'
                        '\naddress6 = "fd18:50::1/64"')
    cfg = load_appliance_config(write(tmp_path, text))
    assert lan_networks4(cfg) == [cfg.lan.address.network, ipaddress.IPv4Network("198.18.60.0/24")]
