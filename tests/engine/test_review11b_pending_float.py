"""A restart waiting in `pending` (a new session from an established client's address, not yet
established itself) may not float: it is no client of its own yet. OpenVPN 2.6 opens no data with
such a session's keys before it is promoted; here its authenticated data moved it to another
address while `pending` kept it under the old one, so the tables disagreed for good: the record
was listed twice (close_all, restart_all, counters), and stayed in `pending` after it ended."""
from __future__ import annotations

from appliance.openvpn import events as ev
from appliance.openvpn import wrapping
from tests.engine.test_server_dispatcher import _client, _icmp, _pump, _server, pki  # noqa: F401


def _connect_requests(d):
    return [r for r, e in d.events if isinstance(e, ev.ConnectRequested)]


def test_a_restart_still_in_handshake_does_not_float(pki):  # noqa: F811
    d = _server(pki, "none", defer_connect=True)
    home, elsewhere = ("198.18.0.40", 1194), ("198.18.0.41", 1194)
    old = _client(pki, pki["clients"][4], wrapping.PlainWrapper)
    _pump(d, [(old, home)])
    (old_rec,) = _connect_requests(d)
    d.events.clear()
    d.connect_result(old_rec, True, 0.6)
    _pump(d, [(old, home)], now=0.7)
    assert old_rec.session.established
    # (old_rec goes when the new session of its name is pushed to: duplicate-cn is off.)
    new = _client(pki, pki["clients"][4], wrapping.PlainWrapper)
    _pump(d, [(new, home)], now=1.0)
    (new_rec,) = _connect_requests(d)            # its push waits for client-connect
    assert d.pending.get(home) is new_rec and not new_rec.session.established
    # A hostile client need not wait for the push: it has the key material, and the cipher and
    # its peer-id are easily guessed (the first data-cipher, the next small number).
    new.cipher, new.peer_id, new.ekm = new_rec.session.cipher, new_rec.peer_id, new_rec.session.ekm
    new._install_keys(new.keys[0], 1.0)
    d.receive(new.encrypt(_icmp("198.19.0.2", "198.19.0.1")), elsewhere, 1.1)
    assert new_rec.session.data_authenticated == 1, "the packet was the session's own"
    assert new_rec.addr == home and elsewhere not in d.by_addr
    assert d.stats.get("float of a handshake in progress refused") == 1
    assert d.pending.get(home) is new_rec and d.record(elsewhere) is None
    # It ends (client-connect says no): nothing of it is left in the tables.
    d.connect_result(new_rec, False, 1.2)
    assert not new_rec.alive and home not in d.pending and new_rec not in d._records()
