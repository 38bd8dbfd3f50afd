"""appliance/tun/rtnl.py bounds each send and receive with the kernel's socket timeouts on a
blocking socket: Python's settimeout made every request poll(2) before its send and before its
receive (two system calls more per request, three requests when a push is applied, on the way
to the first packet), and a request must still never wait for ever."""
from __future__ import annotations

import socket
import struct
import threading

from appliance.tun import rtnl


def _timeval(sock: socket.socket, opt: int) -> float:
    sec, usec = struct.unpack("@ll", sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("@ll")))
    return sec + usec / 1e6


def test_the_socket_blocks_and_the_kernel_bounds_each_wait():
    with rtnl.Rtnl() as nl:
        assert nl.sock.gettimeout() is None and nl.sock.getblocking()     # no poll before each call
        assert _timeval(nl.sock, socket.SO_RCVTIMEO) == rtnl.TIMEOUT
        assert _timeval(nl.sock, socket.SO_SNDTIMEO) == rtnl.TIMEOUT


def test_a_receive_with_no_answer_ends_with_an_oserror(monkeypatch):
    monkeypatch.setattr(rtnl, "TIMEOUT", 0.2)
    got: list[BaseException] = []

    def wait() -> None:
        with rtnl.Rtnl() as nl:
            try:
                nl.sock.recv(65536)            # nothing was asked: no answer comes
            except OSError as e:
                got.append(e)

    t = threading.Thread(target=wait, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "the receive did not end"
    assert got and isinstance(got[0], OSError)


def test_requests_are_answered_as_before():
    with rtnl.Rtnl() as nl:
        assert any(idx == socket.if_nametoindex("lo") for _f, _a, _p, idx in nl.addrs(socket.AF_INET))
