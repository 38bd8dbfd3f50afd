"""<connection> blocks against Debian's OpenVPN 2.6 server, our client beside OpenVPN's own with the
same profile, in namespaces. The profile's global `proto tcp` and `port 1195` come before the
blocks; the first block takes them (nothing listens on TCP 1195: refused at once), the second
overrides them with `proto udp` and its own port and reaches the server. Both clients try the
first, then come up on the second. Before, our client refused the profile at the first block."""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import BEHIND_IP, SRV_IP, Lab

UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}
TRIED = {"ours": f"connecting to {SRV_IP}:1195 over TCP", "openvpn": f"{SRV_IP}:1195"}
BLOCKS = ("proto tcp\nport 1195\nconnect-retry 1\nserver-poll-timeout 5\n"
          "<connection>\nremote {ip}\n</connection>\n"
          "<connection>\nremote {ip} 1194\nproto udp\nnobind\n</connection>\n")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp"), "srv-conn")
        yield lab
        srv.stop()


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_the_second_block_carries_the_tunnel_after_the_first_is_refused(lab, procs, kind):
    base = client_profile(lab.pki, "udp")
    profile = "".join(line for line in base.splitlines(keepends=True) if not line.startswith("remote ")) \
        + BLOCKS.format(ip=SRV_IP)          # its `proto udp` comes first; the global `proto tcp` after it stands
    start = lab.ours if kind == "ours" else lab.openvpn
    cli = start(lab.cli, profile, f"cli-conn-{kind}", wait=0)
    procs.append(cli)
    assert cli.wait_count(UP[kind], 1, timeout=40), cli.log()[-3000:]
    log = cli.log()
    assert TRIED[kind] in log, f"{kind} did not try the first block:\n{log[-3000:]}"
    assert lab.wait_ping(lab.cli, BEHIND_IP), "no traffic through the tunnel of the second block"
    print(f"{kind}: first block (TCP 1195) refused, second (UDP 1194) up")
