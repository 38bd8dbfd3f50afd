"""dev tap in a server config: what OpenVPN 2.6's helper.c makes of `server` and `server-bridge`
for a TAP device (pool, pushes, the device's address), and what it refuses, with file:line."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.layer2 import layer2_pool, tap_address

HEAD = "tls-server\ndh none\n<ca>\nX\n</ca>\n<cert>\nX\n</cert>\n<key>\nX\n</key>\n"   # 11 lines


def _no_files(path: str) -> bytes:
    raise AssertionError(path)


def parse(text: str):
    return parse_config(HEAD + text, "/p/s.conf", _no_files)


def errors(text: str) -> list[ConfigError]:
    with pytest.raises(ConfigError) as ei:
        parse(text)
    return list(getattr(ei.value, "errors", [ei.value]))


def test_server_with_tap_expands_as_2_6():
    o = parse("dev tap\nserver 198.19.0.0 255.255.255.0\n")
    assert (o.role, o.dev_type, o.tun_mtu_extra) == ("server", "tap", 32)     # 2.6's tap default
    pool, push = layer2_pool(o, ["ping 5"])
    assert push == ["ping 5", "route-gateway 198.19.0.1"]
    assert pool.lease() == "198.19.0.2" and pool.ifconfig_push("198.19.0.2") == "ifconfig 198.19.0.2 255.255.255.0"
    assert pool.in_range("198.19.0.254") and not pool.in_range("198.19.0.255")
    assert tap_address(o) == ("198.19.0.1", 24)


def test_dev_type_wins_over_the_name_wherever_it_stands():
    assert parse("dev-type tap\ndev vpn0\nserver 198.19.0.0 255.255.255.0\n").dev_type == "tap"
    assert parse("dev tap0\ndev-type tun\nserver 198.19.0.0 255.255.255.0\n").dev_type == "tun"


def test_server_bridge_with_a_pool():
    o = parse("dev tap0\nserver-bridge 198.19.1.1 255.255.255.0 198.19.1.100 198.19.1.110\n")
    assert o.role == "server" and o.tls_server
    pool, push = layer2_pool(o, [])
    assert push == ["route-gateway 198.19.1.1"]
    assert pool.lease() == "198.19.1.100" and pool.in_range("198.19.1.110") and not pool.in_range("198.19.1.111")
    assert tap_address(o) is None                       # a bridge port: no address of its own


@pytest.mark.parametrize("line,push", [("server-bridge", ["route-gateway dhcp"]), ("server-bridge nogw", [])])
def test_server_bridge_without_a_pool_leaves_addresses_to_dhcp(line, push):
    o = parse(f"dev tap\n{line}\n")
    assert layer2_pool(o, []) == (None, push)


def test_mode_server_by_hand():
    o = parse("mode server\ndev tap\nifconfig-pool 198.19.2.10 198.19.2.20 255.255.255.0\n")
    pool, push = layer2_pool(o, [])
    assert push == [] and pool.lease() == "198.19.2.10"
    assert layer2_pool(parse("mode server\ndev tap\n"), []) == (None, [])


@pytest.mark.parametrize("text,line,directive,why", [
    ("dev tun\nserver-bridge\n", 13, "server-bridge", "only makes sense with dev tap"),
    ("dev tap\nserver 198.19.0.0 255.255.255.0\nserver-bridge\n", 14, "server-bridge", "cannot be used together"),
    ("dev tap\nserver 198.19.0.0 255.255.255.252\nserver 198.19.0.0 255.255.255.254\n", 14, "server", "/30"),
    ("dev tap\nserver-bridge 198.19.1.1 255.255.255.0 198.19.2.1 198.19.2.9\n", 13, "server-bridge", "not in the subnet"),
    ("dev tap\nserver-bridge 198.19.1.1 255.255.255.0 198.19.1.9 198.19.1.1\n", 13, "server-bridge", "after its end"),
    ("dev tap\nserver-bridge 1 2\n", 13, "server-bridge", "expects"),
    ("dev tap\nserver-bridge 198.19.1.1 255.255.255.0 198.19.1.2 198.19.1.9\nifconfig-pool 198.19.1.2 198.19.1.3\n",
     14, "ifconfig-pool", "already defines the pool"),
    ("dev tap\nmode server\nifconfig-pool 198.19.1.2 198.19.1.3\n", 14, "ifconfig-pool", "needs its netmask"),
    # fuzz49 (layer2-config): 2.6.14's helper.c refuses a `server` network wider than a /16 and a
    # server-bridge pool of more than 65,536 addresses; ours built a pool of 16.7 million at start
    # (107 s of CPU and gigabytes, for tun and tap alike).
    ("dev tap\nserver 10.0.0.0 255.0.0.0\n", 13, "server", "too many host addresses"),
    ("dev tun\nserver 198.18.0.0 255.254.0.0\n", 13, "server", "subnet must be 255.255.0.0 (/16) or higher"),
    ("dev tap\nserver-bridge 10.0.0.1 255.0.0.0 10.0.0.2 10.255.255.254\n", 13, "server-bridge",
     "at most 65536 addresses"),
])
def test_refused_with_file_and_line(text, line, directive, why):
    errs = [e for e in errors(text) if e.directive == directive]
    assert errs and errs[0].line == line and errs[0].path == "/p/s.conf" and why in str(errs[0]), errors(text)


def test_a_client_with_dev_tap_is_a_tap_client():
    o = parse_config("client\nremote 198.18.0.1\ndev tap\n<ca>\nX\n</ca>\n", "/p/c.ovpn", _no_files)
    assert (o.role, o.dev_type, o.tun_mtu_extra) == ("client", "tap", 32)


def test_the_appliance_toml_refuses_a_tap_server_at_its_line():
    """The VM routes between its LAN and a TUN device (its firewall names it): a layer-2 server is
    refused before anything starts, at the profile's dev line, pointing to a host run."""
    from appliance.config.schema import parse_appliance_config
    profile = HEAD + "dev tap\nserver 198.19.0.0 255.255.255.0\n"
    text = ('[wan]\nname = "eth0"\naddress = "198.18.0.2/24"\ngateway = "198.18.0.1"\n\n'
            f'[vpn]\nrole = "server"\ninline = """\n{profile}"""\n')
    with pytest.raises(ConfigError) as ei:
        parse_appliance_config(text, "/c/appliance.toml")
    msgs = [str(e) for e in getattr(ei.value, "errors", [ei.value])]
    line = text.split('inline = """\n', 1)[0].count("\n") + 1 + 12
    assert any(m.startswith(f"/c/appliance.toml:{line}: dev: ") and "vpn-appliance run FILE" in m for m in msgs), msgs


def test_a_reload_cannot_switch_between_tun_and_tap():
    """The device and the data path are made at start: a reload that turns a tun server into a tap
    one (or back) is told so and keeps what runs -- never a TUN server with the switch's rules
    (which skip the IP source check) or the reverse."""
    from appliance.gateway.ops import restart_only_changes
    old = parse("dev tun\nserver 198.19.0.0 255.255.255.0\n")
    new = parse("dev tap\nserver 198.19.0.0 255.255.255.0\n")
    warnings = restart_only_changes(old, new)
    assert any("dev-type: changed; takes effect at restart" in w for w in warnings), warnings
    assert (new.dev_type, new.dev) == ("tun", "tun")


def test_vlan_tagging_as_2_6_reads_it():
    from appliance.openvpn.settings import server_settings
    o = parse("dev tap\nserver 198.19.0.0 255.255.255.0\nvlan-tagging\nvlan-accept tagged\nvlan-pvid 7\n")
    assert (o.vlan_tagging, o.vlan_accept, o.vlan_pvid) == (True, "tagged", 7)
    assert parse("dev tap\nserver-bridge\nvlan-tagging\n").vlan_accept == "all"
    assert server_settings(o).vlan == ("tagged", 7)
    assert server_settings(parse("dev tap\nserver 198.19.0.0 255.255.255.0\n")).vlan is None


@pytest.mark.parametrize("text, want", [
    ("dev tun\nserver 198.19.0.0 255.255.255.0\nvlan-tagging\n", "14: vlan-tagging: must be used with --dev tap"),
    ("dev tap\nserver 198.19.0.0 255.255.255.0\nvlan-accept tagged\n", "14: vlan-accept: requires --vlan-tagging"),
    ("dev tap\nserver 198.19.0.0 255.255.255.0\nvlan-pvid 5\n", "14: vlan-pvid: requires --vlan-tagging"),
    ("dev tap\nserver 198.19.0.0 255.255.255.0\nvlan-tagging\nvlan-pvid 4095\n", "15: vlan-pvid: 4095 out of range 1..4094"),
    ("dev tap\nserver 198.19.0.0 255.255.255.0\nvlan-tagging\nvlan-accept some\n",
     "15: vlan-accept: --vlan-accept must be 'tagged', 'untagged' or 'all'"),
])
def test_vlan_lines_2_6_refuses_are_refused_at_their_line(text, want):
    errs = errors(text)
    assert any(str(e).startswith(f"/p/s.conf:{want}") for e in errs), [str(e) for e in errs]


def test_a_client_profile_with_vlan_tagging_is_refused():
    with pytest.raises(ConfigError) as ei:
        parse_config("client\nremote 198.18.0.1\ndev tap\n<ca>\nX\n</ca>\nvlan-tagging\n", "/p/c.ovpn", _no_files)
    assert "vlan-tagging" in str(ei.value) and "/p/c.ovpn:7" in str(ei.value)


def test_a_ccd_vlan_pvid():
    from appliance.openvpn.config.ccd import parse_ccd
    assert parse_ccd("ifconfig-push 198.19.0.9 255.255.255.0\nvlan-pvid 5\n", "/ccd/client1").vlan_pvid == 5
    for bad in ("0", "4095", "x", "99999999999"):
        with pytest.raises(ConfigError) as ei:
            parse_ccd(f"vlan-pvid {bad}\n", "/ccd/client1")
        assert str(ei.value).startswith("/ccd/client1:1: vlan-pvid: the VLAN id must be 1..4094")


def test_the_widest_pools_2_6_takes_are_taken():
    """The bounds of the refusals above, which 2.6.14 takes: a /16 `server`, 65,536 addresses."""
    pool, _ = layer2_pool(parse("dev tap\nserver 10.0.0.0 255.255.0.0\n"), [])
    assert pool.in_range("10.0.255.254") and not pool.in_range("10.1.0.0")
    pool, _ = layer2_pool(parse("dev tap\nserver-bridge 10.0.0.1 255.0.0.0 10.0.0.2 10.1.0.1\n"), [])
    assert pool.in_range("10.1.0.1") and not pool.in_range("10.1.0.2")
    assert parse("dev tun\ntopology subnet\nserver 10.0.0.0 255.255.0.0\n").server == ("10.0.0.0", "255.255.0.0")


@pytest.mark.openvpn
@pytest.mark.skipif(not (shutil.which("openvpn") or os.path.exists("/usr/sbin/openvpn")), reason="needs openvpn")
@pytest.mark.parametrize("dev, args, refused", [
    ("tun", ["--server", "10.0.0.0", "255.0.0.0"], "too many host addresses"),
    ("tap", ["--server", "10.0.0.0", "255.254.0.0"], "too many host addresses"),
    ("tap", ["--server-bridge", "10.0.0.1", "255.0.0.0", "10.0.0.2", "10.255.255.254"], "range is too large"),
    ("tap", ["--server", "10.0.0.0", "255.255.0.0"], None),
    ("tap", ["--server-bridge", "10.0.0.1", "255.0.0.0", "10.0.0.2", "10.1.0.1"], None),
])
def test_the_pool_bounds_are_debian_openvpns(tmp_path, dev, args, refused):
    """Debian's 2.6.14 on the same lines: it refuses what we refuse (before reading any file), and
    takes the bounds (then stops at the missing key files, which we do not give it)."""
    exe = shutil.which("openvpn") or "/usr/sbin/openvpn"
    p = subprocess.run([exe, "--dev", dev, *args, "--dh", "none", "--ca", str(tmp_path / "none"),
                        "--cert", str(tmp_path / "none"), "--key", str(tmp_path / "none"), "--verb", "1"],
                       capture_output=True, text=True, timeout=20)
    errs = [x for x in (p.stdout + p.stderr).splitlines() if "Options error" in x]
    assert p.returncode != 0 and errs, p.stdout + p.stderr
    if refused:
        assert refused in errs[0], errs
        text = " ".join(args).replace("--", "") + "\n"
        ours = [e for e in errors(f"dev {dev}\n{text}") if e.directive in ("server", "server-bridge")]
        assert ours and ours[0].line == 13, ours
    else:
        assert all("fails with" in e or "Please correct" in e for e in errs), errs      # only the missing files
        o = parse(f"dev {dev}\n" + " ".join(args).replace("--", "") + "\n")
        assert layer2_pool(o, [])[0] is not None


@pytest.mark.parametrize("text,where", [
    ("dev tap\nserver 198.19.0.0 255.255.255.0 nopool\nifconfig-pool 198.19.0.1 198.19.0.50 255.255.255.0\n",
     (14, "ifconfig-pool", "198.19.0.1")),
    ("dev tap\nserver-bridge 198.19.1.4 255.255.255.0 198.19.1.2 198.19.1.20\n", (13, "server-bridge", "198.19.1.4")),
])
def test_a_layer2_pool_holding_the_servers_own_address_is_refused_at_its_line(text, where):
    """review49a: the pool would hand the TAP device's address (server NET+1) or server-bridge's
    IP to a client, whose ifconfig-push of it is refused; refused at the line, as a tun server's
    pool (server_written_out.py). Pools beside it pass."""
    (e,) = errors(text)
    line, d, own = where
    assert (e.line, e.directive) == (line, d) and f"server's own address {own}" in str(e)
    parse(text.replace("198.19.0.1 198.19.0.50", "198.19.0.2 198.19.0.50").replace("198.19.1.2 ", "198.19.1.5 "))


@pytest.mark.parametrize("text,own", [
    ("dev tap\nserver 198.19.0.0 255.255.255.0\n", "198.19.0.1"),
    ("dev tap\nserver 198.19.0.0 255.255.255.0 nopool\n", "198.19.0.1"),
    ("dev tap\nserver-bridge 198.19.1.4 255.255.255.0 198.19.1.5 198.19.1.20\n", "198.19.1.4"),
    ("dev tap\nserver-bridge\n", None),
])
def test_the_address_an_ifconfig_push_may_not_take_on_a_tap_server(text, own):
    """The server's own IPv4 address that clientpush._lease_static refuses a client: the TAP
    device's NET+1 with or without a pool (review49a: none with `nopool` before), server-bridge's
    IP, none for a bridge port with DHCP."""
    import ipaddress
    from appliance.openvpn.settings import server_settings
    st = server_settings(parse(text))
    assert st.local_ip4 == (ipaddress.IPv4Address(own).packed if own else None)
