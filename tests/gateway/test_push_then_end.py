"""A server that ends the session in the same batch as its PUSH_REPLY (RESTART, HALT or
AUTH_FAILED right behind the push; a `client-kill` just after the push, or a hostile server):
the client acts in wire order -- the push is applied, then the session ends -- and sends no data
on the ending session. OpenVPN 2.6.14's client reads the control messages of one TLS read in
order in one call (forward.c check_incoming_control_channel: do_up for PUSH_REPLY, then the
signal), and reads the socket before the TUN (process_io), so nothing waiting in the TUN goes out
between the two; ours read the TUN as part of the push's set-up (README, firstpkt49) and sent what
waited there under keys the server had just dropped (README, batch50)."""
from __future__ import annotations

import pytest

from appliance.gateway.client import ClientGateway
from appliance.openvpn.config import parse_config
from appliance.openvpn.session import Session
from lab.fakes import FakeTunnelNetwork, MemoryPorts, MemoryWaiter
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_push_wake_order import _WAITING

_DATA_V2, _HARD_RESET_CLIENT_V2 = 9, 7


def _world(pki, monkeypatch, last_word: str | None, proto: str = "udp"):
    """Our server, whose PUSH_REPLY is followed at once by `last_word` (None: nothing) on the same
    key; a client whose sent datagrams are logged as ("send", opcode)."""
    real = Session._send_text

    def send_text(self, text, ks=None):
        sent = real(self, text, ks)
        if sent and last_word is not None and not self.role.is_client and text.startswith("PUSH_REPLY"):
            real(self, last_word, ks)
        return sent
    monkeypatch.setattr(Session, "_send_text", send_text)
    w = World()
    w.add_server(server_conf(pki, proto))
    net, port = FakeTunnelNetwork(w.net), MemoryPorts(w.net, "198.18.0.2")
    c = ClientGateway(parse_config(client_conf(pki, proto=proto, extra="auth-retry nointeract"), "/mem/client.ovpn"),
                      port, net, w.clock, MemoryWaiter(w.net))
    w.clients.append(c)
    log: list = []
    udp = port.udp

    def watch_udp(*a, **k):
        t = udp(*a, **k)
        send = t.send

        def record(datagram, addr=None):
            log.append(("send", datagram[0] >> 3))
            return send(datagram, addr)
        t.send = record
        t.send_batch = lambda ds, addr=None: [record(d, addr) for d in ds] and None
        return t
    port.udp = watch_udp
    tcp = port.tcp_connect

    def watch_tcp(*a, **k):
        t = tcp(*a, **k)
        send, stream = t.send, bytearray()

        def record(data, keep=False):
            stream.extend(data)         # whole frames (2-byte length, packet), one or more
            while len(stream) >= 3 and len(stream) >= 2 + int.from_bytes(stream[:2], "big"):
                log.append(("send", stream[2] >> 3))
                del stream[:2 + int.from_bytes(stream[:2], "big")]
            return send(data, keep)
        t.send = record
        return t
    port.tcp_connect = watch_tcp
    return w, c, net, log


# (review50a: AUTH_FAILED,TEMP, RESTART's [N] flag, EXIT and TCP, ending the session each its own way.)
@pytest.mark.parametrize("last_word,proto", [
    ("RESTART", "udp"), ("AUTH_FAILED", "udp"), ("HALT", "udp"), ("AUTH_FAILED,TEMP[backoff 1]", "udp"),
    ("RESTART,[N]", "udp"), ("EXIT", "udp"), ("RESTART", "tcp"), ("HALT", "tcp")])
def test_an_end_behind_the_push_sends_no_data_and_ends_the_session(pki, monkeypatch, last_word, proto):
    w, c, net, log = _world(pki, monkeypatch, last_word, proto)
    c.start()
    net.tun.inject(_WAITING)                # a LAN packet waiting in the TUN for the tunnel
    first = c.conn
    assert w.run(lambda: first.was_up and c.conn is not first, max_time=30), \
        "the push was not applied, or the session did not end"
    # Applied (as 2.6's do_up before the signal), then ended: nothing of the TUN's went out.
    assert ("send", _DATA_V2) not in log, log
    if last_word != "HALT":
        assert w.run(lambda: log.count(("send", _HARD_RESET_CLIENT_V2)) >= 2, max_time=30), \
            "the client did not start over"
    else:
        assert w.run(lambda: c.result is not None, max_time=30), "HALT did not end the run"


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_without_an_end_the_waiting_packet_goes_out_with_the_push(pki, monkeypatch, proto):
    """The same world with nothing behind the push: the packet that waited is sent at the push (the
    control for the case above, firstpkt49's order unchanged; over TCP, the frames' reading too)."""
    w, c, net, log = _world(pki, monkeypatch, None, proto)
    c.start()
    net.tun.inject(_WAITING)
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30), "tunnel did not come up"
    assert w.run(lambda: ("send", _DATA_V2) in log, max_time=5), log
