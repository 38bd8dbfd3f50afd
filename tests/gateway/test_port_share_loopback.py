"""port-share's relay on real loopback sockets (the kernel's TCP: its buffers, FIN, RST, a refused
connect), on a real pump; no root, no namespace. The in-memory tests (test_port_share.py) cover
the server around it and the timeouts."""
from __future__ import annotations

import socket
import time

from appliance.gateway import portshare as ps
from appliance.gateway.loop import Faults, Pump, SelectorWaiter
from appliance.gateway.system import SystemPorts
from appliance.transport.tcp import TcpTransport

REQUEST = b"GET / HTTP/1.0\r\n\r\n"


class Rig:
    """A relay, a listening 'backend', and a way to make relayed client connections."""

    def __init__(self, backend_up: bool = True) -> None:
        self.pump = Pump(time.monotonic, SelectorWaiter(), Faults())
        self.backend = socket.socket()
        self.backend.bind(("127.0.0.1", 0))
        target = self.backend.getsockname()
        if backend_up:
            self.backend.listen(8)
        else:
            self.backend.close()                 # nobody listens there: connects are refused
        self.front = socket.socket()
        self.front.bind(("127.0.0.1", 0))
        self.front.listen(8)
        self.ps = ps.PortShare(self.pump, self.pump.faults, time.monotonic, SystemPorts().tcp_connect, target, None)
        self.socks = [self.backend, self.front]

    def client(self, head: bytes = REQUEST) -> socket.socket:
        c = socket.create_connection(self.front.getsockname(), timeout=5)
        self.socks.append(c)
        c.sendall(head)
        s, peer = self.front.accept()
        got = s.recv(len(head))
        self.ps.adopt(TcpTransport(s), peer, got)
        return c

    def until(self, cond, seconds: float = 5.0) -> bool:
        end = time.monotonic() + seconds
        for _ in range(100_000):
            if cond():
                return True
            if time.monotonic() > end:
                return False
            self.pump.step(block=False)
            time.sleep(0.0005)
        return cond()

    def close(self) -> None:
        self.ps.close()
        for s in self.socks:
            s.close()
        self.pump.waiter.close()


def test_half_close_and_a_megabyte_answer_on_real_sockets():
    rig = Rig()
    try:
        c = rig.client()
        c.shutdown(socket.SHUT_WR)                           # request sent, nothing more (nc -N)
        b, _ = rig.backend.accept()
        rig.socks.append(b)
        b.setblocking(False)
        got = bytearray()
        eof = []

        def read_request() -> bool:
            try:
                d = b.recv(65536)
            except BlockingIOError:
                return False
            if not d:
                eof.append(1)
                return True
            got.extend(d)
            return False
        assert rig.until(read_request), "the backend never saw the client's FIN"
        assert bytes(got) == REQUEST
        answer = bytes(range(256)) * 4096                    # 1 MiB
        b.setblocking(True)
        b.settimeout(0.01)
        sent = 0
        c.setblocking(False)
        back = bytearray()

        def pump_answer() -> bool:
            nonlocal sent
            if sent < len(answer):
                try:
                    sent += b.send(answer[sent:sent + 65536])
                except (TimeoutError, BlockingIOError):
                    pass
                if sent == len(answer):
                    b.close()
            try:
                d = c.recv(1 << 20)
                if not d:
                    return True
                back.extend(d)
            except BlockingIOError:
                pass
            return False
        assert rig.until(pump_answer, 10), f"{len(back)} of {len(answer)} bytes, then nothing"
        assert bytes(back) == answer
        assert rig.until(lambda: not rig.ps.relays)
    finally:
        rig.close()


def test_a_client_that_never_reads_stops_the_backend_through_tcp():
    """The kernel's buffers fill on the client's side, then our BUFFER, then the backend's own
    sends block: what we hold stays at one buffer whatever the backend offers."""
    rig = Rig()
    try:
        rig.client()
        b, _ = rig.backend.accept()
        rig.socks.append(b)
        b.setblocking(False)
        relay = next(iter(rig.ps.relays.values()))
        sent = 0
        stalled = 0
        for _ in range(20_000):                              # bounded: the backend offers as much as it can
            try:
                sent += b.send(b"x" * 65536)
                stalled = 0
            except BlockingIOError:
                stalled += 1
                if stalled > 200:
                    break
            rig.pump.step(block=False)
        assert stalled > 200, f"the backend was never stopped ({sent} bytes taken)"
        assert len(relay.b2c) <= ps.BUFFER
        assert sent < 64 << 20, sent                         # kernel buffers + one BUFFER, not more
    finally:
        rig.close()


def test_both_sides_writing_and_neither_reading_holds_two_buffers_without_spinning():
    """Each side's reading waits for the other while each still has bytes to take: the pump must
    watch a socket for writability alone (a readable socket it does not read would wake it
    without end), and the relay stays, at one buffer per direction."""
    rig = Rig()
    try:
        c = rig.client()
        b, _ = rig.backend.accept()
        rig.socks.append(b)
        c.setblocking(False)
        b.setblocking(False)
        relay = next(iter(rig.ps.relays.values()))
        stalled = 0
        for _ in range(20_000):
            moved = False
            for s in (c, b):
                try:
                    s.send(b"w" * 65536)
                    moved = True
                except BlockingIOError:
                    pass
            rig.pump.step(block=False)
            stalled = 0 if moved else stalled + 1
            if stalled > 200:
                break
        assert stalled > 200, "the senders were never stopped"
        for _ in range(2000):                                # the stalled state, woken repeatedly
            rig.pump.step(block=False)
        assert relay.rid in rig.ps.relays, f"the relay ended: {rig.pump.faults.counts}"
        assert relay.spins < 10, relay.spins
        assert len(relay.c2b) <= ps.BUFFER and len(relay.b2c) <= ps.BUFFER
        assert "internal error" not in rig.pump.faults.counts
    finally:
        rig.close()


def test_a_refused_backend_closes_the_client_and_counts():
    rig = Rig(backend_up=False)
    try:
        c = rig.client()
        c.settimeout(0.01)

        def closed() -> bool:
            try:
                return c.recv(10) == b""
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
        assert rig.until(closed), "the client's connection stayed open"
        assert any("backend unreachable (ECONNREFUSED)" in k for k in rig.pump.faults.counts), rig.pump.faults.counts
        assert not rig.ps.relays
    finally:
        rig.close()
