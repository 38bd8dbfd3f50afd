"""Our client against Debian's OpenVPN 2.6 server when the client's first packet after the
server's reset is lost (atk36). The server answers a reset statelessly (its HMAC cookie) and never
resends that answer, so only a client packet that acks it carries the cookie back; ours acked
each message once, so every resend of its ClientHello went without that ack, the server dropped
it, and the client waited out its hand-window before starting over. As 2.6's client (its
ack_mru), ours now acks again what it acked lately: the ClientHello's first resend gets it in.
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

# The first P_CONTROL_V1 (key id 0: first byte 0x20; in clear under tls-crypt) from each source
# is dropped where it arrives, later ones pass: the client's third packet, once.
DROP_FIRST_CONTROL = """table inet atk36_drop_first {
  set seen { type ipv4_addr; flags dynamic; }
  chain c { type filter hook input priority 0; policy accept;
    udp dport 1194 @th,64,8 == 0x20 ip saddr @seen accept
    udp dport 1194 @th,64,8 == 0x20 add @seen { ip saddr } counter drop
  }
}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        lab.segment_on_the_wire()
        yield lab


def test_our_client_gets_in_after_its_first_packet_past_the_servers_reset_is_lost(lab):
    lab.srv.run(f"nft -f {lab.write('drop-first-control.nft', DROP_FIRST_CONTROL)}")
    procs = []
    try:
        srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp", protection="tls-crypt"), "server")
        procs.append(srv)
        # hand-window 60 (the default) is when a client without the fix starts over: it must be
        # in well before (the ClientHello's first resend comes ~2 s after it).
        cli = lab.ours(lab.cli, client_profile(lab.pki, "udp", protection="tls-crypt"), "ours", wait=30)
        procs.append(cli)
        dropped = lab.srv.run("nft list table inet atk36_drop_first").stdout
        assert "counter packets 1 " in dropped, dropped        # the loss did happen, once
        assert lab.wait_ping(lab.cli, TUN_SERVER_IP, within=20), "no traffic through the tunnel"
        assert "TLS key negotiation failed" not in cli.log()
    finally:
        for p in reversed(procs):
            p.stop_promptly(5)
        lab.srv.run("nft delete table inet atk36_drop_first", check=False)
