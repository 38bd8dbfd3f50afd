"""What a connected client, holding valid keys, can do through the data channel.

Each test is the attack as a hostile client runs it, against the dispatcher in memory.
"""
from __future__ import annotations

import pytest

from appliance.openvpn import events as ev
from appliance.openvpn.server import FLOAT_REPORT_EVERY
from tests.engine.test_server_dispatcher import _icmp, _pump, _up
from tests.engine.test_server_dispatcher import pki  # noqa: F401 - the fixture
from tests.engine.test_server_security import _mk_client, _mk_server
from tests.aead_paths import aead_path  # noqa: F401 - the fixture: both AEAD paths, compiled and Python

pytestmark = pytest.mark.usefixtures("aead_path")


def test_a_client_hopping_between_source_ports_is_not_logged_per_packet(pki):  # noqa: F811
    """An authenticated client sending each data packet from another of its own ports floats
    with every packet (as with OpenVPN 2.6: the packet authenticates). Each float was an event
    and so an INFO log line: one client could write the server's log at its packet rate.
    OpenVPN logs floats at verb 4 only. The moves still happen; the lines come at a limited rate."""
    d = _mk_server(pki)
    a = _mk_client(pki, pki["clients"][0])
    ports = [("198.18.0.70", 40000), ("198.18.0.70", 40001)]
    _pump(d, [(a, ports[0])])
    assert _up(a)
    d.events.clear()
    rec = d.by_addr[ports[0]]
    ping = _icmp(a.pushed.ifconfig[0], "198.19.0.1")
    n = 400
    delivered = 0
    for i in range(n):
        src = ports[(i + 1) % 2]
        delivered += len(d.receive(a.encrypt(ping), src, 2.0 + i * 0.001)[1])
    assert delivered == n                                  # every packet still gets through
    assert rec.addr == ports[n % 2] and d.by_addr[rec.addr] is rec   # and the client is where it last was
    floats = [e for _r, e in d.events if isinstance(e, ev.ClientFloated)]
    assert len(floats) == 1, f"{len(floats)} float events for {n} packets in 0.4 s"
    # A move after the quiet time is reported again, with the count of those only counted.
    d.events.clear()
    d.receive(a.encrypt(ping), ports[1 - n % 2], 2.0 + FLOAT_REPORT_EVERY + 1)
    floats = [e for _r, e in d.events if isinstance(e, ev.ClientFloated)]
    assert [(f.new_addr, f.unreported) for f in floats] == [(ports[1 - n % 2], n - 1)]


def test_an_empty_data_packet_is_dropped_not_handed_to_the_tun(pki):  # noqa: F811
    """A data packet whose plaintext is empty (an authenticated client can send one) reached the
    TUN as a zero-length write, which Linux refuses with EINVAL -- an error the pump counts as
    the device's. OpenVPN 2.6 drops it (process_incoming_link: only a buffer with length goes on);
    so do we, counted as not traffic (it does not refresh `inactive` and never reaches the device)."""
    d = _mk_server(pki)
    a = _mk_client(pki, pki["clients"][0])
    src = ("198.18.0.71", 40000)
    _pump(d, [(a, src)])
    assert _up(a)
    rec = d.by_addr[src]
    before = rec.session.data_authenticated
    assert rec.session.receive(a.encrypt(b""), 2.0) == []        # the session's own answer (the
    assert rec.session.data_authenticated == before + 1          # client's data path uses it as is)
    assert d.receive(a.encrypt(b""), src, 2.05)[1] == []
    ping = _icmp(a.pushed.ifconfig[0], "198.19.0.1")
    assert d.receive(a.encrypt(ping), src, 2.1)[1] == [ping]      # the session goes on
