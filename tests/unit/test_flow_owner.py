"""tun/flow_owner.py against the real kernel (loopback, no root): a flow counts as delivered here
only when a connected socket owns its exact 4-tuple -- not a listener on the port, not a closed
connection, not another port -- and lookups are cached and rate-limited."""
from __future__ import annotations

import socket

import pytest

from appliance.tun import flow_owner
from appliance.tun.flow_owner import FlowOwners


def _ap(src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """The 12 header bytes the GRO code passes: source, destination addresses, then ports."""
    return (socket.inet_aton(src[0]) + socket.inet_aton(dst[0]) + src[1].to_bytes(2, "big")
            + dst[1].to_bytes(2, "big"))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def pair():
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    c = socket.create_connection(lsock.getsockname())
    s, _ = lsock.accept()
    yield lsock, c, s
    for x in (c, s, lsock):
        x.close()


def test_a_connected_socket_owns_its_flow_in_both_directions(pair):
    _lsock, c, s = pair
    fo = FlowOwners()
    assert fo.owned(_ap(c.getsockname(), s.getsockname()))      # a packet to the accepted socket
    assert fo.owned(_ap(s.getsockname(), c.getsockname()))      # a packet to the connecting one
    assert fo.stats["owned"] == 2 and fo.stats["errors"] == 0, fo.stats


def test_a_listener_another_port_or_another_address_is_not_ownership(pair):
    lsock, c, s = pair
    fo = FlowOwners()
    host, port = lsock.getsockname()
    assert not fo.owned(_ap(("127.0.0.9", 40000), (host, port)))    # only the listener matches the port
    assert not fo.owned(_ap(c.getsockname(), (host, port + 1 if port < 65535 else port - 1)))
    cport = c.getsockname()[1]
    assert not fo.owned(_ap(("127.0.0.1", cport ^ 1 or 1), s.getsockname()))
    assert fo.stats["not_owned"] == 3 and fo.stats["owned"] == 0, fo.stats


def test_a_closed_connection_stops_owning_once_the_cache_entry_expires(pair):
    _lsock, c, s = pair
    clock = Clock()
    fo = FlowOwners(clock)
    ap = _ap(c.getsockname(), s.getsockname())
    assert fo.owned(ap)
    s.close()                  # server side closes first: it goes to FIN_WAIT/TIME_WAIT, then c
    c.close()
    assert fo.owned(ap), "cached within POSITIVE_TTL (the tuple stays unique through TIME_WAIT)"
    clock.t += flow_owner.POSITIVE_TTL + 0.1
    assert not fo.owned(ap)
    assert fo.stats["lookups"] == 2


def test_lookups_are_rate_limited_and_the_cache_bounded(pair, monkeypatch):
    _lsock, c, s = pair
    monkeypatch.setattr(flow_owner, "LOOKUPS_PER_S", 5)
    monkeypatch.setattr(flow_owner, "MAX_ENTRIES", 8)
    clock = Clock()
    fo = FlowOwners(clock)
    for port in range(20000, 20100):              # a peer inventing flows
        assert not fo.owned(_ap(("198.18.0.9", port), s.getsockname()))
    assert fo.stats["lookups"] == 5 and fo.stats["rate_limited"] == 95
    clock.t += 1.0
    assert fo.owned(_ap(c.getsockname(), s.getsockname())), "a real flow is answered in the next second"
    for port in range(21000, 21100):
        clock.t += 0.25
        fo.owned(_ap(("198.18.0.9", port), s.getsockname()))
    assert len(fo.cache) <= 8


def test_no_sock_diag_means_no_ownership(monkeypatch):
    def refuse(*a, **k):
        raise OSError(97, "Address family not supported by protocol")
    monkeypatch.setattr(flow_owner.socket, "socket", refuse)
    fo = FlowOwners()
    assert not fo.owned(_ap(("198.18.0.2", 1), ("198.18.0.1", 2)))
    assert fo.disabled and not fo.owned(_ap(("198.18.0.2", 3), ("198.18.0.1", 2)))


def test_a_flow_still_in_its_handshake_is_asked_about_again_soon():
    """A TUN burst can hold a connection's last handshake ACK and its first data: the data is looked
    at while our socket is still in SYN_RECV. That "no" must not hold for NEGATIVE_TTL (every segment
    of the new connection would be summed here for 2 s), only until the ACK has landed.
    TCP_DEFER_ACCEPT keeps the accepting side in SYN_RECV until data comes, as that race does."""
    lsock = socket.socket()
    lsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    c = socket.create_connection(lsock.getsockname())
    try:
        clock = Clock()
        fo = FlowOwners(clock)
        ap = _ap(c.getsockname(), lsock.getsockname())        # a packet to the accepting side
        assert not fo.owned(ap), "SYN_RECV is not a data-taking state"
        c.sendall(b"x")                                       # the server side becomes ESTABLISHED
        s, _ = lsock.accept()
        try:
            clock.t += flow_owner.HANDSHAKE_TTL + 0.001
            assert flow_owner.HANDSHAKE_TTL < flow_owner.NEGATIVE_TTL / 10
            assert fo.owned(ap), "asked again once HANDSHAKE_TTL passed"
            assert fo.stats["lookups"] == 2, fo.stats
        finally:
            s.close()
    finally:
        c.close()
        lsock.close()


def test_a_flow_with_no_socket_keeps_its_no_for_negative_ttl(pair):
    lsock, _c, s = pair
    clock = Clock()
    fo = FlowOwners(clock)
    ap = _ap(("198.18.0.9", 40000), s.getsockname())
    assert not fo.owned(ap)
    clock.t += flow_owner.HANDSHAKE_TTL * 5
    assert not fo.owned(ap)
    assert fo.stats["lookups"] == 1, "answered from the cache"
    clock.t += flow_owner.NEGATIVE_TTL
    assert not fo.owned(ap) and fo.stats["lookups"] == 2
