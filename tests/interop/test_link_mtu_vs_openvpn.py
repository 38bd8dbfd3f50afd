"""`link-mtu 1400` against Debian's OpenVPN 2.6, in namespaces: the TUN MTU each side ends with,
and big pings with DF at that MTU.

Client/server: a 2.6 server pushes its tun-mtu (1500) to a client announcing IV_MTU, and that
replaces the one derived from link-mtu -- Debian's client with the same profile ends at the same
MTU as ours, and a 1500-byte DF ping passes. Point-to-point (nothing pushed): both ends derive the
TUN MTU from link-mtu 1400 for 2.6's start-up cipher (BF-CBC, counted as its HMAC alone): 1375
on each side, a DF ping of exactly that size passes both ways and one byte more is refused.
Below our old floor of 576: `link-mtu 300` leaves 275 on both ends (2.6 takes down to 100), and DF
pings of 275 pass both ways.
"""
from __future__ import annotations

import re

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

A_IP = "198.18.0.1"
TUN_A, TUN_B = "198.19.31.1", "198.19.31.2"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("linkmtu")) as lab:
        yield lab


def _mtu(ns) -> int:
    return int(re.search(r" mtu (\d+) ", ns.run("ip -o link show tun0").stdout).group(1))


def _df_ping(ns, addr: str, mtu: int) -> bool:
    """A ping filling `mtu` exactly (IPv4 + ICMP headers: 28), DF set, answered."""
    r = ns.run(f"ping -n -q -c 2 -i 0.2 -W 2 -M do -s {mtu - 28} {addr}", check=False, timeout=20)
    return r.returncode == 0


def test_client_ends_at_the_mtu_debians_client_ends_at(lab, procs):
    srv = lab.openvpn(lab.srv, server_config(lab.pki), "srv")
    procs.append(srv)
    profile = client_profile(lab.pki, extra="link-mtu 1400\n")
    theirs = lab.openvpn(lab.cli, profile, "theirs")
    procs.append(theirs)
    want = _mtu(lab.cli)
    theirs.stop_promptly(5)
    ours = lab.ours(lab.cli, profile, "ours")
    procs.append(ours)
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP), ours.log()[-2000:]
    assert _mtu(lab.cli) == want == 1500, (want, ours.log()[-2000:])
    assert _df_ping(lab.cli, TUN_SERVER_IP, want), ours.log()[-2000:]
    # no "reported maximum MTU from client (N) is lower" at the server: IV_MTU is 2.6's 1600
    assert "reported maximum MTU" not in srv.log(), srv.log()[-2000:]


def _site(lab, a: bool, link_mtu: int = 1400) -> str:
    p = lab.pki
    c, k = (p.server_cert, p.server_key) if a else p.clients["client1"]
    me, peer = (TUN_A, TUN_B) if a else (TUN_B, TUN_A)
    role = "tls-server\ndh none\nport 1194\n" if a else f"tls-client\nremote {A_IP} 1194\nremote-cert-tls server\n"
    return (f"dev tun\nproto udp\nifconfig {me} {peer}\n{role}ca {p.ca}\ncert {c}\nkey {k}\n"
            f"keepalive 1 10\nverb 3\nlink-mtu {link_mtu}\n")


def test_p2p_both_ends_derive_1375_and_df_pings_fill_it(lab, procs):
    a = lab.openvpn(lab.srv, _site(lab, True), "a-openvpn", wait=0)
    procs.append(a)
    assert a.wait_for("link local", 20), a.log()[-2000:]
    b = lab.ours(lab.cli, _site(lab, False), "b-ours")
    procs.append(b)
    assert a.wait_for("Initialization Sequence Completed", 30), a.log()[-3000:]
    assert lab.wait_ping(lab.cli, TUN_A), b.log()[-2000:]
    assert _mtu(lab.srv) == _mtu(lab.cli) == 1375
    assert _df_ping(lab.cli, TUN_A, 1375) and _df_ping(lab.srv, TUN_B, 1375), (a.log()[-2000:], b.log()[-2000:])
    assert not _df_ping(lab.cli, TUN_A, 1376)          # over the TUN MTU: refused by the host, as there


def test_p2p_small_mtu_275_under_the_old_floor_works_end_to_end(lab, procs):
    """Ours refused any TUN MTU under 576; 2.6 takes down to its TUN_MTU_MIN, 100."""
    a = lab.openvpn(lab.srv, _site(lab, True, 300), "a-small", wait=0)
    procs.append(a)
    assert a.wait_for("link local", 20), a.log()[-2000:]
    b = lab.ours(lab.cli, _site(lab, False, 300), "b-small")
    procs.append(b)
    assert a.wait_for("Initialization Sequence Completed", 30), a.log()[-3000:]
    assert lab.wait_ping(lab.cli, TUN_A), b.log()[-2000:]
    assert _mtu(lab.srv) == _mtu(lab.cli) == 275
    assert _df_ping(lab.cli, TUN_A, 275) and _df_ping(lab.srv, TUN_B, 275), (a.log()[-2000:], b.log()[-2000:])


def test_a_pushed_ifconfig_ipv6_on_a_tun_under_1280_ends_both_clients(lab, procs):
    """compat42: Debian's 2.6 server pushes ifconfig-ipv6 (server-ipv6) to a client whose TUN
    stays at 1200 (its tun-mtu, the pushed one filtered out): the kernel refuses the address and
    Debian's client exits ("Linux can't add IPv6 to interface", fatal). Ours exits too, status 1,
    saying why and what to change; it reconnected every second or two before, for ever."""
    srv = lab.openvpn(lab.srv, server_config(lab.pki, extra="server-ipv6 2001:db8:42::/64\n"), "srv6")
    procs.append(srv)
    profile = client_profile(lab.pki, extra='tun-mtu 1200\npull-filter ignore "tun-mtu"\n')
    theirs = lab.start(lab.cli, ["/usr/sbin/openvpn", "--config", str(lab.write("theirs6.conf", profile))],
                       "theirs6")
    procs.append(theirs)
    assert theirs.exit_within(30) is not None, theirs.log()[-2000:]
    assert "Linux can't add IPv6 to interface" in theirs.log(), theirs.log()[-2000:]
    ours = lab.ours(lab.cli, profile, "ours6", wait=0)
    procs.append(ours)
    status = ours.exit_within(30)
    assert status == 1, (status, ours.log()[-2000:])
    log = ours.log()
    assert "the server pushed ifconfig-ipv6" in log and "raise tun-mtu to 1280" in log, log[-2000:]
    assert log.count("connecting to") == 1, log[-2000:]           # no reconnect


def test_a_servers_own_pushed_tun_mtu_under_1280_with_ifconfig_ipv6_ends_both_clients(lab, procs):
    """atk44: the same from the server's side alone -- a server (hostile, or misconfigured) whose
    push makes the TUN 1200 (its own `tun-mtu 1200`, which 2.6 pushes last to a client sending
    IV_MTU) and carries an ifconfig-ipv6: a profile without any MTU line. Debian's 2.6.14 client
    sets the pushed MTU and exits ("Linux can't add IPv6 to interface", fatal); ours must end the
    same way, not reconnect for ever and not go on without IPv6 -- and no more than that: this
    is the one push that ends our run (gateway/push_fatal.py), as it ends 2.6's."""
    srv = lab.openvpn(lab.srv, server_config(lab.pki, extra=(
        'tun-mtu 1200\npush "ifconfig-ipv6 2001:db8:44::2/64 2001:db8:44::1"\n')), "srv6push")
    procs.append(srv)
    profile = client_profile(lab.pki)
    theirs = lab.start(lab.cli, ["/usr/sbin/openvpn", "--config", str(lab.write("theirs6p.conf", profile))],
                       "theirs6p")
    procs.append(theirs)
    assert theirs.exit_within(30) is not None, theirs.log()[-2000:]
    assert "Linux can't add IPv6 to interface" in theirs.log(), theirs.log()[-2000:]
    ours = lab.ours(lab.cli, profile, "ours6p", wait=0)
    procs.append(ours)
    status = ours.exit_within(30)
    assert status == 1, (status, ours.log()[-2000:])
    log = ours.log()
    assert "the pushed tun-mtu 1200" in log and "raise tun-mtu to 1280" in log, log[-2000:]
    assert log.count("connecting to") == 1, log[-2000:]


def test_debians_client_with_dev_null_exits_at_a_servers_push(lab, procs):
    """compat42: why ours refuses `dev null` (config/d_network.py DEV_NULL_WHY) rather than run
    a device-less client: against a server that pushes an address, Debian's 2.6 client exits at
    the push ("Linux can't set mtu (1500) on null"), so no client profile with it runs there."""
    srv = lab.openvpn(lab.srv, server_config(lab.pki), "srvnull")
    procs.append(srv)
    profile = client_profile(lab.pki).replace("dev tun\n", "dev null\n")
    theirs = lab.start(lab.cli, ["/usr/sbin/openvpn", "--config", str(lab.write("theirsnull.conf", profile))],
                       "theirsnull")
    procs.append(theirs)
    assert theirs.exit_within(30) == 1, theirs.log()[-2000:]
    assert "Linux can't set mtu (1500) on null" in theirs.log(), theirs.log()[-2000:]
    assert "Initialization Sequence Completed" not in theirs.log()
