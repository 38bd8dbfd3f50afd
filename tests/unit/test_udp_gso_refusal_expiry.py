"""GSO refused for a destination (Linux 6.1, the VM's kernel, says EINVAL when a segment exceeds
that destination's path MTU) is taken back once the path MTU would have: the kernel keeps a
learned path MTU 600 s (net.ipv4.route.mtu_expires). Kept for good before, and at MAX_NO_GSO
such destinations GSO went off for every client until a restart -- which anyone could cause
(atk41): an ICMP "fragmentation needed" naming a client's address, from any source and with any
port quoted, lowers the server's path MTU to it (seen on this lab's kernel), and clients behind
a PPPoE or mobile link do it by themselves over a server's lifetime."""
from __future__ import annotations

import errno

from appliance.transport import udp
from appliance.transport.udp import MAX_NO_GSO, NO_GSO_FOR, UDP_SEGMENT, UdpTransport


class PmtuSock:
    """An unconnected UDP socket whose kernel refuses GSO runs to the destinations in `small`."""

    def __init__(self) -> None:
        self.small: set = set()
        self.gso_sends: list = []
        self.plain: list = []

    def setsockopt(self, *a) -> None:
        pass

    def setblocking(self, flag: bool) -> None:
        pass

    def sendmsg(self, bufs, cmsg=(), flags=0, addr=None) -> int:
        if any(level == udp.SOL_UDP and kind == UDP_SEGMENT for level, kind, _ in cmsg):
            if addr in self.small:
                raise OSError(errno.EINVAL, "Invalid argument")
            self.gso_sends.append(addr)
        else:
            self.plain.append(addr)
        return sum(map(len, bufs))

    def sendto(self, data, addr) -> int:
        self.plain.append(addr)
        return len(data)


def _transport(clock: list) -> tuple[UdpTransport, PmtuSock]:
    s = PmtuSock()
    t = UdpTransport(None, sock=s, gro=False)
    t.clock = lambda: clock[0]
    return t, s


RUN = [b"\x48" + b"x" * 1399] * 4      # data packets (P_DATA_V2): only those share a GSO run


def test_a_destination_refused_gets_gso_again_once_its_path_mtu_would_have_expired():
    clock = [1000.0]
    t, s = _transport(clock)
    client = ("198.18.0.2", 40000)
    s.small.add(client)
    t.send_batch(RUN, client)
    assert s.plain[-4:] == [client] * 4, "the refused run was not sent datagram by datagram"
    s.small.clear()                      # the path MTU is back (expired, or the link changed)
    clock[0] += 10
    t.send_batch(RUN, client)
    assert not s.gso_sends, "GSO tried again at once (a refused destination would cost a failed call a batch)"
    clock[0] += NO_GSO_FOR
    t.send_batch(RUN, client)
    assert s.gso_sends == [client], "GSO never came back for a destination once refused"


def test_refusals_for_many_destinations_turn_gso_off_for_a_while_not_for_good():
    clock = [1000.0]
    t, s = _transport(clock)
    clients = [(f"198.18.1.{i}", 40000) for i in range(MAX_NO_GSO)]
    s.small.update(clients)
    for c in clients:
        t.send_batch(RUN, c)
    other = ("198.18.2.1", 40000)
    t.send_batch(RUN, other)
    assert not s.gso_sends, "GSO still on after MAX_NO_GSO destinations refused it"
    s.small.clear()
    clock[0] += NO_GSO_FOR
    t.send_batch(RUN, other)
    assert s.gso_sends == [other], "GSO stayed off for every client until a restart"


def test_refusals_that_expired_do_not_count_toward_turning_gso_off():
    # MAX_NO_GSO clients refused one at a time, an hour apart (each gone after): none of the
    # refusals is in force when the next comes, so GSO stays on for the others.
    clock = [1000.0]
    t, s = _transport(clock)
    for i in range(MAX_NO_GSO):
        clock[0] += NO_GSO_FOR * 6
        c = (f"198.18.3.{i}", 40000)
        s.small.add(c)
        t.send_batch(RUN, c)
    other = ("198.18.2.1", 40000)
    t.send_batch(RUN, other)
    assert s.gso_sends == [other], "refusals long expired turned GSO off for every client"


def test_a_kernel_without_gso_stays_without():
    class NoGso(PmtuSock):
        def sendmsg(self, bufs, cmsg=(), flags=0, addr=None) -> int:
            if cmsg:
                raise OSError(errno.EIO, "Input/output error")
            return super().sendmsg(bufs, cmsg, flags, addr)
    clock = [1000.0]
    s = NoGso()
    t = UdpTransport(None, sock=s, gro=False)
    t.clock = lambda: clock[0]
    t.send_batch(RUN, ("198.18.0.2", 40000))
    clock[0] += 10 * NO_GSO_FOR
    t.send_batch(RUN, ("198.18.0.2", 40000))
    assert not s.gso_sends and len(s.plain) == 8 and t.gso is False

