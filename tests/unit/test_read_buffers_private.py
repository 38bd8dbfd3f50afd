"""review46b: the read buffers made as anonymous mappings (soak45) are not shared with children.

`mmap.mmap(-1, n)` is MAP_SHARED: every process forked after the mapping was made kept a live
view of it. The client opens its TUN before the management socket's root helper forks
(host/unlink_at_exit.py, with `user`), so that helper saw, in the clear, each over-MTU packet and
TSO super-packet the TUN read afterwards (the spill buffer), and each datagram of the UDP
transport's Python receive. A child must see at most what was there at its fork, as with the
bytearrays these buffers were before. No root needed: a socket pair stands in for the TUN."""
from __future__ import annotations

import os
import select
import socket

from appliance.transport import udp
from appliance.tun.device import TunDevice

SECRET = b"\x45secret-of-a-packet-read-after-the-fork" * 240      # 9,360 bytes: over the MTU, spilled


def _fork_watcher(look) -> tuple[int, int, int]:
    """A child that waits for a byte on a pipe, then writes back `look()` (bytes) and exits.
    -> (its pid, the pipe to wake it, the pipe to read its answer)."""
    go_r, go_w = os.pipe()
    ans_r, ans_w = os.pipe()
    pid = os.fork()
    if pid == 0:                                    # the child: never returns
        try:
            os.read(go_r, 1)
            os.write(ans_w, look())
        finally:
            os._exit(0)
    os.close(go_r)
    os.close(ans_w)
    return pid, go_w, ans_r


def _answer(pid: int, go_w: int, ans_r: int) -> bytes:
    os.write(go_w, b"!")
    try:
        assert select.select([ans_r], [], [], 20)[0], "the forked child did not answer within 20 s"
        return os.read(ans_r, 1 << 16)
    finally:
        os.waitpid(pid, 0)
        os.close(go_w)
        os.close(ans_r)


def test_a_child_forked_after_the_tun_opened_sees_no_packet_read_later():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 18)
    b.setblocking(False)
    dev = TunDevice.__new__(TunDevice)
    dev.fd, dev.hlen, dev.name, dev.tap, dev._mtu = b.fileno(), 0, "fake", False, 1500
    dev._init_pool()
    dev.stats = {"read": 0, "spilled": 0}
    try:
        child = _fork_watcher(lambda: bytes(dev._spill[:len(SECRET)]))
        a.send(SECRET)
        got = dev.read_batch(4)
        assert [bytes(p) for p in got] == [SECRET] and dev.stats["spilled"] == 1
        seen = _answer(*child)
        assert b"secret" not in seen and seen == bytes(len(SECRET)), "the child saw the packet"
    finally:
        a.close()
        b.close()


def test_a_child_forked_after_the_udp_socket_opened_sees_no_datagram_read_later(monkeypatch):
    t = udp.UdpTransport(("127.0.0.1", 0), gro=False)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        monkeypatch.setattr(t, "_recv_from_many", None)          # the Python receive, into rbuf
        child = _fork_watcher(lambda: bytes(t.rview[:len(SECRET)]))
        s.sendto(SECRET, t.sock.getsockname())
        got: list = []
        for _ in range(50):
            if select.select([t.sock], [], [], 0.2)[0]:
                got += t.recv_batch(8)
            if got:
                break
        assert [g[0] for g in got] == [SECRET]
        seen = _answer(*child)
        assert b"secret" not in seen and seen == bytes(len(SECRET)), "the child saw the datagram"
    finally:
        s.close()
        t.sock.close()
