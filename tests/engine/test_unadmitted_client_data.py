"""Data from a client not admitted yet (its push not sent) goes nowhere. A hostile client need
not wait for the push to use its keys: it has the key material, and the cipher is easily guessed.
Since compat48 the server's session has no data keys before its push (its cipher is chosen after
the client's per-client lines, as 2.6.14 generates its keys only then), so such a packet is not
even opened; before, it was opened and then dropped ("data from a client not admitted yet").

- A restart waiting in `pending` (a new session from an established client's address) was moved
  by its authenticated data to another address while `pending` kept it under the old one: the
  record was listed twice (close_all, restart_all, counters), and stayed in `pending` after it
  ended. OpenVPN 2.6 opens no data with such a session's keys before it is promoted.
- While client-connect decides, the client's address and iroutes are set: its packets passed.
"""
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
    assert new_rec.session.cipher is None and new_rec.session.send_key is None   # none before its push
    new.cipher, new.peer_id, new.ekm = "AES-256-GCM", new_rec.peer_id, new_rec.session.ekm
    new._install_keys(new.keys[0], 1.0)
    d.receive(new.encrypt(_icmp("198.19.0.2", "198.19.0.1")), elsewhere, 1.1)
    assert new_rec.session.data_authenticated == 0, "no key of the session opened it"
    assert new_rec.addr == home and elsewhere not in d.by_addr
    assert d.pending.get(home) is new_rec and d.record(elsewhere) is None
    # It ends (client-connect says no): nothing of it is left in the tables.
    d.connect_result(new_rec, False, 1.2)
    assert not new_rec.alive and home not in d.pending and new_rec not in d._records()


def test_no_data_passes_while_client_connect_decides(pki):  # noqa: F811
    """client-connect still running (its verdict may be no): the client's address and iroutes
    are set, and its session has data keys. Its packets passed into the network (and to other
    clients with client-to-client) before the script decided; OpenVPN 2.6 drops them until then."""
    d = _server(pki, "none", defer_connect=True)
    b = _client(pki, pki["clients"][5], wrapping.PlainWrapper)
    _pump(d, [(b, ("198.18.0.42", 1194))])
    (b_rec,) = _connect_requests(d)
    d.events.clear()
    d.connect_result(b_rec, True, 0.6)
    _pump(d, [(b, ("198.18.0.42", 1194))], now=0.7)
    assert b_rec.session.established
    a_addr = ("198.18.0.43", 1194)
    a = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    _pump(d, [(a, a_addr)], now=1.0)
    (a_rec,) = _connect_requests(d)
    assert a_rec.vaddr is not None and not a_rec.session.established
    a.cipher, a.peer_id, a.ekm = "AES-256-GCM", a_rec.peer_id, a_rec.session.ekm
    a._install_keys(a.keys[0], 1.0)
    for dst in ("198.19.0.1", b_rec.vaddr):
        _rec, pts = d.receive(a.encrypt(_icmp(a_rec.vaddr, dst)), a_addr, 1.1)
        assert pts == [], f"a packet to {dst} passed before client-connect decided"
    assert a_rec.session.data_authenticated == 0          # no data keys before its push (compat48)
    # Admitted: its packets pass.
    d.connect_result(a_rec, True, 1.2)
    _pump(d, [(a, a_addr)], now=1.3)
    assert a_rec.session.established
    assert len(d.receive(a.encrypt(_icmp(a_rec.vaddr, "198.19.0.1")), a_addr, 1.4)[1]) == 1


def test_a_bug_applying_client_connect_options_refuses_the_client(pki, monkeypatch):  # noqa: F811
    """connect_result marked the client done, then applied its options: an exception there (our
    bug) left it neither refused nor pushed to. Now it is refused and reported, never admitted
    without the options it was given."""
    from appliance.openvpn.config import parse_ccd
    d = _server(pki, "none", defer_connect=True)
    c = _client(pki, pki["clients"][7], wrapping.PlainWrapper)
    addr = ("198.18.0.44", 1194)
    _pump(d, [(c, addr)])
    (rec,) = _connect_requests(d)

    def broken(self, rec, ccd):
        raise RuntimeError("bug")
    monkeypatch.setattr(type(d), "_apply_connect_options", broken)
    d.connect_result(rec, True, 0.6, ccd=parse_ccd("iroute 198.18.77.0 255.255.255.0\n", "<out>"))
    _pump(d, [(c, addr)], now=0.7)
    assert not rec.session.established and not c.established
    errs = d.take_internal_errors()
    assert [r for r, _ in errs] == [rec] and str(errs[0][1]) == "bug"
