"""`fragment 1300` against Debian's OpenVPN 2.6, both ways: our client with its server, its client
with ours. ExpressVPN's, VyOS's and many self-hosted profiles carry it; before, ours refused the
line, and a peer that frames nothing is unreadable to one that does.

The path between the namespaces carries IP packets of at most 1328 bytes (both veths' MTU: 1300
bytes of UDP payload), the tunnel's MTU stays 1500, and 1400-byte pings cross it both ways: each
needs two parts each way. No IP fragment may reach either end (/proc/net/snmp's ReasmReqds, per
namespace, stays put), which is what `fragment` promises a path that drops them.
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}
FRAG = "fragment 1300\n"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("frag")) as lab:
        lab.srv.run(f"ip link set va{lab.tag} mtu 1328")
        lab.cli.run(f"ip link set vb{lab.tag} mtu 1328")
        yield lab


def _reassemblies(ns) -> int:
    lines = [x.split() for x in ns.run("cat /proc/net/snmp").stdout.splitlines() if x.startswith("Ip:")]
    return int(lines[1][lines[0].index("ReasmReqds")])


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_big_packets_cross_in_parts_with_no_ip_fragment_on_the_path(lab, procs, server):
    client = "ours" if server == "openvpn" else "openvpn"
    conf = server_config(lab.pki, "udp", extra=FRAG)
    srv = (lab.openvpn(lab.srv, conf, f"fr-srv-{server}") if server == "openvpn"
           else lab.ours(lab.srv, conf, f"fr-srv-{server}", pattern=r"listening on UDP"))
    procs.append(srv)
    start = lab.ours if client == "ours" else lab.openvpn
    cli = start(lab.cli, client_profile(lab.pki, "udp", extra=FRAG), f"fr-cli-{client}", wait=0)
    procs.append(cli)
    assert cli.wait_for(UP[client], 30), cli.log()[-3000:]
    before = _reassemblies(lab.srv), _reassemblies(lab.cli)
    small = lab.ping(lab.cli, TUN_SERVER_IP, 3)
    r = lab.cli.run(f"ping -n -q -c 5 -i 0.2 -W 2 -s 1400 -M do {TUN_SERVER_IP}", check=False, timeout=20)
    assert small == 3, cli.log()[-2000:] + srv.log()[-2000:]
    assert " 5 received" in r.stdout, r.stdout + r.stderr + cli.log()[-2000:] + srv.log()[-2000:]
    assert (_reassemblies(lab.srv), _reassemblies(lab.cli)) == before, "IP fragments crossed the path"
    cli.stop(8)
    srv.stop(8)
