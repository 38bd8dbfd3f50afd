"""Issue 8, the server dispatcher in memory: admission, float, exit, limits, and its timer heap.

Each test is an attack (or an operator setting) that OpenVPN handles and the dispatcher must too:
spoofed float under `verify-client-cert none`, an OCC exit that must free the client, half-open
handshakes that must not count as clients, connect-freq, replayed tls-crypt-v2 resets,
ccd-exclusive and username-as-common-name.
"""
from __future__ import annotations

import dataclasses

import pytest

from appliance.openvpn import events as ev
from appliance.openvpn.config import CcdOptions
from appliance.openvpn import keyfiles, wrapping
from appliance.openvpn.server import AddressPool, ServerDispatcher, ServerSettings
from appliance.openvpn.session import Role, Session, SessionConfig
from appliance.openvpn.tls import TlsSettings
from tests.engine.test_server_dispatcher import _icmp, _kpem, _pem, _pump, _up
from tests.engine.test_server_dispatcher import pki  # noqa: F401 - the fixture

OCC_MAGIC = bytes.fromhex("287f346bd4ef7a812d56b8d3afc5459c")
OCC_EXIT = 6


def _mk_server(pki, protection="none", verify_client_cert="require", verify_user=None, **kw):  # noqa: F811
    stls = TlsSettings(_pem(pki["ca"][0]), _pem(pki["server"][0]), _kpem(pki["server"][1]), True,
                       remote_cert_tls="client" if verify_client_cert == "require" else None,
                       verify_client_cert=verify_client_cert)
    st = ServerSettings(
        session_config=lambda pid: SessionConfig(Role.SERVER, stls, None, peer_id=pid, ping=10, ping_restart=60,
                                                 verify_user=verify_user),
        protection=protection, pool=AddressPool("198.19.0.0", "255.255.255.0", "subnet"), **kw)
    return ServerDispatcher(st, 0.0)


def _mk_client(pki, cert=None, make_wrapper=wrapping.PlainWrapper, early=False, **kw):  # noqa: F811
    c, k = cert if cert is not None else (None, None)
    tls = TlsSettings(_pem(pki["ca"][0]), _pem(c) if c else None, _kpem(k) if k else None, False,
                      remote_cert_tls="server")
    s = Session(SessionConfig(Role.CLIENT, tls, make_wrapper, early_negotiation=early, **kw), 0.0)
    s.start(0.0)
    return s


def _half_open(d, s, addr, now=0.5):
    """Take a client through the cookie exchange and its first TLS packet, then leave it there."""
    for p in s.take_outgoing():
        d.receive(p, addr, now)
    for p, a in d.take_outgoing():
        if a == addr:
            s.receive(p, now)
    for p in s.take_outgoing():
        d.receive(p, addr, now)
    d.take_outgoing()


# ---------------------------------------------------------------- float
def test_float_never_takes_another_live_sessions_address_without_client_certs(pki):  # noqa: F811
    """verify-client-cert none: every common name is None; an authenticated user must still not
    take over (and so disconnect) another user's address by sending from it."""
    d = _mk_server(pki, verify_client_cert="none")
    a, b = _mk_client(pki), _mk_client(pki)
    home, victim = ("198.18.0.50", 1), ("198.18.0.51", 1)
    _pump(d, [(a, home), (b, victim)])
    assert _up(a) and _up(b)
    rec_b = d.by_addr[victim]
    ping = _icmp(a.pushed.ifconfig[0], "198.19.0.1")
    assert d.receive(a.encrypt(ping), victim, 2.0)[1] == []
    assert d.by_addr[victim] is rec_b and not rec_b.session.closed
    assert d.stats["float to another client's address refused"] == 1
    assert len(d.receive(b.encrypt(_icmp(b.pushed.ifconfig[0], "198.19.0.1")), victim, 2.1)[1]) == 1


# ---------------------------------------------------------------- OCC exit
def test_occ_exit_on_the_data_channel_removes_the_client(pki):  # noqa: F811
    """A client without cc-exit says goodbye with an OCC EXIT data packet: the dispatcher itself
    must free its address and forget it (nobody calls collect_all)."""
    d = _mk_server(pki)
    a = _mk_client(pki, pki["clients"][0])
    addr = ("198.18.0.60", 1)
    _pump(d, [(a, addr)])
    ip = a.pushed.ifconfig[0]
    d.receive(bytes(a.send_key.seal(OCC_MAGIC + bytes((OCC_EXIT,)))), addr, 1.0)
    assert d.clients == [] and ip not in d.st.pool.leased and d.route(ip) is None
    assert any(isinstance(e, ev.SessionClosed) for _r, e in d.events)


# ---------------------------------------------------------------- half-open handshakes
def test_half_open_handshakes_do_not_count_toward_max_clients(pki):  # noqa: F811
    d = _mk_server(pki, max_clients=1)
    _half_open(d, _mk_client(pki, pki["clients"][1]), ("198.18.0.70", 1))
    assert len(d.by_addr) == 1
    real = _mk_client(pki, pki["clients"][2])
    _pump(d, [(real, ("198.18.0.71", 1))])
    assert _up(real), "a half-open handshake took the only client slot"
    late = _mk_client(pki, pki["clients"][3])
    _pump(d, [(late, ("198.18.0.72", 1))])
    assert not _up(late), "max-clients 1 with one client up"


def test_handshakes_per_source_address_are_bounded(pki):  # noqa: F811
    d = _mk_server(pki, max_half_open_per_source=4)
    for port in range(10):
        _half_open(d, _mk_client(pki, pki["clients"][port % 10]), ("198.18.0.80", 2000 + port))
    assert len(d.by_addr) == 4
    assert d.stats["too many handshakes in progress from one address"] == 6
    other = _mk_client(pki, pki["clients"][4])
    _pump(d, [(other, ("198.18.0.81", 1))])
    assert _up(other), "another source is not affected"


def test_connect_freq_limits_new_sessions(pki):  # noqa: F811
    d = _mk_server(pki, connect_freq=(2, 10))
    clients = [(_mk_client(pki, pki["clients"][i]), ("198.18.0.%d" % (90 + i), 1)) for i in range(3)]
    _pump(d, clients, now=1.0)
    assert [_up(s) for s, _ in clients] == [True, True, False]
    assert d.stats["connect-freq limit reached"] >= 1
    late = _mk_client(pki, pki["clients"][5])
    _pump(d, [(late, ("198.18.0.99", 1))], now=12.0)
    assert _up(late), "the next period admits again"


def test_connect_freq_initial_limits_stateless_answers(pki):  # noqa: F811
    d = _mk_server(pki)                     # OpenVPN's default: 100 per 10 s
    for i in range(150):
        s = _mk_client(pki, pki["clients"][0])
        for p in s.take_outgoing():
            d.receive(p, ("198.18.1.%d" % (i % 250), 3000 + i), 1.0)
    assert len(d.take_outgoing()) == 100
    assert d.stats["connect-freq-initial limit reached"] == 50
    assert d.clients == []


# ---------------------------------------------------------------- tls-crypt-v2 without cookies
def _v2_setup(pki, **kw):  # noqa: F811
    v2 = keyfiles.parse_tls_crypt_v2_server_key(keyfiles.generate_tls_crypt_v2_server_key())
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(keyfiles.generate_tls_crypt_v2_client_key(v2))
    d = _mk_server(pki, "tls-crypt-v2", v2_server_key=v2, **kw)
    # An OpenVPN 2.5 client: HARD_RESET_CLIENT_V3, but no early negotiation (ids start at 1).
    c = _mk_client(pki, pki["clients"][6], lambda: wrapping.TlsCryptV2ClientWrapper(kc, wkc, early_negotiation=False),
                   early=True)
    return d, c


def test_replayed_tls_crypt_v2_reset_from_spoofed_addresses_makes_one_session(pki):  # noqa: F811
    d, c = _v2_setup(pki)
    reset = bytes(c.take_outgoing()[0])
    for i in range(64):
        d.receive(reset, ("198.18.2.%d" % (i + 1), 5000), 1.0)
    assert len(d.by_addr) <= 1, f"{len(d.by_addr)} sessions from one captured reset"


def test_force_cookie_refuses_resets_without_early_negotiation(pki):  # noqa: F811
    d, c = _v2_setup(pki, force_cookie=True)
    reset = bytes(c.take_outgoing()[0])
    d.receive(reset, ("198.18.2.1", 5000), 1.0)
    assert d.by_addr == {}
    assert d.stats["tls-crypt-v2 reset without cookie support refused (force-cookie)"] == 1


def test_cookie_less_handshakes_are_bounded_in_total(pki):  # noqa: F811
    d, _c = _v2_setup(pki, max_unverified=5)
    v2 = d.st.v2_server_key
    for i in range(12):
        kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(keyfiles.generate_tls_crypt_v2_client_key(v2))
        c = _mk_client(pki, pki["clients"][i % 10],
                       (lambda kc, wkc: lambda: wrapping.TlsCryptV2ClientWrapper(kc, wkc, early_negotiation=False))(kc, wkc),
                       early=True)
        for p in c.take_outgoing():
            d.receive(p, ("198.18.4.%d" % (i + 1), 1), 1.0)
    assert len(d.by_addr) == 5
    assert d.stats["too many cookie-less handshakes in progress"] == 7


# ---------------------------------------------------------------- ccd-exclusive, username-as-common-name
def test_ccd_exclusive_refuses_clients_without_a_ccd_file(pki):  # noqa: F811
    d = _mk_server(pki, ccd=lambda cn: CcdOptions() if cn == "client1" else None, ccd_exclusive=True)
    known, unknown = _mk_client(pki, pki["clients"][1]), _mk_client(pki, pki["clients"][2])
    _pump(d, [(known, ("198.18.0.101", 1)), (unknown, ("198.18.0.102", 1))])
    assert _up(known)
    assert not _up(unknown) and any(isinstance(e, ev.AuthFailed) for e in unknown.events)
    assert [r.common_name for r in d.clients] == ["client1"]


def test_ccd_disable_refuses_that_client(pki):  # noqa: F811
    d = _mk_server(pki, ccd=lambda cn: CcdOptions(disable=True) if cn == "client2" else CcdOptions())
    ok, off = _mk_client(pki, pki["clients"][1]), _mk_client(pki, pki["clients"][2])
    _pump(d, [(ok, ("198.18.0.103", 1)), (off, ("198.18.0.104", 1))])
    assert _up(ok)
    assert not _up(off) and any(isinstance(e, ev.AuthFailed) for e in off.events)
    assert [r.common_name for r in d.clients] == ["client1"]


def test_the_default_ccd_file_is_for_clients_without_their_own(pki):  # noqa: F811
    """OpenVPN 2.6 reads ccd/DEFAULT for a client without a file of its own: its `disable`
    refuses those clients (and only those). Under ccd-exclusive a client must have its own
    file, and one named DEFAULT does not count (username-as-common-name lets a user pick it)."""
    files = {"DEFAULT": CcdOptions(disable=True), "client1": CcdOptions()}
    d = _mk_server(pki, ccd=files.get)
    a, b = _mk_client(pki, pki["clients"][1]), _mk_client(pki, pki["clients"][2])
    _pump(d, [(a, ("198.18.0.120", 1)), (b, ("198.18.0.121", 1))])
    assert _up(a) and not _up(b)
    d = _mk_server(pki, ccd={"DEFAULT": CcdOptions()}.get, ccd_exclusive=True, username_as_cn=True,
                   verify_user=lambda u, p, cn: True)
    c = _mk_client(pki, pki["clients"][3], username="DEFAULT", password="x")
    _pump(d, [(c, ("198.18.0.122", 1))])
    assert not _up(c) and d.clients == []


def test_username_as_common_name_drives_ccd_and_duplicate_cn(pki):  # noqa: F811
    asked = []
    d = _mk_server(pki, ccd=lambda cn: asked.append(cn), username_as_cn=True,
                   verify_user=lambda u, p, cn: True)
    a = _mk_client(pki, pki["clients"][1], username="carol", password="x")
    b = _mk_client(pki, pki["clients"][2], username="carol", password="y")
    _pump(d, [(a, ("198.18.0.110", 1))])
    assert _up(a) and asked == ["carol", "DEFAULT"] and d.clients[0].common_name == "carol"   # no file: DEFAULT
    _pump(d, [(b, ("198.18.0.111", 1))], now=1.0)
    assert _up(b)                                # duplicate-cn off: the first "carol" is dropped
    assert [r.common_name for r in d.clients] == ["carol"] and d.clients[0].addr == ("198.18.0.111", 1)


# ---------------------------------------------------------------- timers and counters
def test_timer_heap_runs_only_due_sessions(pki, monkeypatch):  # noqa: F811
    """next_deadline() may be early (a lower bound that re-arms), never late; a wake-up looks at
    the sessions whose heap entry is due and runs only those whose deadline has come."""
    d = _mk_server(pki)
    clients = [(_mk_client(pki, pki["clients"][i]), ("198.18.5.%d" % (i + 1), 1)) for i in range(10)]
    _pump(d, clients)
    assert all(_up(s) for s, _ in clients)
    real_nd, real_ht = Session.next_deadline, Session.handle_timer
    true_min = min(real_nd(r.session) for r in d.clients)
    assert d.next_deadline() <= true_min
    looked, ran = [], []
    monkeypatch.setattr(Session, "next_deadline", lambda self: looked.append(self) or real_nd(self))
    monkeypatch.setattr(Session, "handle_timer", lambda self, now: ran.append(self) or real_ht(self, now))
    d.handle_timer(d.next_deadline() - 0.5)       # nothing due: no session is even looked at
    assert looked == [] and ran == []
    t, wakeups = d.next_deadline(), 0
    while t < true_min:                           # early entries: each re-arms once, runs nothing
        d.handle_timer(t)
        wakeups += 1
        t = d.next_deadline()
    assert ran == [] and wakeups <= len(d.clients) and t == true_min
    due = {id(r.session) for r in d.clients if real_nd(r.session) <= t}
    looked.clear()
    d.handle_timer(t)
    assert {id(x) for x in ran} == due
    assert len(looked) <= 3 * len(due), "a wake-up must not scan every client"


def test_drop_counters_cover_live_and_gone_sessions(pki):  # noqa: F811
    d = _mk_server(pki)
    a, b = _mk_client(pki, pki["clients"][1]), _mk_client(pki, pki["clients"][2])
    pa, pb = ("198.18.0.120", 1), ("198.18.0.121", 1)
    _pump(d, [(a, pa), (b, pb)])
    w = bytes(a.encrypt(_icmp(a.pushed.ifconfig[0], "198.19.0.1")))
    d.receive(w, pa, 1.0)
    d.receive(w, pa, 1.0)                                   # replay, counted by a's session
    d.receive(b"\x00garbage", ("198.18.0.122", 1), 1.0)     # counted by the dispatcher
    before = d.drop_counters()
    assert before["replayed data packet"] == 1 and "stateless reset answered" not in before
    d.receive(bytes(a.send_key.seal(OCC_MAGIC + bytes((OCC_EXIT,)))), pa, 1.1)   # a leaves
    assert d.drop_counters()["replayed data packet"] == 1, "a gone session's counters are kept"


def test_max_clients_reached_during_a_handshake_says_auth_failed_temp(pki):  # noqa: F811
    """Two handshakes for the last slot: the one that finishes second is told to retry later."""
    d = _mk_server(pki, max_clients=1)
    a, b = _mk_client(pki, pki["clients"][1]), _mk_client(pki, pki["clients"][2])
    pa, pb = ("198.18.0.130", 1), ("198.18.0.131", 1)
    _half_open(d, a, pa)
    _half_open(d, b, pb)
    assert len(d.by_addr) == 2
    d.handle_timer(3.0)                   # _half_open dropped the server's answers: resend them
    _pump(d, [(a, pa), (b, pb)], now=3.0)
    assert _up(a) and not _up(b)
    failed = [e for e in b.events if isinstance(e, ev.AuthFailed)]
    closed = [e for e in b.events if isinstance(e, ev.SessionClosed)]
    assert failed and failed[0].message.startswith("TEMP") and closed and closed[0].restart
    assert [r.addr for r in d.clients] == [pa]


def test_note_sent_starts_a_renegotiation_when_packet_ids_run_low(pki):  # noqa: F811
    """The pump's data path: encrypt, send, note_sent(rec, now). A key near the end of its
    packet-id space renegotiates; its soft reset comes out of take_outgoing, to the client."""
    d = _mk_server(pki)
    a = _mk_client(pki, pki["clients"][3])
    addr = ("198.18.0.140", 1)
    _pump(d, [(a, addr)])
    rec = d.clients[0]
    rec.session.send_key.send_pid = 0xFF000000
    assert rec.session.encrypt(_icmp("198.19.0.1", a.pushed.ifconfig[0])) is not None
    d.note_sent(rec, 2.0)
    out = d.take_outgoing()
    assert out and all(x == addr for _p, x in out)
    assert any(p[0] >> 3 == 3 for p, _x in out), "no P_CONTROL_SOFT_RESET_V1 sent"
    for p, _x in out:
        a.receive(p, 2.0)
    _pump(d, [(a, addr)], now=2.1)
    assert rec.session.send_key.key_id == 1 and a.send_key.key_id == 1
    assert d.next_deadline() is not None


def test_connect_freq_added_by_a_reload_is_applied(pki):  # noqa: F811
    """A reload (ServerDispatcher.apply_settings) that adds connect-freq limits new sessions from
    then on: the limit objects were made once at start, so it was accepted and ignored."""
    import dataclasses
    d = _mk_server(pki)
    d.apply_settings(dataclasses.replace(d.st, connect_freq=(2, 10)))
    clients = [(_mk_client(pki, pki["clients"][i]), ("198.18.0.%d" % (90 + i), 1)) for i in range(3)]
    _pump(d, clients, now=1.0)
    assert [_up(s) for s, _ in clients] == [True, True, False]
    assert d.stats["connect-freq limit reached"] >= 1
    d.apply_settings(dataclasses.replace(d.st, connect_freq=None))
    late = _mk_client(pki, pki["clients"][5])
    _pump(d, [(late, ("198.18.0.99", 1))], now=2.0)
    assert _up(late), "connect-freq taken away by a reload still limited"


def test_a_cookie_less_reset_cannot_end_a_handshake_at_its_unproven_address(pki):  # noqa: F811
    """A tls-crypt-v2 reset without early negotiation gets state without a cookie, so its source
    address is unproven. Anyone holding a client key (any customer) could spoof one from the address
    of a client in the middle of its handshake: the new session replaced the one there, and a
    client could be kept from ever connecting. It now waits beside it (as a restart beside an
    established session does) and replaces it only if it gets established itself."""
    d, victim = _v2_setup(pki)
    addr = ("198.18.5.1", 5000)
    for p in victim.take_outgoing():                # the victim's reset, and the answer
        d.receive(p, addr, 0.5)
    for p, _a in d.take_outgoing():
        victim.receive(p, 0.5)
    for p in victim.take_outgoing():                # its first TLS packet
        d.receive(p, addr, 0.5)
    held = d.take_outgoing()                        # the server's answer, on its way
    assert d.record(addr) is not None and not d.record(addr).session.established
    v2 = d.st.v2_server_key
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(keyfiles.generate_tls_crypt_v2_client_key(v2))
    attacker = _mk_client(pki, pki["clients"][7], lambda: wrapping.TlsCryptV2ClientWrapper(kc, wkc, early_negotiation=False),
                          early=True)
    for p in attacker.take_outgoing():
        d.receive(p, addr, 0.6)                     # spoofed from the victim's address
    for p, _a in held:
        victim.receive(p, 0.7)
    _pump(d, [(victim, addr)], now=0.7)             # what the server sends to that address goes to the victim
    assert _up(victim), "a spoofed cookie-less reset ended the victim's handshake"
    assert d.stats.get("handshake failed", 0) == 0


def test_a_cookie_less_client_restarting_mid_handshake_still_gets_in(pki):  # noqa: F811
    """The other side of the rule above: an old tls-crypt-v2 client that restarts from the same
    address while its first handshake hangs there gets in once its new session is established."""
    d, first = _v2_setup(pki)
    addr = ("198.18.5.2", 5000)
    for p in first.take_outgoing():
        d.receive(p, addr, 0.5)
    d.take_outgoing()                               # lost: the first attempt hangs
    stale = d.record(addr)
    v2 = d.st.v2_server_key
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(keyfiles.generate_tls_crypt_v2_client_key(v2))
    again = _mk_client(pki, pki["clients"][6], lambda: wrapping.TlsCryptV2ClientWrapper(kc, wkc, early_negotiation=False),
                       early=True)
    _pump(d, [(again, addr)], now=1.0)
    assert _up(again)
    assert d.record(addr) is not stale and not stale.alive


def test_handshakes_per_source_count_an_ipv6_slash_64_as_one_source(pki):  # noqa: F811
    """An attacker holding a /64 has 2**64 addresses: counted per address, each of its
    handshakes was a new source and the per-source limit never applied."""
    d = _mk_server(pki, max_half_open_per_source=4)
    for i in range(10):
        _half_open(d, _mk_client(pki, pki["clients"][i % 10]), (f"2001:db8:1:2::{i + 1:x}", 2000 + i))
    assert len(d.by_addr) == 4
    assert d.stats["too many handshakes in progress from one address"] == 6
    other = _mk_client(pki, pki["clients"][4])
    _pump(d, [(other, ("2001:db8:1:3::1", 1))])
    assert _up(other), "another /64 is not affected"


def test_ipv4_mapped_sources_stay_apart_in_the_handshake_limit(pki):  # noqa: F811
    d = _mk_server(pki, max_half_open_per_source=2)
    for i in range(6):
        _half_open(d, _mk_client(pki, pki["clients"][i % 10]), (f"::ffff:198.18.0.{80 + i}", 2000 + i))
    assert len(d.by_addr) == 6, "IPv4 clients of a dual-stack server were lumped into one source"


# ---------------------------------------------------------------- password check under way
@pytest.mark.parametrize("password_ok", [False, True])
def test_push_request_while_the_password_is_checked_waits_for_the_verdict(pki, password_ok):  # noqa: F811
    """The server checks passwords off its event loop (defer_auth: every auth-user-pass-verify
    server). A client that sends PUSH_REQUEST right after its key-method message, before the
    verdict, got the push reply, an address and an established session (client-connect, status,
    duplicate-cn drops) with a wrong password. The request must wait for the verdict: refused
    with AUTH_FAILED on a wrong password, pushed once the password is right."""
    stls = TlsSettings(_pem(pki["ca"][0]), _pem(pki["server"][0]), _kpem(pki["server"][1]), True,
                       remote_cert_tls="client")
    st = ServerSettings(
        session_config=lambda pid: SessionConfig(Role.SERVER, stls, None, peer_id=pid, ping=10, ping_restart=60,
                                                 verify_user=lambda u, p, cn: p == "right", defer_auth=True),
        protection="none", pool=AddressPool("198.19.0.0", "255.255.255.0", "subnet"))
    d = ServerDispatcher(st, 0.0)
    a = _mk_client(pki, pki["clients"][0], username="alice", password="right" if password_ok else "wrong")
    addr = ("198.18.0.70", 1)
    _pump(d, [(a, addr)])
    rec = d.by_addr[addr]
    assert any(isinstance(e, ev.AuthRequested) for r, e in d.events if r is rec)
    a._send_text("PUSH_REQUEST")            # what a hostile client sends without waiting
    a._flush(1.0)
    _pump(d, [(a, addr)], now=1.0)
    assert not rec.session.established and not rec.session.push_sent
    assert rec.vaddr is None and d.admission.n_established == 0
    d.auth_result(rec, 0, password_ok, 1.5)
    _pump(d, [(a, addr)], now=1.5)
    for t in (3.0, 5.0, 7.0):               # the client asks again (PUSH_REQUEST_INTERVAL)
        a.handle_timer(t)
        _pump(d, [(a, addr)], now=t)
    assert _up(a) is password_ok and rec.session.established is password_ok
    if not password_ok:
        assert a.closed and any("AUTH_FAILED" in str(e) for e in a.events)


def test_a_late_verdict_answers_only_its_own_request_not_a_later_one_on_the_same_key_id(pki):  # noqa: F811
    """A renegotiation's check that outlives the key (a command's deferred verdict comes up to
    twice hand-window late; the key fails at hand-window, over UDP the old key goes on) and the
    client opens that key id again with another password: the first request's yes decided the
    second's, so a wrong password got the key. Each verdict now answers only its request
    (AuthRequested.check)."""
    stls = TlsSettings(_pem(pki["ca"][0]), _pem(pki["server"][0]), _kpem(pki["server"][1]), True,
                       remote_cert_tls="client")
    st = ServerSettings(
        session_config=lambda pid: SessionConfig(Role.SERVER, stls, None, peer_id=pid, ping=10, ping_restart=600,
                                                 verify_user=lambda u, p, cn: p == "right", defer_auth=True,
                                                 hand_window=20),
        protection="none", pool=AddressPool("198.19.0.0", "255.255.255.0", "subnet"))
    d = ServerDispatcher(st, 0.0)
    a = _mk_client(pki, pki["clients"][0], username="alice", password="right", ping=10, ping_restart=600)
    addr = ("198.18.0.71", 1)
    _pump(d, [(a, addr)])
    rec = d.by_addr[addr]
    first, = [e for r, e in d.events if isinstance(e, ev.AuthRequested)]
    d.auth_result(rec, 0, True, 1.0, check=first.check)
    for t in (1.0, 3.0, 5.0, 7.0):
        a.handle_timer(t)
        d.handle_timer(t)
        _pump(d, [(a, addr)], now=t)
    assert _up(a) and rec.session.established
    d.events.clear()
    a.renegotiate(10.0)
    _pump(d, [(a, addr)], now=10.0)
    slow, = [e for r, e in d.events if isinstance(e, ev.AuthRequested)]
    assert slow.key_id == 1
    for t in (15.0, 25.0, 31.0):                 # no verdict: the server's key 1 fails, key 0 goes on
        d.handle_timer(t)
        _pump(d, [(a, addr)], now=t)
    assert 1 not in rec.session.keys and rec.alive
    # The client opens key id 1 again, now with a wrong password.
    a.keys.pop(1, None)
    a.recv_keys[1] = None
    a.newest_key_id, a.next_key_id = 0, 1
    a.cfg = dataclasses.replace(a.cfg, password="wrong")
    d.events.clear()
    a.renegotiate(32.0)
    _pump(d, [(a, addr)], now=32.0)
    later, = [e for r, e in d.events if isinstance(e, ev.AuthRequested)]
    assert later.key_id == 1 and later.check is not slow.check
    d.auth_result(rec, 1, True, 33.0, check=slow.check)          # the first request's late yes
    _pump(d, [(a, addr)], now=33.0)
    ks = rec.session.keys.get(1)
    assert ks is not None and ks.pending_auth is not None, "a late yes for another request gave the key"
    d.auth_result(rec, 1, False, 34.0, check=later.check)        # its own verdict decides
    _pump(d, [(a, addr)], now=34.0)
    assert not rec.alive or 1 not in rec.session.keys or rec.session.keys[1].pending_auth is None


def test_forged_wrapped_client_keys_cost_no_key_schedule_each(pki, monkeypatch):  # noqa: F811
    """A no-key attacker's tls-crypt-v2 resets carry a WKc the server must decrypt before its tag
    can be checked (the tag is over the plaintext). Each built a new AES-CTR context from the
    server key (a Cipher object and a key schedule, ~10x the decryption itself), which made a
    forged 300-byte datagram the dearest thing anybody without a key could send (~100 us here;
    tls-crypt and tls-auth forgeries reuse their keyed contexts). The server key's context is
    made once; a genuine client still gets in after the forgeries."""
    d, c = _v2_setup(pki)
    made = []
    real_cipher = keyfiles.Cipher
    monkeypatch.setattr(keyfiles, "Cipher", lambda *a, **kw: made.append(1) or real_cipher(*a, **kw))
    reset = bytearray(c.take_outgoing()[0])
    for i in range(50):
        forged = bytearray(reset)
        forged[-100 - i] ^= 0x5A                 # inside the WKc: fails its tag
        d.receive(bytes(forged), ("198.18.5.%d" % (i + 1), 4000), 1.0)
    assert d.stats["wrapped client key failed authentication"] == 50
    assert len(made) <= 1, f"{len(made)} AES contexts made for 50 forged keys"
    d.receive(bytes(reset), ("198.18.5.200", 4000), 1.0)     # the genuine one, after them
    assert len(d.by_addr) == 1
    # A reload with another server key: its clients get in, the old key's no more.
    v2 = keyfiles.parse_tls_crypt_v2_server_key(keyfiles.generate_tls_crypt_v2_server_key())
    d.apply_settings(dataclasses.replace(d.st, v2_server_key=v2))
    d.receive(bytes(reset), ("198.18.5.201", 4000), 2.0)
    assert d.stats["wrapped client key failed authentication"] == 51
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(keyfiles.generate_tls_crypt_v2_client_key(v2))
    new = _mk_client(pki, pki["clients"][7], lambda: wrapping.TlsCryptV2ClientWrapper(kc, wkc, early_negotiation=False),
                     early=True)
    d.receive(bytes(new.take_outgoing()[0]), ("198.18.5.202", 4000), 2.0)
    assert ("198.18.5.202", 4000) in d.by_addr
