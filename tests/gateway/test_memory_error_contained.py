"""A MemoryError on one peer's path is contained as any fault of ours; many in a row end the
gateway. It ended the gateway at once: a client's data packet, a TCP read or a push that met one
(Python raises it for one allocation too large, whose size a packet can lead to) ended the
server and every client's session (lab/reliability/fault_sweep.py --exc memory: 45 server sites
over UDP and TCP). A host truly out of memory still ends it: MEMORY_ERRORS_FATAL within
MEMORY_WINDOW seconds."""
from __future__ import annotations

import pytest

from appliance.gateway.loop import MEMORY_ERRORS_FATAL, MEMORY_WINDOW

from .conftest import client_conf, ipv4_udp, server_conf


def _world(world, pki):
    world.add_server(server_conf(pki, "udp"))
    for i in range(2):
        world.add_client(client_conf(pki, f"client{i}"))
    assert world.run(lambda: all(world.client_addr(i) for i in range(2)), max_time=30)
    return world


def _pings(world, i: int, tag: bytes) -> bool:
    pkt = ipv4_udp(world.client_addr(i), "198.19.0.1", tag)
    world.client_nets[i].tun.inject(pkt)
    return world.run(lambda: pkt in world.server_net.tun.written, max_time=5)


def test_one_memory_error_in_the_servers_handling_of_one_client_ends_nothing_else(world, pki, monkeypatch):
    _world(world, pki)
    d = world.server.d
    real = d.note_sent
    left = [1]

    def note_sent(*a, **k):  # noqa: ANN002, ANN003
        if left[0]:
            left[0] -= 1
            raise MemoryError
        return real(*a, **k)
    monkeypatch.setattr(d, "note_sent", note_sent)
    world.server_net.tun.inject(ipv4_udp("198.19.0.1", world.client_addr(0), b"to client0"))
    world.run_for(1)
    assert left == [0] and world.server.result is None
    assert world.server.faults.counts.get("internal error") == 1
    assert _pings(world, 0, b"after-0") and _pings(world, 1, b"after-1")


def test_memory_errors_that_keep_coming_end_the_gateway(world, pki):
    """They leave the loop (run_gateway then logs "fatal: out of memory" and returns 1)."""
    _world(world, pki)
    pump = world.server.pump
    n = [0]

    def oom() -> None:
        n[0] += 1
        pump.timers.arm("oom", world.clock() + MEMORY_WINDOW / (2 * MEMORY_ERRORS_FATAL), oom)
        raise MemoryError
    pump.timers.arm("oom", world.clock(), oom)
    with pytest.raises(MemoryError):
        world.run(lambda: False, max_time=MEMORY_WINDOW + 5)
    assert n[0] == MEMORY_ERRORS_FATAL
    assert world.server.faults.counts.get("internal error") == MEMORY_ERRORS_FATAL - 1


def test_memory_errors_spread_out_are_each_contained(world, pki):
    _world(world, pki)
    pump = world.server.pump
    n = [0]

    def oom() -> None:
        n[0] += 1
        if n[0] < 3 * MEMORY_ERRORS_FATAL:
            pump.timers.arm("oom", world.clock() + MEMORY_WINDOW / 10, oom)
        raise MemoryError
    pump.timers.arm("oom", world.clock(), oom)
    world.run(lambda: n[0] >= 3 * MEMORY_ERRORS_FATAL, max_time=3 * MEMORY_ERRORS_FATAL * MEMORY_WINDOW / 10 + 5)
    assert n[0] == 3 * MEMORY_ERRORS_FATAL and world.server.result is None
    assert _pings(world, 1, b"still")


@pytest.fixture(autouse=True)
def _quiet_tracebacks(caplog):
    caplog.set_level("ERROR", logger="vpn-appliance")


def test_a_memory_error_midway_through_a_send_batch_sends_no_datagram_twice(world, pki, monkeypatch):
    """The server's sends of one wake-up go out address by address (_flush_sends); one that
    raised left the whole batch queued, so the next wake-up sent the addresses before it again
    (every client there saw replays) -- and, had it kept raising, again at every wake-up while
    the queue grew. Now what one wake-up queued is given up with it: what had gone out is not
    sent again (what had not is lost, as a datagram on the way)."""
    _world(world, pki)
    udp = world.server.udp
    real = udp.send_batch
    sent: list[bytes] = []
    left = [1]

    def send_batch(ps, addr=None):  # noqa: ANN001, ANN202
        if left[0] and addr == world.server.d.clients[1].addr and sent:
            left[0] -= 1
            raise MemoryError
        sent.extend(bytes(p) for p in ps)
        return real(ps, addr)
    monkeypatch.setattr(udp, "send_batch", send_batch)
    for i in range(2):          # one TUN batch: a packet for each client, sent in one flush
        world.server_net.tun.inject(ipv4_udp("198.19.0.1", world.client_addr(i), b"to client%d" % i))
    world.run_for(2)
    assert left == [0], "the fault was not met"
    assert world.server.result is None
    assert len(sent) == len(set(sent)), "a datagram was sent twice"
    assert _pings(world, 0, b"after-0") and _pings(world, 1, b"after-1")
