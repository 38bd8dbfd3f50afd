"""Kill switch and NAT: the rendered nftables text, and the rules doing their job in namespaces.

The namespace test builds LAN ─ gateway ─ WAN (and later a `tun0` stand-in towards a "VPN" side),
installs the rules before `tun0` exists, and checks with pings and UDP what a user would check:
nothing from the LAN reaches the WAN, the gateway itself only talks to the VPN server, LAN traffic
into the tunnel is masqueraded, and removing the rules restores plain forwarding.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys

import pytest

_T = secrets.token_hex(3)   # unique names: parallel runs must not collide
NS_LAN, NS_GW, NS_WAN, NS_VPN = (f"ks{n}{_T}" for n in ("lan", "gw", "wan", "vpn"))

from appliance.router import killswitch, nat
from appliance.router.killswitch import Endpoint, render_killswitch, render_router
from lab.configs import server_config
from lab.netns import Netns, Proc
from lab.pki import make_pki
from lab.tools import OPENVPN

SERVER = Endpoint("198.18.0.1", 1194, "udp")
LAN_NETS = ["198.18.50.0/24", "fd18:50::/64"]     # the namespace test's LAN


def rules(text: str, chain: str) -> list[str]:
    """The rule lines of one chain, without the hook line."""
    body = text.split(f"chain {chain} {{\n", 1)[1].split("\n\t}", 1)[0]
    return [ln.strip() for ln in body.splitlines() if not ln.strip().startswith("type ")]


# ---------------------------------------------------------------- rendered text
def test_client_router_with_nat():
    t = render_router("eth0", "tun0", "eth1", True, "client", [SERVER, Endpoint("198.18.0.7", 443, "tcp"),
                                                             Endpoint("2001:db8:18::1", 1194, "udp")],
                      wan_ipv6=True, lan_nets=LAN_NETS)
    assert "type filter hook forward priority filter; policy drop;" in t
    assert rules(t, "forward") == [
        "ct state invalid drop",
        'iifname "eth1" oifname "eth0" counter drop comment "LAN never leaves the WAN in clear"',
        'iifname "eth1" oifname "tun0" accept',
        'iifname "tun0" oifname "eth1" ct state established,related accept',
    ]
    assert rules(t, "output") == [
        'oifname "eth0" ct mark and 0x00400000 != 0 counter drop comment "answers to the tunnel or the LAN never '
        'leave the WAN"',
        'oifname "eth0" ct state established,related accept',
        'oifname "eth0" meta nfproto ipv4 udp sport 68 udp dport 67 accept',
        'oifname "eth0" icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, '
        'mld2-listener-report } accept',
        'oifname "eth0" ip daddr 198.18.0.1 udp dport 1194 accept',
        'oifname "eth0" ip daddr 198.18.0.7 tcp dport 443 accept',
        'oifname "eth0" ip6 daddr 2001:db8:18::1 udp dport 1194 accept',
        'oifname "eth0" counter drop comment "only the VPN transport on the WAN"',
    ]
    assert rules(t, "postrouting") == ['iifname "eth1" oifname "tun0" masquerade']
    # NAT66: the same masquerade in an ip6 table (the LAN's ULA behind the pushed IPv6 address).
    six = t.split("table ip6 vpnappliance_nat6 {\n", 1)[1]
    assert rules(six, "postrouting") == ['iifname "eth1" oifname "tun0" masquerade']
    # Each table is replaced atomically: created if missing, deleted, defined anew.
    assert t.startswith("table inet vpnappliance\ndelete table inet vpnappliance\ntable inet vpnappliance {")
    assert "table ip vpnappliance_nat\ndelete table ip vpnappliance_nat\ntable ip vpnappliance_nat {" in t


def test_routed_lan_forwards_both_ways_and_has_no_nat():
    t = render_router("wan0", "tun3", "lan0", False, "client", [SERVER], lan_nets=LAN_NETS)
    assert 'iifname "tun3" oifname "lan0" accept' in rules(t, "forward")
    assert "masquerade" not in t
    assert t.endswith("table ip vpnappliance_nat\ndelete table ip vpnappliance_nat\n"   # a stale NAT goes,
                      "table ip6 vpnappliance_nat6\ndelete table ip6 vpnappliance_nat6\n")  # both families


def test_wan_output_admits_no_other_icmpv6_and_no_dhcpv6():
    '''The WAN's own IPv6 may do neighbour discovery and SLAAC, nothing that could carry data:
    echo, errors of its own making, DHCPv6 (udp 546/547) all fall to the final drop.'''
    out = rules(render_killswitch("eth0", "tun0", "eth1", endpoints=[SERVER], lan_nets=LAN_NETS), "output")
    assert not [r for r in out if "icmpv6" in r], "an IPv4-only WAN sends no IPv6 at all"
    out = rules(render_killswitch("eth0", "tun0", "eth1", endpoints=[SERVER], wan_ipv6=True, lan_nets=LAN_NETS), "output")
    icmp = [r for r in out if "icmpv6" in r]
    assert len(icmp) == 1 and "echo" not in icmp[0] and "nd-router-advert" not in icmp[0]
    assert not any("546" in r or "547" in r for r in out)
    assert all("ip6 daddr" not in r for r in out), "no IPv6 remote, no IPv6 transport rule"



def test_only_lan_sources_are_taken_from_the_lan():
    """The LAN NIC takes only its networks' sources (plus no-address-yet and link-local), dropped
    before conntrack; without the LAN's networks there is no ruleset at all."""
    t = render_router("eth0", "tun0", "eth1", True, "client", [SERVER], lan_nets=["198.18.50.1/24"])
    assert "type filter hook prerouting priority raw; policy accept;" in t
    assert rules(t, "prerouting") == [
        'iifname "eth1" ip saddr != { 0.0.0.0, 198.18.50.0/24 } counter drop comment "source not of the LAN"',
        'iifname "eth1" ip6 saddr != { ::, fe80::/10 } counter drop comment "source not of the LAN"',
    ]
    with pytest.raises(ValueError):
        render_router("eth0", "tun0", "eth1", True, "client", [SERVER])
    # `[lan] routes` networks join the set; overlapping ones are merged (nft refuses overlapping intervals)
    t = render_router("eth0", "tun0", "eth1", False, "client", [SERVER],
                      lan_nets=["198.18.50.1/24", "fd18:50::/64", "198.18.60.0/24", "fd00::/8", "198.18.61.0/24"])
    assert rules(t, "prerouting") == [
        'iifname "eth1" ip saddr != { 0.0.0.0, 198.18.50.0/24, 198.18.60.0/23 } counter drop comment "source not of the LAN"',
        'iifname "eth1" ip6 saddr != { ::, fd00::/8, fe80::/10 } counter drop comment "source not of the LAN"',
    ]
    assert "chain prerouting" not in render_killswitch("eth0", "tun0", None, endpoints=[SERVER])


def test_connections_begun_inside_are_never_answered_on_the_wan():
    """Every connection whose first packet came in on the TUN or the LAN is marked (after
    conntrack), and the output chain drops a WAN packet of a marked connection before its
    "established" rule: the kernel's answers to what came from the tunnel or the LAN (an echo
    reply, a reset, an ICMP error) stay inside (tests/interop/test_tunnel_spoofed_source.py). What
    conntrack cannot place (invalid: no connection to mark) is dropped there before the kernel
    answers it (tests/interop/test_tunnel_invalid_tcp.py)."""
    t = render_router("eth0", "tun0", "eth1", True, "client", [SERVER], lan_nets=LAN_NETS)
    assert "type filter hook prerouting priority mangle; policy accept;" in t
    assert rules(t, "mark_inside") == [
        'iifname { "tun0", "eth1" } ct state invalid counter drop comment "what conntrack cannot place is not taken '
        'from inside"',
        'iifname { "tun0", "eth1" } ct state new ct mark set ct mark or 0x00400000']
    out = rules(t, "output")
    drop = 'oifname "eth0" ct mark and 0x00400000 != 0 counter drop comment "answers to the tunnel or the LAN never ' \
        'leave the WAN"'
    assert out.index(drop) < out.index('oifname "eth0" ct state established,related accept')
    # without a LAN: the tunnel's connections still
    bare = render_killswitch("eth0", "tun0", None, endpoints=[SERVER])
    assert rules(bare, "mark_inside") == [
        'iifname { "tun0" } ct state invalid counter drop comment "what conntrack cannot place is not taken from inside"',
        'iifname { "tun0" } ct state new ct mark set ct mark or 0x00400000']


def test_no_lan_forwards_nothing_but_still_guards_the_wan():
    t = render_killswitch("eth0", "tun0", None, endpoints=[SERVER])
    assert rules(t, "forward") == ["ct state invalid drop"]
    assert 'oifname "eth0" counter drop comment "only the VPN transport on the WAN"' in rules(t, "output")


def test_server_role_lets_replies_from_its_port_out_and_serves_the_lan():
    t = render_router("eth0", "tun0", "eth1", True, "server", listen=(1194, "udp"), lan_nets=LAN_NETS)
    assert rules(t, "forward")[1:] == [
        'iifname "eth1" oifname "eth0" counter drop comment "LAN never leaves the WAN in clear"',
        'iifname "tun0" oifname "eth1" accept',
        'iifname "eth1" oifname "tun0" ct state established,related accept',
    ]
    assert 'oifname "eth0" udp sport 1194 accept' in rules(t, "output")
    assert rules(t, "postrouting") == ['iifname "tun0" oifname "eth1" masquerade']


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        render_killswitch('eth0"; flush ruleset', "tun0")
    with pytest.raises(ValueError):
        render_killswitch("eth0", "tun0", endpoints=[Endpoint("not-an-ip", 1, "udp")])
    with pytest.raises(ValueError):
        render_killswitch("eth0", "tun0", endpoints=[Endpoint("198.18.0.1", 1, "sctp")])


# ---------------------------------------------------------------- real rules in namespaces
def _require_tools() -> None:
    if os.geteuid() != 0:
        pytest.fail("the kill switch test needs root (network namespaces, nftables)")
    if shutil.which("nft") is None:
        pytest.fail("`nft` is missing: install the nftables package (make setup does)")
    if shutil.which("ping") is None:
        pytest.fail("`ping` is missing: install iputils-ping (make setup does)")


@pytest.fixture
def lab():
    _require_tools()
    made: list[Netns] = []
    try:
        # No `ip netns del` of the names first: a killed run's namespaces go at the next session's
        # start (lab.netns.remove_leftovers, by their records), and a blind delete of a name would
        # remove another run's namespace mid-test should the tags ever collide.
        for n in (NS_LAN, NS_GW, NS_WAN, NS_VPN):
            made.append(Netns(n))
        lan, gw, wan, vpn = made
        gw.run(f"ip link add eth1 type veth peer name kl0 netns {NS_LAN}")
        gw.run(f"ip link add eth0 type veth peer name kw0 netns {NS_WAN}")
        gw.run("ip addr add 198.18.50.1/24 dev eth1 && ip link set eth1 up && "
               "ip addr add 198.18.0.2/24 dev eth0 && ip link set eth0 up && sysctl -qw net.ipv4.ip_forward=1")
        lan.run("ip addr add 198.18.50.2/24 dev kl0 && ip link set kl0 up && ip route add default via 198.18.50.1")
        # The WAN side knows the way back to the LAN, so without rules LAN → WAN works.
        wan.run("ip addr add 198.18.0.1/24 dev kw0 && ip link set kw0 up && ip route add 198.18.50.0/24 via 198.18.0.2")
        vpn.run("true")
        yield lan, gw, wan, vpn
    finally:
        for ns in reversed(made):
            ns.delete()


def ping(ns: Netns, dst: str) -> bool:
    return ns.run(f"ping -c 1 -W 1 {dst}", check=False, timeout=10).returncode == 0


def udp_arrives(sender: Netns, receiver: Netns, dst: str, port: int) -> bool:
    """Send one datagram from `sender`; True if a listener in `receiver` got it within 2 s."""
    listen = ("import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); "
              f"s.bind(('{dst}',{port})); s.settimeout(2); print('ready',flush=True); "
              "sys.stdout.write(s.recvfrom(100)[0].decode())")
    p = subprocess.Popen(["ip", "netns", "exec", receiver.name, sys.executable, "-c", listen],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        send = (f"import socket; socket.socket(socket.AF_INET,socket.SOCK_DGRAM).sendto(b'hello',('{dst}',{port}))")
        sender.run(f"{sys.executable} -c \"{send}\"", check=False)
        out, _ = p.communicate(timeout=5)
        return out.endswith("hello")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=5)


@pytest.mark.root
@pytest.mark.netns
def test_kill_switch_blocks_the_lan_from_the_wan_and_lets_it_into_the_tunnel(lab):
    lan, gw, wan, vpn = lab
    assert ping(lan, "198.18.0.1"), "setup: without rules the LAN reaches the WAN"
    assert ping(gw, "198.18.0.1")

    # Installed before `tun0` exists, as the appliance does before starting the tunnel.
    text = render_router("eth0", "tun0", "eth1", True, "client", [SERVER], lan_nets=LAN_NETS)
    killswitch.apply_ruleset(text, netns=NS_GW)

    assert not ping(lan, "198.18.0.1"), "LAN → WAN must be dropped"
    listed = gw.run("nft list table inet vpnappliance").stdout
    dropped = [ln for ln in listed.splitlines() if "LAN never leaves" in ln][0]
    assert "packets 0 " not in dropped, dropped
    assert not ping(gw, "198.18.0.1"), "the gateway itself may not talk on the WAN in clear"
    assert udp_arrives(gw, wan, "198.18.0.1", 1194), "the VPN transport must pass"
    assert not udp_arrives(gw, wan, "198.18.0.1", 1195), "only the VPN server's port"

    # Now the "tunnel" appears: a veth named tun0 towards a VPN side that has NO route to the LAN,
    # so a ping from the LAN only comes back if it was masqueraded to the tun0 address.
    gw.run(f"ip link add tun0 type veth peer name kv0 netns {NS_VPN} && "
           "ip addr add 198.18.60.1/24 dev tun0 && ip link set tun0 up")
    vpn.run("ip addr add 198.18.60.2/24 dev kv0 && ip link set kv0 up")
    assert ping(lan, "198.18.60.2"), "LAN → tunnel must be forwarded and masqueraded"
    vpn.run("ip route add 198.18.50.0/24 via 198.18.60.1")
    assert not ping(vpn, "198.18.50.2"), "with nat, the tunnel side may not open connections into the LAN"
    assert not ping(lan, "198.18.0.1"), "still no LAN → WAN with the tunnel up"

    killswitch.flush(netns=NS_GW)
    assert gw.run("nft list tables").stdout.strip() == ""
    assert ping(lan, "198.18.0.1"), "flush() removes our rules"


def ping6(ns: Netns, dst: str) -> bool:
    return ns.run(f"ping -6 -c 1 -W 1 {dst}", check=False, timeout=10).returncode == 0


@pytest.mark.root
@pytest.mark.netns
def test_kill_switch_covers_ipv6_and_nat66_masquerades_the_lan(lab):
    """The same guarantees for IPv6, from the same inet table: no LAN packet to the WAN, the
    gateway itself only to its (IPv6) VPN server, LAN → tunnel masqueraded (NAT66)."""
    lan, gw, wan, vpn = lab
    gw.run("ip -6 addr add fd18:50::1/64 dev eth1 nodad && ip -6 addr add 2001:db8:18::2/64 dev eth0 nodad && "
           "sysctl -qw net.ipv6.conf.all.forwarding=1")
    lan.run("ip -6 addr add fd18:50::2/64 dev kl0 nodad && ip -6 route add default via fd18:50::1")
    wan.run("ip -6 addr add 2001:db8:18::1/64 dev kw0 nodad && ip -6 route add fd18:50::/64 via 2001:db8:18::2")
    # (link-local addresses finish DAD first: neighbour discovery needs them)
    assert _wait_for(lambda: ping6(lan, "2001:db8:18::1")), "setup: without rules the LAN reaches the WAN over IPv6"
    killswitch.apply_ruleset(render_router("eth0", "tun0", "eth1", True, "client",
                                           [Endpoint("2001:db8:18::1", 1194, "udp")], wan_ipv6=True, lan_nets=LAN_NETS),
                             netns=NS_GW)
    assert not ping6(lan, "2001:db8:18::1"), "LAN → WAN over IPv6 must be dropped"
    assert not ping6(gw, "2001:db8:18::1"), "the gateway itself may not talk IPv6 on the WAN in clear"
    gw.run(f"ip link add tun0 type veth peer name kv0 netns {NS_VPN} && "
           "ip -6 addr add 2001:db8:60::1/64 dev tun0 nodad && ip link set tun0 up")
    vpn.run("ip -6 addr add 2001:db8:60::2/64 dev kv0 nodad && ip link set kv0 up")
    assert _wait_for(lambda: ping6(lan, "2001:db8:60::2")), "LAN → tunnel must be forwarded and masqueraded (NAT66)"
    assert not ping6(lan, "2001:db8:18::1"), "still no IPv6 LAN → WAN with the tunnel up"
    killswitch.flush(netns=NS_GW)
    assert gw.run("nft list tables").stdout.strip() == ""


@pytest.mark.root
@pytest.mark.netns
def test_routed_lan_without_nat_keeps_lan_addresses(lab):
    lan, gw, wan, vpn = lab
    killswitch.apply_ruleset(render_router("eth0", "tun0", "eth1", False, "client", [SERVER], lan_nets=LAN_NETS),
                             netns=NS_GW)
    gw.run(f"ip link add tun0 type veth peer name kv0 netns {NS_VPN} && "
           "ip addr add 198.18.60.1/24 dev tun0 && ip link set tun0 up")
    vpn.run("ip addr add 198.18.60.2/24 dev kv0 && ip link set kv0 up")
    assert not ping(lan, "198.18.60.2"), "no masquerading: the VPN side has no route back yet"
    vpn.run("ip route add 198.18.50.0/24 via 198.18.60.1")  # what the server's iroute provides
    assert ping(lan, "198.18.60.2") and ping(vpn, "198.18.50.2"), "routed: both directions pass"
    assert not ping(lan, "198.18.0.1")
    assert "vpnappliance_nat" not in gw.run("nft list tables").stdout
    nat.flush(netns=NS_GW)  # harmless when there is no NAT table
    killswitch.flush(netns=NS_GW)


@pytest.mark.root
@pytest.mark.netns
def test_nft_refusal_is_reported(lab):
    with pytest.raises(RuntimeError, match="nft refused the ruleset"):
        nat.apply_ruleset("table inet vpnappliance { chain x { type filter hook nowhere priority 0; } }",
                          netns=NS_GW)


# ---------------------------------------------------------------- the whole `run appliance.toml` setup
def _wait_for(fn, seconds: float = 15.0) -> bool:
    import time
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if fn():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.root
@pytest.mark.netns
@pytest.mark.openvpn
def test_run_toml_installs_everything_before_the_tunnel_and_undoes_it(lab, tmp_path):
    import signal

    lan, gw, wan, vpn = lab
    gw.run("ip addr flush dev eth0 && ip addr flush dev eth1 && sysctl -qw net.ipv4.ip_forward=0")
    mac = gw.run("cat /sys/class/net/eth1/address").stdout.strip()
    pki = make_pki(tmp_path / "pki", ["c1"])
    crt, key = pki.clients["c1"]
    (tmp_path / "client.ovpn").write_text(
        f"client\ndev tun\nremote 198.18.0.1 1194 udp\nca {pki.ca}\ncert {crt}\nkey {key}\n")
    (tmp_path / "appliance.toml").write_text(
        '[appliance]\nlog_level = "debug"\n'
        '[wan]\nname = "eth0"\naddress = "198.18.0.2/24"\ngateway = "198.18.0.1"\n'
        f'[lan]\nmac = "{mac.upper()}"\naddress = "198.18.50.1/24"\n'
        '[vpn]\nrole = "client"\nconfig = "client.ovpn"\n')
    log = open(tmp_path / "run.log", "wb")
    p = subprocess.Popen(["ip", "netns", "exec", NS_GW, sys.executable, "-m", "appliance", "run",
                          str(tmp_path / "appliance.toml")], stdout=log, stderr=subprocess.STDOUT,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    try:
        assert _wait_for(lambda: "vpnappliance" in gw.run("nft list tables").stdout), \
            (tmp_path / "run.log").read_text()
        table = gw.run("nft list table inet vpnappliance").stdout
        assert 'oifname "eth0" ip daddr 198.18.0.1 udp dport 1194 accept' in table
        assert 'iifname "eth1" oifname "tun0" accept' in table
        assert "inet 198.18.0.2/24" in gw.run("ip -4 addr show dev eth0").stdout
        assert "inet 198.18.50.1/24" in gw.run("ip -4 addr show dev eth1").stdout
        assert "default via 198.18.0.1 dev eth0" in gw.run("ip route").stdout
        assert gw.run("sysctl -n net.ipv4.ip_forward").stdout.strip() == "1"
        assert not ping(lan, "198.18.0.1"), "the LAN may not reach the WAN while the tunnel is down"
        assert _wait_for(lambda: b"connecting to 198.18.0.1:1194 over UDP" in (tmp_path / "run.log").read_bytes())
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=15) == 0, (tmp_path / "run.log").read_text()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=5)
        log.close()
    assert gw.run("nft list tables").stdout.strip() == ""
    assert "inet " not in gw.run("ip -4 addr show dev eth0").stdout
    assert "inet " not in gw.run("ip -4 addr show dev eth1").stdout
    assert "default" not in gw.run("ip route").stdout
    assert gw.run("sysctl -n net.ipv4.ip_forward").stdout.strip() == "0"


def test_run_toml_config_error_exits_2_before_touching_anything(tmp_path, capsys):
    from appliance.run_toml import run_toml
    t = tmp_path / "appliance.toml"
    t.write_text('[wan]\nname = "eth0"\ndhcp = "yes"\n[vpn]\nrole = "client"\ninline = "client"\n')
    assert run_toml(str(t), 0) == 2
    err = capsys.readouterr().err
    assert f"{t}:3: wan.dhcp: expected true or false, got string 'yes'" in err


@pytest.mark.root
@pytest.mark.netns
@pytest.mark.openvpn
def test_router_mode_end_to_end_lan_reaches_only_what_is_behind_the_tunnel(lab, tmp_path):
    """Debian's OpenVPN server on the WAN side; our appliance in the middle; a LAN host pings a
    network behind the server (through the tunnel, masqueraded) but not the WAN in clear."""
    lan, gw, wan, vpn = lab
    if not os.path.exists("/dev/net/tun"):
        pytest.fail("/dev/net/tun is missing")
    gw.run("ip addr flush dev eth0 && ip addr flush dev eth1")
    wan.run("ip addr add 198.18.70.1/32 dev lo")  # a host "behind" the server
    pki = make_pki(tmp_path / "pki", ["client1"])
    (tmp_path / "server.conf").write_text(
        server_config(pki, protection="tls-crypt", extra='push "route 198.18.70.0 255.255.255.0"\n'))
    crt, key = pki.clients["client1"]
    (tmp_path / "appliance.toml").write_text(
        '[wan]\nname = "eth0"\naddress = "198.18.0.2/24"\ngateway = "198.18.0.1"\n'
        '[lan]\nname = "eth1"\naddress = "198.18.50.1/24"\nnat = true\n'
        "[vpn]\nrole = \"client\"\ninline = '''\n"
        f"client\ndev tun\nremote 198.18.0.1 1194 udp\nremote-cert-tls server\nca {pki.ca}\ncert {crt}\nkey {key}\n"
        f"tls-crypt {pki.dir / 'static.key'}\n'''\n")
    server = Proc(wan, [OPENVPN, "--config", str(tmp_path / "server.conf")], tmp_path / "server.log")
    ours = Proc(gw, [sys.executable, "-m", "appliance", "run", str(tmp_path / "appliance.toml")],
                tmp_path / "ours.log")
    try:
        assert server.wait_for("Initialization Sequence Completed", 20), server.log()
        assert ours.wait_for("tun tun0: address", 20), ours.log()
        assert _wait_for(lambda: ping(lan, "198.18.70.1"), 10), "LAN → behind the server, through the tunnel"
        assert not ping(lan, "198.18.0.1"), "LAN → WAN in clear stays dropped with the tunnel up"
        assert "tun0" in gw.run("ip route get 198.18.70.1").stdout
    finally:
        rc = ours.stop(timeout=10)
        server.stop()
    assert rc == 0, ours.log()
    assert gw.run("nft list tables").stdout.strip() == ""
