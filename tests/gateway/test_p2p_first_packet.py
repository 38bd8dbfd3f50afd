"""Point-to-point over UDP, our tls-server: what waited in its TUN while the link came up reaches
the peer, and our key-method message goes out before any data (README, batch50). The held
flush of the client's push (firstpkt49: the batch that brings the tunnel up wraps its control
packets after the first data packet) applied here too: the tls-server's tunnel comes up at the
batch that reads the peer's key-method message, whose answer is OUR key-method message -- held
behind the data, which the peer, without keys yet, drops (OpenVPN 2.6: "TLS Error: local/remote
TLS keys are out of sync"). What may wait is an ACK alone; a message the peer needs goes at once."""
from __future__ import annotations

import pytest

from appliance.gateway import ClientGateway
from appliance.openvpn.config import parse_config
from lab.fakes import FakeClock, FakeTunnelNetwork, MemoryNet, MemoryPorts, MemoryWaiter, run_pumps
from tests.gateway.conftest import SERVER_IP, _blocks

PEER_IP = "198.18.0.2"
_LOCAL, _REMOTE = "10.9.0.1", "10.9.0.2"
_CONTROL_V1, _DATA = 4, (6, 9)


def _udp4(src: str, dst: str, payload: bytes) -> bytes:
    import ipaddress
    import struct
    n = 28 + len(payload)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, n, 0, 0x4000, 64, 17, 0,
                      ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return hdr + struct.pack("!HHHH", 5000, 5000, 8 + len(payload), 0) + payload


@pytest.mark.parametrize("protection", ["none", "tls-crypt"])
def test_a_packet_waiting_at_the_p2p_tls_server_reaches_the_peer_and_our_key_method_goes_first(pki, protection):
    net, clock = MemoryNet(), FakeClock()
    common = "dev tun\nproto udp\nport 1194\nhand-window 10\n"
    srv_text = f"{common}tls-server\ndh none\nifconfig {_LOCAL} {_REMOTE}\n" + _blocks(pki, pki["server"], protection)
    cli_text = (f"{common}tls-client\nnobind\nremote {SERVER_IP} 1194\nifconfig {_REMOTE} {_LOCAL}\nremote-cert-tls server\n"
                + _blocks(pki, pki["clients"]["client0"], protection))
    snet, cnet = FakeTunnelNetwork(net), FakeTunnelNetwork(net)
    srv_ports = MemoryPorts(net, SERVER_IP)
    sent: list[int] = []
    udp = srv_ports.udp

    def watch_udp(*a, **k):
        t = udp(*a, **k)
        send = t.send

        def record(datagram, addr=None):
            sent.append(datagram[0] >> 3)
            return send(datagram, addr)
        t.send = record
        t.send_batch = lambda ds, addr=None: [record(d, addr) for d in ds] and None
        return t
    srv_ports.udp = watch_udp
    srv = ClientGateway(parse_config(srv_text, "/mem/p2p-server.conf"), srv_ports, snet, clock, MemoryWaiter(net))
    cli = ClientGateway(parse_config(cli_text, "/mem/p2p-client.conf"), MemoryPorts(net, PEER_IP), cnet, clock,
                        MemoryWaiter(net))
    srv.start()
    pumps = [srv.pump]
    assert run_pumps(clock, pumps, lambda: snet.tun is not None, max_time=10)
    waiting = _udp4(_LOCAL, _REMOTE, b"waited-at-the-tls-server")
    snet.tun.inject(waiting)
    cli.start()
    pumps.append(cli.pump)
    both_up = lambda: all(g.conn is not None and g.conn.was_up for g in (srv, cli))  # noqa: E731
    assert run_pumps(clock, pumps, both_up, max_time=30), "the p2p link did not come up"
    assert run_pumps(clock, pumps, lambda: cnet.tun is not None and waiting in cnet.tun.written, max_time=5), \
        f"the packet that waited at the tls-server never reached the peer; the server sent {sent}"
    first_data = next(i for i, op in enumerate(sent) if op in _DATA)
    # Our key-method message is the server's last control message of the handshake: sent before
    # its first data packet.
    assert sent[:first_data].count(_CONTROL_V1) >= 1 and sent[first_data + 1:].count(_CONTROL_V1) == 0, sent
