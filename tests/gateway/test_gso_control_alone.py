"""Where a GSO batch ends, on in-memory ports: renegotiations under traffic, our server and our
client each handing their transport, in one wake-up, control packets among data packets. Every
control packet must leave in a send of its own and every GSO send hold data packets only: a GSO
send is one skb for the sending host's firewall (nftables output hook, tc, a packet socket), which
judges it by its first datagram, and OpenVPN 2.6 sends each control packet alone. The data packets
between them still go in batches. (On the wire, against Debian's OpenVPN:
tests/interop/test_control_alone_on_the_wire.py.)"""
from __future__ import annotations

from appliance.transport.udp import UdpTransport
from lab.fakes import MemoryDatagramSocket
from tests.gateway.conftest import SERVER_IP, World, client_conf, ipv4_udp, server_conf
from tests.gateway.test_tunnel import SERVER_TUN, _up

DATA_OPS = (6, 9)                    # P_DATA_V1, P_DATA_V2


def _is_data(d: bytes) -> bool:
    return bool(d) and d[0] >> 3 in DATA_OPS


def test_control_packets_leave_alone_and_data_keeps_its_batches(pki, monkeypatch):
    handed: list[tuple[str, list[bytes]]] = []     # (sender, datagrams) per send_batch call
    calls: list[tuple[str, list[bytes]]] = []      # (sender, datagrams) per system call

    orig_batch = UdpTransport.send_batch

    def send_batch(self, datagrams, addr=None):
        handed.append((self.sock.ip, [bytes(d) for d in datagrams]))
        return orig_batch(self, datagrams, addr)

    orig_send, orig_sendto, orig_sendmsg = (MemoryDatagramSocket.send, MemoryDatagramSocket.sendto,
                                            MemoryDatagramSocket.sendmsg)

    def send(self, data):
        calls.append((self.ip, [bytes(data)]))
        return orig_send(self, data)

    def sendto(self, data, addr):
        calls.append((self.ip, [bytes(data)]))
        return orig_sendto(self, data, addr)

    def sendmsg(self, buffers, cmsg=(), flags=0, addr=None):
        calls.append((self.ip, [bytes(b) for b in buffers]))
        return orig_sendmsg(self, buffers, cmsg, flags, addr)

    monkeypatch.setattr(UdpTransport, "send_batch", send_batch)
    for name, fn in (("send", send), ("sendto", sendto), ("sendmsg", sendmsg)):
        monkeypatch.setattr(MemoryDatagramSocket, name, fn)

    w = World()
    w.add_server(server_conf(pki, "udp", extra="reneg-sec 10\nhand-window 5\n"))
    c = w.add_client(client_conf(pki, "client0", extra="reneg-sec 7\nhand-window 5\n"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    a = w.client_addr(0)
    ctun, stun = w.client_nets[0].tun, w.server_net.tun
    socks = {s.ip: s for s in w.net.udp.values()}
    tun_of = {SERVER_IP: (stun, SERVER_TUN, a), w.client_ports[0].ip: (ctun, a, SERVER_TUN)}
    sent, last = [0], [w.clock.t]

    def traffic() -> bool:
        """A burst of equal-size packets into each side's TUN whenever a control packet waits at
        its socket or the clock moved (a timer is due: a soft reset to start, a retransmission):
        the next wake-up has both, and sends control packets with the burst's data packets (as a
        loaded host's epoll hands over the socket, the timer and the TUN together). Bounded."""
        moved, last[0] = w.clock.t != last[0], w.clock.t
        for ip, (tun, src, dst) in tun_of.items():
            s = socks[ip]
            if (moved or s.inbox and not _is_data(s.inbox[0][0])) and sent[0] < 20_000:
                for _ in range(8):
                    tun.inject(ipv4_udp(src, dst, bytes(600)))
                sent[0] += 8
        return w.clock.t >= end

    end = w.clock.t + 40
    w.run(traffic, max_time=41)
    assert _up(w, 0) and c.connections == 1
    resets = [ip for ip, ds in calls for d in ds if d[0] >> 3 == 3]       # P_CONTROL_SOFT_RESET_V1
    assert len(resets) >= 4, f"too few renegotiations: {len(resets)} soft resets sent"

    # The server's gateway did hand its transport control packets among data packets (a run of
    # the burst's data packets, then the control packets the same wake-up made). (Our client's
    # hand-overs mix on a real host -- the interop test -- but not in this stepped world.)
    mixed = {ip for ip, ds in handed if any(map(_is_data, ds)) and not all(map(_is_data, ds))}
    assert SERVER_IP in mixed
    # ... and none left with data in one send: each control packet alone, GSO sends all data.
    shared = [(ip, [d[0] >> 3 for d in ds]) for ip, ds in calls if len(ds) > 1 and not all(map(_is_data, ds))]
    assert not shared, shared[:5]
    controls = sum(not _is_data(d) for _ip, ds in calls for d in ds)
    assert controls >= 20
    # The data still left in batches, from both.
    batched = {ip for ip, ds in calls if len(ds) > 1}
    assert batched == {ip for ip, _ in calls}, batched
