"""<connection> blocks against Debian's OpenVPN 2.6 server, our client beside OpenVPN's own with the
same profile, in namespaces. The profile's global `proto tcp` and `port 1195` come before the
blocks; the first block takes them (nothing listens on TCP 1195: refused at once), the second
overrides them with `proto udp` and its own port and reaches the server. Both clients try the
first, then come up on the second. Before, our client refused the profile at the first block.

Per-connection keys and MTU (session 38): the first block carries a tls-crypt key the server does
not have, its own tun-mtu 1300, explicit-exit-notify and a 3 s connect-timeout; the second the
server's key and tun-mtu 1400 (`pull-filter ignore tun-mtu`: a 2.6 server pushes its own 1500 to
every client announcing IV_MTU). Both clients try the first (the server logs its packets failing
tls-crypt), come up on the second, and end with a TUN MTU of 1400: nothing of the first block's
settings, nor the profile's 1500, reaches that connection. Before, our client refused
`tls-crypt` and `tun-mtu` inside a block."""
from __future__ import annotations

import re
import secrets

import pytest

from lab.configs import client_profile, server_config
from lab.netns import BEHIND_IP, SRV_IP, Lab

UNWRAP_FAILED = "tls-crypt unwrapping failed"
UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}
TRIED = {"ours": f"connecting to {SRV_IP}:1195 over TCP", "openvpn": f"{SRV_IP}:1195"}
BLOCKS = ("proto tcp\nport 1195\nconnect-retry 1\nserver-poll-timeout 5\n"
          "<connection>\nremote {ip}\n</connection>\n"
          "<connection>\nremote {ip} 1194\nproto udp\nnobind\n</connection>\n")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp"), "srv-conn")
        lab.conn_server = srv
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


def _static_key() -> str:
    """A tls-crypt key the server does not have."""
    hexed = secrets.token_bytes(256).hex()
    return ("-----BEGIN OpenVPN Static key V1-----\n" + "".join(hexed[i:i + 32] + "\n" for i in range(0, 512, 32))
            + "-----END OpenVPN Static key V1-----\n")


def _tun_mtu(lab) -> int:
    return int(re.search(r" mtu (\d+) ", lab.cli.run("ip -o link show tun0").stdout).group(1))


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_each_block_brings_its_own_key_and_mtu(lab, procs, kind):
    base = client_profile(lab.pki, "udp", protection="none")
    right = (lab.pki.dir / "static.key").read_text()
    profile = "".join(line for line in base.splitlines(keepends=True) if not line.startswith("remote ")) + (
        "pull-filter ignore tun-mtu\nmssfix 1450\n"
        f"<connection>\nremote {SRV_IP} 1194\n<tls-crypt>\n{_static_key()}</tls-crypt>\ntun-mtu 1300\n"
        "connect-timeout 3\nexplicit-exit-notify 2\n</connection>\n"
        f"<connection>\nremote {SRV_IP} 1194\n<tls-crypt>\n{right}</tls-crypt>\ntun-mtu 1400\nmssfix 1300\n"
        "</connection>\n")
    refused = lab.conn_server.log().count(UNWRAP_FAILED)
    start = lab.ours if kind == "ours" else lab.openvpn
    cli = start(lab.cli, profile, f"cli-keys-{kind}", wait=0)
    procs.append(cli)
    assert cli.wait_count(UP[kind], 1, timeout=40), cli.log()[-3000:]
    assert lab.wait_ping(lab.cli, BEHIND_IP), "no traffic through the tunnel of the second block"
    assert _tun_mtu(lab) == 1400, cli.log()[-3000:]
    assert lab.conn_server.log().count(UNWRAP_FAILED) > refused, "the first block's key was not tried"
    print(f"{kind}: first block's key refused by the server, second block up at TUN MTU 1400")
