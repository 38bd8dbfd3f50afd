"""A `dev tun` server without `client-to-client`: one client's packets for another client go to the
server's TUN device, where the host's forwarding and firewall decide, as with OpenVPN 2.6 (its
manual's way to per-client firewall rules). Debian's OpenVPN 2.6 clients in two namespaces ping
each other through Debian's server and through ours (same config, IPv4 forwarding on in the
server's namespace): both pass, and an nftables rule dropping TUN-to-TUN forwarding stops it on
both. Ours dropped such packets itself, so the ping never passed (tests/engine/test_client_to_client_off.py)."""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

TABLE = "atk37s_c2c"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("c2coff"), clients=["client1", "client2"]) as lab:
        lab.c2 = lab.add_client_ns(2)                  # the second client's veth: 198.18.3.2 -> 198.18.3.1
        lab.srv.run("sysctl -qw net.ipv4.ip_forward=1")
        yield lab


def _drop_tun_to_tun(lab, on: bool) -> None:
    if on:
        lab.srv.run(f"nft add table inet {TABLE} && nft add chain inet {TABLE} tuntotun "
                    "'{ type filter hook forward priority 0; policy accept; }' && "
                    f"nft add rule inet {TABLE} tuntotun iifname 'tun*' oifname 'tun*' counter drop")
    else:
        lab.srv.run(f"nft delete table inet {TABLE}", check=False)


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_clients_reach_each_other_through_the_hosts_forwarding(lab, procs, server):
    procs.append(lab.udp_server(server, server_config(lab.pki), f"c2s-{len(lab.procs)}"))
    procs.append(lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="client1"), f"c2a-{len(lab.procs)}"))
    procs.append(lab.openvpn(lab.c2, client_profile(lab.pki, "udp", client="client2",
                                                    remotes=[("198.18.3.1", 1194, "udp")]), f"c2b-{len(lab.procs)}"))
    b = lab._tun_ip(lab.c2)
    assert b != "0.0.0.0"
    assert lab.wait_ping(lab.cli, b, within=20), f"{server}: no client-to-client ping through the host's forwarding"
    _drop_tun_to_tun(lab, True)
    try:
        assert lab.ping(lab.cli, b, count=3) == 0, f"{server}: the host's firewall did not decide"
    finally:
        _drop_tun_to_tun(lab, False)
