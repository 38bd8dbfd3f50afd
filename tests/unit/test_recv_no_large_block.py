"""soak44: a stream read does not ask the allocator for its largest size each time.

`sock.recv(262144)` made a 256 KiB bytes object per read and shrank it to what came: on the
server's main heap, once glibc's mmap threshold had risen, each such request that found no free
run of that size extended the heap (the only brk after start-up in a 22-minute TCP soak, its stack
sock_recv), and the heap crept over thousands of connections with nothing more in use
(lab/reliability/RESULTS.md, soak44). Shown here with tracemalloc's peak: what a small read
allocates beyond its result."""
from __future__ import annotations

import select
import socket
import tracemalloc

from appliance.transport.recvbuf import recv_bytes
from appliance.transport.tcp import TcpTransport


def _peak_of(read) -> int:
    tracemalloc.start()
    try:
        read()                              # the first read may make this thread's scratch buffer
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        read()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as lst:
        a = socket.create_connection(lst.getsockname())
        b, _ = lst.accept()
    return a, b


def test_a_tcp_read_of_a_packet_allocates_about_the_packet_not_256_kib():
    a, b = _tcp_pair()
    try:
        t = TcpTransport(b)
        got: list[bytes] = []

        def read() -> None:
            a.send(b"p" * 120)
            assert select.select([b], [], [], 10)[0], "loopback did not deliver within 10 s"
            got.append(t.recv())

        peak = _peak_of(read)
        assert got == [b"p" * 120] * 2
        assert peak < 4096, f"a 120-byte read allocated {peak} bytes at its peak"
    finally:
        a.close()
        b.close()


def test_recv_bytes_reads_as_recv_does():
    a, b = socket.socketpair()
    try:
        b.setblocking(False)
        a.send(b"x" * 70000)
        assert recv_bytes(b, 65536) == b"x" * 65536      # at most the limit, like recv(limit)
        assert recv_bytes(b, 65536) == b"x" * (70000 - 65536)
        try:
            recv_bytes(b, 100)
            raise AssertionError("no data: BlockingIOError expected")
        except BlockingIOError:
            pass
        a.close()
        assert recv_bytes(b, 100) == b""                  # EOF
    finally:
        b.close()


def test_tls_pumps_reuse_their_read_buffer_not_one_per_pump(monkeypatch):
    # The TLS layer's 64 KiB read buffer (cffi, straight from malloc: not in tracemalloc) was
    # made at every pump and drain: the next source of the heap's brk once the reads' were gone.
    import threading

    from cryptography.x509.oid import ExtendedKeyUsageOID

    from appliance.certs import issue
    from appliance.openvpn import tls
    from tests.unit.test_tls_restrictions import _handshake

    made: list[int] = []
    real = tls._alloc

    def counting(*a):  # noqa: ANN002
        made.append(threading.get_ident())
        return real(*a)

    monkeypatch.setattr(tls, "_alloc", counting)
    monkeypatch.setattr(tls, "_spare", [], raising=False)      # no spare buffer yet
    ca = issue("CA", None, None)
    pki = (ca, issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH), issue("client", ca, ExtendedKeyUsageOID.CLIENT_AUTH))
    c, _hello = _handshake(pki)                                 # ~10 pumps and drains of two endpoints
    for i in range(50):
        c.send_message(b"message %d" % i)
        c.drain()
    assert len(made) == 1, f"{len(made)} read buffers made for one handshake and 50 messages"
    t = threading.Thread(target=lambda: _handshake(pki))
    t.start()
    t.join(30)
    assert not t.is_alive() and len(made) == 1                  # another thread later: the spare again


def test_a_udp_socket_holds_no_zeroed_64_kib_buffer_and_its_python_receive_still_works(monkeypatch):
    """soak45: the Python receive's 64 KiB buffer was a zero-filled bytearray made with every
    UdpTransport (resident at once, though the compiled receive never uses it); now anonymous
    pages, resident once written. The Python receive still reads a datagram of 60,000 bytes whole."""
    from appliance.transport import udp

    tracemalloc.start()
    try:
        t = udp.UdpTransport(("127.0.0.1", 0), gro=False)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert held < 16_000, f"a UDP transport holds {held:,} bytes from its open"
        monkeypatch.setattr(t, "_recv_from_many", None)          # the Python receive
        data = bytes(range(256)) * 234 + b"end"
        s.sendto(data, t.sock.getsockname())
        got: list = []
        for _ in range(50):
            if select.select([t.sock], [], [], 0.2)[0]:
                got += t.recv_batch(8)
            if got:
                break
        assert [g[0] for g in got] == [data]
    finally:
        s.close()
        t.sock.close()
