"""Duplicate-cn and max-clients while client-connect decides.

Both are decided at the push, against the clients established then. With client-connect (its
verdict deferred), sessions of one certificate opened together all reached the push before any
was established: none saw another, and once the verdicts came all of them were in -- one name
connected many times with duplicate-cn off, and more clients than max-clients."""
from __future__ import annotations

from appliance.openvpn import events as ev
from appliance.openvpn import wrapping
from tests.engine.test_server_dispatcher import _client, _pump, _server, pki  # noqa: F401


def _connect_requests(d):
    return [r for r, e in d.events if isinstance(e, ev.ConnectRequested)]


def test_one_name_is_connected_once_when_its_sessions_wait_for_client_connect_together(pki):  # noqa: F811
    d = _server(pki, "none", defer_connect=True)
    peers = [(_client(pki, pki["clients"][4], wrapping.PlainWrapper), ("198.18.0.50", 1194 + i)) for i in range(3)]
    _pump(d, peers)
    recs = _connect_requests(d)
    assert len(recs) == 3
    d.events.clear()
    for i, rec in enumerate(recs):
        d.connect_result(rec, True, 0.6 + i / 10)
    _pump(d, peers, now=1.0)
    alive = [r for r in recs if r.alive and r.session.established]
    assert len(alive) == 1, f"{len(alive)} clients connected with one common name (duplicate-cn is off)"
    assert alive[0] is recs[-1]                  # the newest stays, as at the push
    assert len({r.vaddr for r in d.clients}) == len(d.clients)


def test_max_clients_holds_when_sessions_wait_for_client_connect_together(pki):  # noqa: F811
    d = _server(pki, "none", defer_connect=True, max_clients=2)
    peers = [(_client(pki, pki["clients"][4 + i], wrapping.PlainWrapper), ("198.18.0.51", 1194 + i))
             for i in range(3)]
    _pump(d, peers)
    recs = _connect_requests(d)
    d.events.clear()
    for i, rec in enumerate(recs):
        d.connect_result(rec, True, 0.6 + i / 10)
    _pump(d, peers, now=1.0)
    established = [r for r in recs if r.alive and r.session.established]
    assert len(established) <= 2, f"{len(established)} clients established with max-clients 2"
