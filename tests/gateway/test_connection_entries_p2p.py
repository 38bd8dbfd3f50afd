"""<connection> blocks in a point-to-point tls-client profile (no `pull`): each connection runs
with the whole profile and its block's own lines in place -- the global tls-crypt key, the p2p
link, every global line after the blocks -- as for a pulling client. Before, such a remote's
settings were the raw copy taken at the block's line (keys emptied, nothing of the lines after
it, not even the profile being point-to-point): the client sent its resets without the tls-crypt
key the profile names, as a pulling client. Here against our own p2p tls-server on in-memory
ports, which holds that key and answers nothing without it."""
from __future__ import annotations

from appliance.gateway import ClientGateway
from appliance.openvpn.config import parse_config
from lab.fakes import FakeClock, FakeTunnelNetwork, MemoryNet, MemoryPorts, MemoryWaiter
from lab.gateway_world import run_pumps
from tests.gateway.conftest import SERVER_IP, STATIC_KEY, _blocks

PEER_IP = "198.18.0.2"


def _gateway(net: MemoryNet, clock: FakeClock, ip: str, text: str) -> ClientGateway:
    gw = ClientGateway(parse_config(text, f"/mem/{ip}.conf"), MemoryPorts(net, ip), FakeTunnelNetwork(net), clock,
                       MemoryWaiter(net))
    gw.start()
    return gw


def test_a_p2p_block_without_a_key_of_its_own_runs_with_the_global_tls_crypt_key(pki):
    net, clock = MemoryNet(), FakeClock()
    key = f"<tls-crypt>\n{STATIC_KEY}\n</tls-crypt>\n"
    srv = _gateway(net, clock, SERVER_IP,
                   f"dev tun\ntls-server\ndh none\nifconfig 10.9.0.1 10.9.0.2\nport 1194\n{_blocks(pki, pki['server'], '')}"
                   f"{key}remote {PEER_IP}\nfloat\n")
    peer = _gateway(net, clock, PEER_IP,
                    f"dev tun\ntls-client\nifconfig 10.9.0.2 10.9.0.1\nnobind\n{_blocks(pki, pki['clients']['client0'], '')}"
                    f"<connection>\nremote {SERVER_IP} 1194\n</connection>\n"
                    f"{key}remote-cert-tls server\n")          # global lines after the block count too
    e = peer.opts.remotes[0].entry
    assert e is not None and e.p2p and e.tls_crypt == peer.opts.tls_crypt and e.remote_cert_tls == "server"
    assert run_pumps(clock, [srv.pump, peer.pump], lambda: all(g.conn is not None and g.conn.was_up
                                                               for g in (srv, peer)), max_time=60)
    assert peer.conn.session.cfg.p2p
