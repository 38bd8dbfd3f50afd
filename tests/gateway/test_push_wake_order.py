"""What the client does between PUSH_REPLY and its first data packet (gateway/client.py; README,
issue 11, firstpkt49): the ACK of the push is wrapped after the first data packet went out, not
before the tunnel is set up, and still goes out in the same wake-up (the server does not send
the push again); the recursive-routing drop is made before the session's first packet, not at the
first TUN read after the push, and still drops. In memory, real pumps; our server's datagrams
read one per wake-up, as OpenVPN 2.6's server's PUSH_REPLY arrives alone (lab.first_packet)."""
from __future__ import annotations

import pytest

from appliance.gateway.client import ClientGateway
from appliance.openvpn.config import parse_config
from lab.fakes import FakeTunnelNetwork, MemoryPorts, MemoryWaiter
from tests.gateway.conftest import SERVER_IP, World, client_conf, server_conf

# A LAN packet (IPv4/UDP, 28 bytes) from the client's tunnel address to the server's.
_WAITING = (bytes.fromhex("4500001c000040004011") + bytes(2) + bytes([198, 19, 0, 2, 198, 19, 0, 1])
            + bytes.fromhex("d431d4310008") + bytes(2))


def _client(pki, protection: str, extra: str = ""):
    """A client whose link reads one datagram per wake-up; `log`: ("send", opcode) per datagram
    sent, "wrap" per control packet wrapped, ("in", opcode) per datagram read."""
    w = World()
    w.add_server(server_conf(pki, protection=protection))
    net, port = FakeTunnelNetwork(w.net), MemoryPorts(w.net, "198.18.0.2")
    c = ClientGateway(parse_config(client_conf(pki, protection=protection, extra=extra), "/mem/client.ovpn"),
                      port, net, w.clock, MemoryWaiter(w.net))
    w.clients.append(c)
    log: list = []
    udp = port.udp

    def watch_udp(*a, **k):
        t = udp(*a, **k)
        send, recv = t.send, t.recv_payloads

        def record(datagram, addr=None):
            log.append(("send", datagram[0] >> 3))
            return send(datagram, addr)

        def one(limit=64):
            got = recv(1)
            log.extend(("in", d[0] >> 3) for d in got)
            return got
        t.send = record
        t.send_batch = lambda ds, addr=None: [record(d, addr) for d in ds] and None
        t.recv_payloads = one
        return t
    port.udp = watch_udp
    return w, c, net, log


@pytest.mark.parametrize("protection", ["none", "tls-crypt"])
def test_the_push_is_acked_after_the_first_data_packet_and_wrapped_only_then(pki, protection):
    w, c, net, log = _client(pki, protection)
    c.start()
    wrapper = c.conn.session.wrapper
    wrap = wrapper.wrap
    wrapper.wrap = lambda *a, **k: (log.append("wrap"), wrap(*a, **k))[1]
    net.tun.inject(_WAITING)
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30), "tunnel did not come up"
    first = log.index(("send", 9))
    push = max(i for i, e in enumerate(log[:first]) if e == ("in", 4))      # the datagram read before it
    # Between reading the push and sending the packet that waited, nothing was wrapped or sent; the
    # push's ACK is wrapped and sent right after, in that wake-up.
    assert log[push + 1:first + 3] == [("send", 9), "wrap", ("send", 5)], log[push - 2:first + 4]
    pushes = log.count(("in", 4))
    w.run_for(8)                            # past the server's retransmission timeout (2 s, doubling)
    assert log.count(("in", 4)) == pushes, "the server sent a control packet again: the ACK did not count"
    assert c.conn.was_up and c.connections == 1


def test_the_recursive_routing_drop_is_made_before_the_first_packet_and_still_drops(pki):
    w, c, net, log = _client(pki, "tls-crypt")
    c.start()
    g = c._recursive                        # noqa: SLF001 - made before the first packet
    assert log and log[0] == ("send", 7) and g is not None and g.key == SERVER_IP
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30), "tunnel did not come up"
    sent = log.count(("send", 9))
    # to the server's own (WAN) address: dropped, not sealed, as OpenVPN 2.6 drops it
    to_server = bytearray(_WAITING)
    to_server[16:20] = bytes(int(x) for x in SERVER_IP.split("."))
    net.tun.inject(bytes(to_server))
    w.run_for(1)
    assert log.count(("send", 9)) == sent and g.dropped == 1 and c._recursive is g    # noqa: SLF001


def test_allow_recursive_routing_makes_no_drop(pki):
    w, c, net, log = _client(pki, "none", extra="allow-recursive-routing")
    c.start()
    assert c._recursive is None             # noqa: SLF001
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30), "tunnel did not come up"


@pytest.mark.parametrize("advertise_ekm", [True, False])
def test_the_ekm_key_block_is_exported_before_the_push_once_and_keys_the_data(pki, monkeypatch, advertise_ekm):
    """Offering TLS-EKM, the client exports the key block when the key-method messages are read
    (the push only says whether it is used), once, and the data channel works with it: the same
    bytes the server derives. Not offering it, nothing is exported (PRF keys)."""
    from appliance.openvpn.tls import TlsEndpoint
    from tests.gateway.test_tunnel import ping_both_ways
    w = World()
    w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki), advertise_ekm=advertise_ekm)
    calls: list = []
    real = TlsEndpoint.export_keying_material

    def export(self, label, length):
        s = c.conn.session if c.conn is not None else None
        if s is not None and s.keys.get(0) is not None and s.keys[0].tls is self:
            calls.append(s.pushed is None or not s.pushed.complete)     # before the push is read
        return real(self, label, length)
    monkeypatch.setattr(TlsEndpoint, "export_keying_material", export)
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30), "tunnel did not come up"
    s = c.conn.session
    assert calls == ([True] if advertise_ekm else []), calls
    assert s.ekm is advertise_ekm and s.keys[0].ekm_block is None        # taken, not kept
    ping_both_ways(w, 0)


def test_a_held_flush_that_ends_the_session_restarts_the_client_though_the_server_goes_silent(pki):
    """The held ACK's wrapping (flush_held, after the tunnel's set-up) can end the session: here the
    server left more than SEND_QUEUE_MAX of our control messages unacknowledged when it pushed (the
    reliability layer's own refusal, reliable.due). The client acts on that end in the same wake-up
    and reconnects; before, the closed session armed no timer and its end was read only with the
    server's next datagram -- from a server gone silent, never: a client "up" for ever."""
    from appliance.openvpn.reliable import SEND_QUEUE_MAX, SEND_WINDOW
    w, c, net, log = _client(pki, "none")
    c.start()
    s = c.conn.session
    silent = []
    real_established = s._set_established       # noqa: SLF001

    def established():
        real_established()
        rel = s.keys[0].reliable
        for _ in range(SEND_QUEUE_MAX + SEND_WINDOW + 1):
            rel.enqueue(4, b"unacknowledged\0")     # P_CONTROL_V1 messages the server never acked
        silent.append(w.clock())
    s._set_established = established            # noqa: SLF001
    real = w.net.deliver

    def deliver(data, src, dst):
        if not (silent and src[0] == SERVER_IP):     # not a datagram from the server after its push
            real(data, src, dst)
    w.net.deliver = deliver
    assert w.run(lambda: c.conn is None or c.conn.session is not s, max_time=120), "the client never started over"
    assert silent and s.closed and w.clock() - silent[0] < 5, (silent, w.clock())


class _NotedWatch:
    """The route keeper's watch port (tun/route_watch.py) in memory: the kernel's notes queued,
    readable while any is; `reads` records (loop steps so far, notes read) per changed() call."""
    has_pending = False
    concerns = None
    log: list | None = None

    def __init__(self, net) -> None:
        from lab.fakes import _fds
        self.net, self.fd, self.notes, self.reads = net, next(_fds), [], []
        net.by_fd[self.fd] = self

    def fileno(self) -> int:
        return self.fd

    def readable(self) -> bool:
        return bool(self.notes)

    def writable(self) -> bool:
        return False

    def changed(self, limit: int = 16) -> bool:
        got, self.notes = self.notes, []
        self.reads.append(len(got))
        if self.log is not None:
            self.log.append(("notes read", len(got)))
        return bool(got)

    def close(self) -> None:
        self.net.by_fd.pop(self.fd, None)


def test_the_note_of_the_tunnels_address_is_read_in_the_pushs_wake_up(pki):
    """Setting the pushed address makes the kernel note an IPv4 address added on a device of our
    routes, a hint for the route keeper (compat42), queued before the request's answer. It is read
    in the wake-up that set the tunnel up, after the first data packet -- not at a loop turn of its
    own beside the echo (firstpkt50) -- and judged as before: one check of the routes, SETTLE later."""
    from appliance.gateway.route_keeper import Pacing
    w, c, net, log = _client(pki, "tls-auth")
    watch = _NotedWatch(w.net)
    watch.log = log
    c.ports.route_watch = lambda: watch
    restored: list = []
    net.restore_routes = lambda: (restored.append(w.clock()), ([], []))[1]
    net.kept_routes = lambda: [{"dst": "198.19.0.0", "prefixlen": 24, "oif": 7}]
    apply = net.apply

    def apply_and_note(pushed, remote_ip):
        apply(pushed, remote_ip)
        watch.notes.append("RTM_NEWADDR tun-client")        # what the kernel queues at the address
    net.apply = apply_and_note
    ready: list = []
    wait = c.pump.waiter.wait

    def watched_wait(timeout):
        got = wait(timeout)
        ready.extend(1 for (h, _r, _w) in got if getattr(h[0], "__name__", "") == "_on_hint")
        log.append("wake")
        return got
    c.pump.waiter.wait = watched_wait
    c.start()
    assert c._route_keeper is not None and c._route_keeper.watch is watch     # noqa: SLF001
    net.tun.inject(_WAITING)
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30), "tunnel did not come up"
    first = log.index(("send", 9))
    w.run_for(Pacing.SETTLE + 1)
    assert ready == [], "the loop woke for the address's note"
    assert watch.reads and watch.reads[0] == 1 and not watch.notes
    read = log.index(("notes read", 1))
    assert first < read and "wake" not in log[first:read], log[first - 1:read + 1]   # the same wake-up
    assert len(restored) == 1, restored                 # the hint still armed its check


def test_a_bug_in_reading_the_note_at_the_push_does_not_end_the_session(pki):
    """Our bug in the route watch's reading at the push (RouteKeeper.read_now) is counted and
    logged as the loop counts it in a wake-up of the watch's own; the tunnel just brought up stays
    up, and the note is still judged at the watch's next wake-up. Before (review50d), it went up
    to the push wake-up's guard, which ended the session and started the client over."""
    w, c, net, log = _client(pki, "none")
    watch = _NotedWatch(w.net)
    c.ports.route_watch = lambda: watch
    restored: list = []
    net.restore_routes = lambda: (restored.append(w.clock()), ([], []))[1]
    net.kept_routes = lambda: [{"dst": "198.19.0.0", "prefixlen": 24, "oif": 7}]
    apply = net.apply

    def apply_and_note(pushed, remote_ip):
        apply(pushed, remote_ip)
        watch.notes.append("RTM_NEWADDR tun-client")
    net.apply = apply_and_note
    changed, bugs = watch.changed, []

    def buggy_once(limit: int = 16) -> bool:
        if not bugs:
            bugs.append(w.clock())
            raise RuntimeError("a bug of ours judging a note")
        return changed(limit)
    watch.changed = buggy_once
    c.start()
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30), "tunnel did not come up"
    s = c.conn.session
    w.run_for(2)
    assert bugs and c.faults.counts.get("internal error") == 1, c.faults.counts
    assert c.conn is not None and c.conn.session is s and not s.closed and c.connections == 1
    assert len(restored) == 1, restored                 # the note, read at the watch's wake-up, still counts
