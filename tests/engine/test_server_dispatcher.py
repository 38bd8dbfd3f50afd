"""The server dispatcher in memory: many client Sessions against one ServerDispatcher.

Covers what a server operator checks: each client gets its own address, bogus first packets cost
no state, established clients keep working while junk arrives, a leaving client frees its address,
client-to-client routing and inner source-address checks.
"""
from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.openvpn import events as ev
from appliance.openvpn import keyfiles, wrapping
from appliance.openvpn.opcodes import Op, op_byte
from appliance.openvpn.packet import encode_body
from appliance.openvpn.server import AddressPool, ServerDispatcher, ServerSettings
from appliance.openvpn.session import EXIT_HOLD, Role, Session, SessionConfig
from appliance.openvpn.tls import TlsSettings
from appliance.certs import issue as _issue
from tests.aead_paths import aead_path  # noqa: F401 - the fixture: both AEAD paths, compiled and Python

pytestmark = pytest.mark.usefixtures("aead_path")


def _cert(cn, issuer=None, ca=False, eku=None):
    return _issue(cn, None if ca else issuer, eku)


def _pem(c):
    return c.public_bytes(serialization.Encoding.PEM)


def _kpem(k):
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki():
    ca = _cert("Test CA", ca=True)
    other_ca = _cert("Other CA", ca=True)
    server = _cert("server", ca, eku=ExtendedKeyUsageOID.SERVER_AUTH)
    clients = [_cert(f"client{i}", ca, eku=ExtendedKeyUsageOID.CLIENT_AUTH) for i in range(10)]
    rogue = _cert("rogue", other_ca, eku=ExtendedKeyUsageOID.CLIENT_AUTH)
    return {"ca": ca, "server": server, "clients": clients, "rogue": rogue}


def _server(pki, protection="tls-crypt", c2c=True, **kw):
    stls = TlsSettings(_pem(pki["ca"][0]), _pem(pki["server"][0]), _kpem(pki["server"][1]), True,
                       remote_cert_tls="client")
    st = ServerSettings(
        session_config=lambda pid: SessionConfig(Role.SERVER, stls, None, peer_id=pid, ping=10, ping_restart=60),
        protection=protection, pool=AddressPool("198.19.0.0", "255.255.255.0", "subnet"),
        push=["route 198.18.100.0 255.255.255.0"], client_to_client=c2c, **kw)
    return ServerDispatcher(st, 0.0)


def _client(pki, cert, make_wrapper, early=False):
    c, k = cert
    cfg = SessionConfig(Role.CLIENT, TlsSettings(_pem(pki["ca"][0]), _pem(c), _kpem(k), False,
                                                 remote_cert_tls="server"), make_wrapper, early_negotiation=early)
    s = Session(cfg, 0.0)
    s.start(0.0)
    return s


def _pump(d, clients, now=0.5, rounds=60):
    for _ in range(rounds):
        moved = 0
        for s, addr in clients:
            for p in s.take_outgoing():
                d.receive(p, addr, now)
                moved += 1
        for p, addr in d.take_outgoing():
            for s, a in clients:
                if a == addr:
                    s.receive(p, now)
                    moved += 1
        if not moved:
            return


def _icmp(src, dst):
    import struct
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 1, 0, bytes(map(int, src.split("."))),
                      bytes(map(int, dst.split("."))))
    return hdr + b"\x08\x00\xf7\xff\x00\x00\x00\x00"


def _up(s):
    return any(isinstance(e, ev.TunnelUp) for e in s.events)


def connected_recording(d, s, addr) -> list[bytes]:
    """Client `s` at `addr` brought up with dispatcher `d`; every packet it sent on the way
    (the control packets of each kind), recorded: what hostile-input tests mutate and replay.
    Its take_outgoing keeps recording into the list."""
    recorded: list[bytes] = []
    orig = s.take_outgoing

    def take():
        out = orig()
        recorded.extend(bytes(p) for p in out)
        return out
    s.take_outgoing = take
    _pump(d, [(s, addr)])
    assert _up(s)
    return recorded


@pytest.mark.parametrize("protection", ["none", "tls-auth", "tls-crypt", "tls-crypt-v2"])
def test_ten_clients_get_distinct_addresses(pki, protection):
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    v2 = keyfiles.parse_tls_crypt_v2_server_key(keyfiles.generate_tls_crypt_v2_server_key())
    kw = {"static_key": key, "key_direction": 0, "v2_server_key": v2}
    d = _server(pki, protection, **kw)
    clients = []
    for i, cert in enumerate(pki["clients"]):
        if protection == "tls-auth":
            mk = lambda: wrapping.TlsAuthWrapper(key, 1)  # noqa: E731
        elif protection == "tls-crypt":
            mk = lambda: wrapping.TlsCryptWrapper(key, False)  # noqa: E731
        elif protection == "tls-crypt-v2":
            kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(
                keyfiles.generate_tls_crypt_v2_client_key(v2, metadata=b"client%d" % i))
            mk = (lambda kc, wkc: lambda: wrapping.TlsCryptV2ClientWrapper(kc, wkc))(kc, wkc)
        else:
            mk = wrapping.PlainWrapper
        clients.append((_client(pki, cert, mk, early=protection == "tls-crypt-v2"), ("198.18.0.%d" % (i + 2), 40000)))
    _pump(d, clients)
    assert all(_up(s) for s, _ in clients)
    addrs = [s.pushed.ifconfig[0] for s, _ in clients]
    assert len(set(addrs)) == 10 and all(a.startswith("198.19.0.") for a in addrs)
    # Every client reaches the server, and (client-to-client) another client.
    for i, (s, a) in enumerate(clients):
        rec, pts = d.receive(s.encrypt(_icmp(addrs[i], "198.19.0.1")), a, 1.0)
        assert len(pts) == 1 and rec.vaddr == addrs[i]
        other = d.route(addrs[(i + 1) % 10])
        assert other is not None and other.vaddr == addrs[(i + 1) % 10]
        wire = other.session.encrypt(bytes(pts[0]))
        _, back = d.receive(s.encrypt(_icmp(addrs[i], addrs[(i + 1) % 10])), a, 1.0)
        assert len(back) == 1
        target = clients[(i + 1) % 10][0]
        assert bytes(target.receive(wire, 1.0)[0]) == _icmp(addrs[i], "198.19.0.1")


@pytest.mark.parametrize("shared", ["tls-auth", "tls-crypt", "none"])
def test_tls_crypt_v2_beside_a_shared_key_lets_in_only_its_two_kinds_of_client(pki, shared):
    """compat50: a tls-crypt-v2 server with a tls-auth or tls-crypt key beside (OpenVPN 2.6's way
    to move clients to keys of their own one by one; settings.shared_protection): clients with a
    key of their own -- with early negotiation and without (2.5's, cookie-less) -- and clients of
    the shared key get in; one of the other shared kind, or with no wrapping, does not, and costs
    no state. With no shared key ("none") only the first two do, as before."""
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    v2 = keyfiles.parse_tls_crypt_v2_server_key(keyfiles.generate_tls_crypt_v2_server_key())
    d = _server(pki, "tls-crypt-v2", static_key=key if shared != "none" else None, key_direction=0,
                v2_server_key=v2, shared_protection=shared)
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(keyfiles.generate_tls_crypt_v2_client_key(v2))
    makers = {"v2": lambda: wrapping.TlsCryptV2ClientWrapper(kc, wkc),
              "v2-cookie-less": lambda: wrapping.TlsCryptV2ClientWrapper(kc, wkc, early_negotiation=False),
              "tls-auth": lambda: wrapping.TlsAuthWrapper(key, 1),
              "tls-crypt": lambda: wrapping.TlsCryptWrapper(key, False), "none": wrapping.PlainWrapper}
    kinds = [("v2", True), ("v2-cookie-less", True), ("tls-auth", False), ("tls-crypt", False), ("none", False)]
    clients = [(_client(pki, pki["clients"][i], makers[k], early=early), ("198.18.0.%d" % (i + 2), 40000))
               for i, (k, early) in enumerate(kinds)]
    _pump(d, clients)
    got = [_up(s) for s, _ in clients]
    assert got == [True, True, shared == "tls-auth", shared == "tls-crypt", False], (got, d.stats)
    assert len(d.by_addr) == sum(got) and not d.pending


def test_bogus_reset_flood_costs_no_state(pki):
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    d = _server(pki, "tls-crypt", static_key=key, connect_freq_initial=(10_000, 10))
    s = _client(pki, pki["clients"][0], lambda: wrapping.TlsCryptWrapper(key, False))
    _pump(d, [(s, ("198.18.0.2", 1))])
    assert _up(s)
    wrong = wrapping.TlsCryptWrapper(keyfiles.parse_static_key(keyfiles.generate_static_key()), False)
    right = wrapping.TlsCryptWrapper(key, False)
    reset = op_byte(Op.CONTROL_HARD_RESET_CLIENT_V2, 0)
    for i in range(2000):
        src = ("198.18.1.%d" % (i % 250), 1000 + i)
        d.receive(wrong.wrap(reset, os.urandom(8), encode_body([], None, 0), 1.0), src, 1.0)   # forged
        d.receive(os.urandom(60), src, 1.0)                                                    # garbage
        d.receive(right.wrap(reset, os.urandom(8), encode_body([], None, 0), 1.0), src, 1.0)   # spoofed, valid
    assert len(d.clients) == 1, "bogus resets must not create sessions"
    assert d.stats["stateless reset answered"] >= 2000
    assert sum(v for k, v in d.stats.items() if k != "stateless reset answered") >= 4000
    d.take_outgoing()
    # The established client still moves traffic.
    rec, pts = d.receive(s.encrypt(_icmp(s.pushed.ifconfig[0], "198.19.0.1")), ("198.18.0.2", 1), 2.0)
    assert len(pts) == 1


def test_replayed_and_forged_data_dropped(pki):
    d = _server(pki, "none")
    s = _client(pki, pki["clients"][1], wrapping.PlainWrapper)
    addr = ("198.18.0.3", 5)
    _pump(d, [(s, addr)])
    w = bytes(s.encrypt(_icmp(s.pushed.ifconfig[0], "198.19.0.1")))
    assert len(d.receive(w, addr, 1.0)[1]) == 1
    assert d.receive(w, addr, 1.0)[1] == []                    # replay
    forged = bytearray(s.encrypt(_icmp(s.pushed.ifconfig[0], "198.19.0.1")))
    forged[-1] ^= 1
    assert d.receive(bytes(forged), addr, 1.0)[1] == []        # forged
    rec = d.clients[0]
    assert rec.session.stats.get("replayed data packet") == 1
    assert rec.session.stats.get("data packet failed authentication") == 1


def test_spoofed_inner_source_dropped_and_c2c_refused_when_off(pki):
    d = _server(pki, "none", c2c=False)
    s = _client(pki, pki["clients"][2], wrapping.PlainWrapper)
    addr = ("198.18.0.4", 5)
    _pump(d, [(s, addr)])
    _, pts = d.receive(s.encrypt(_icmp("198.19.0.77", "198.19.0.1")), addr, 1.0)
    assert pts == [] and d.stats["inner packet with a source the client does not own"] == 1
    assert d.st.client_to_client is False


def test_untrusted_client_certificate_refused(pki):
    d = _server(pki, "none")
    c, k = pki["rogue"]
    cfg = SessionConfig(Role.CLIENT, TlsSettings(_pem(pki["ca"][0]), _pem(c), _kpem(k), False), wrapping.PlainWrapper)
    s = Session(cfg, 0.0)
    s.start(0.0)
    _pump(d, [(s, ("198.18.0.9", 9))])
    assert not _up(s)
    assert d.clients == [] or not d.clients[0].session.established


def test_leaving_client_frees_its_address(pki):
    d = _server(pki, "none")
    a = _client(pki, pki["clients"][3], wrapping.PlainWrapper)
    b = _client(pki, pki["clients"][4], wrapping.PlainWrapper)
    pa, pb = ("198.18.0.5", 1), ("198.18.0.6", 1)
    _pump(d, [(a, pa), (b, pb)])
    ip_a = a.pushed.ifconfig[0]
    assert a.notify_exit(1.0, first=True)          # explicit-exit-notify's notice
    for p in a.take_outgoing():
        d.receive(p, pa, 1.0)              # the dispatcher acts on the exit by itself ...
    assert len(d.clients) == 2 and ip_a in d.st.pool.leased
    t = 1.0 + EXIT_HOLD                    # ... EXIT_HOLD s later, as 2.6's schedule_exit
    d.handle_timer(t)
    d.take_outgoing()
    assert len(d.clients) == 1 and ip_a not in d.st.pool.leased
    rec, pts = d.receive(b.encrypt(_icmp(b.pushed.ifconfig[0], "198.19.0.1")), pb, t + 0.1)
    assert len(pts) == 1
    c = _client(pki, pki["clients"][5], wrapping.PlainWrapper)
    _pump(d, [(c, ("198.18.0.7", 1))], now=t + 0.2)
    assert _up(c)


def test_client_timeout_frees_address(pki):
    d = _server(pki, "none")
    a = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    _pump(d, [(a, ("198.18.0.8", 1))])
    assert len(d.clients) == 1
    for t in range(1, 200):
        d.handle_timer(float(t))
        d.take_outgoing()
    assert d.clients == [] and not d.st.pool.leased


def test_address_pools_match_openvpn_server_expansion():
    # topology subnet: server .1, clients .2 to .254 (Debian's 2.6.14 at verb 4: ifconfig_pool_end
    # = 198.19.0.254, helper.c's broadcast - 1)
    sub = AddressPool("198.19.0.0", "255.255.255.0", "subnet")
    assert sub.server_ip == "198.19.0.1" and sub.free[0] == "198.19.0.2" and sub.free[-1] == "198.19.0.254"
    assert sub.ifconfig_push("198.19.0.2") == "ifconfig 198.19.0.2 255.255.255.0"
    # net30: one /30 per client from .4 to .251, client .6 peer .5, then .10 peer .9, ...
    n30 = AddressPool("198.19.0.0", "255.255.255.0", "net30")
    assert n30.free[:3] == ["198.19.0.6", "198.19.0.10", "198.19.0.14"] and n30.free[-1] == "198.19.0.250"
    assert len(n30.free) == 62 and len(set(n30.free)) == 62
    assert n30.ifconfig_push("198.19.0.6") == "ifconfig 198.19.0.6 198.19.0.5"
    a = n30.lease()
    n30.release(a)
    assert a == "198.19.0.6" and a in n30.free


def test_client_floats_only_on_authenticated_data(pki):
    """A UDP client that changes address keeps its session (found by peer-id), but only a packet
    that authenticates may move it; forged, replayed, or another client's address: no move."""
    d = _server(pki, "none")
    a = _client(pki, pki["clients"][7], wrapping.PlainWrapper)
    b = _client(pki, pki["clients"][8], wrapping.PlainWrapper)
    home, roam, evil, b_addr = ("198.18.0.20", 1), ("198.18.0.21", 7), ("198.18.0.66", 6), ("198.18.0.22", 1)
    _pump(d, [(a, home), (b, b_addr)])
    rec = d.route(a.pushed.ifconfig[0])
    ping = _icmp(a.pushed.ifconfig[0], "198.19.0.1")
    # forged (bad tag) from elsewhere, at the very same time as a genuine packet: no move
    assert len(d.receive(a.encrypt(ping), home, 2.0)[1]) == 1
    forged = bytearray(a.encrypt(ping))
    forged[-1] ^= 1
    assert d.receive(bytes(forged), evil, 2.0)[1] == [] and rec.addr == home
    # replayed genuine packet from elsewhere: no move
    w = bytes(a.encrypt(ping))
    assert len(d.receive(w, home, 2.1)[1]) == 1
    assert d.receive(w, evil, 2.1)[1] == [] and rec.addr == home
    # a fresh genuine packet from the new address: the session follows, replies go there
    assert len(d.receive(a.encrypt(ping), roam, 2.2)[1]) == 1
    assert rec.addr == roam and d.by_addr.get(roam) is rec and home not in d.by_addr
    assert any(isinstance(e, ev.ClientFloated) and e.new_addr == roam for _r, e in d.events)
    # taking over another client's address is refused and the packet dropped
    assert d.receive(a.encrypt(ping), b_addr, 2.3)[1] == [] and rec.addr == roam
    assert d.stats["float to another client's address refused"] == 1
    assert d.by_addr.get(b_addr).session.peer_common_name == "client8"


def test_client_restarting_from_the_same_address_replaces_its_session_once_established(pki):
    """A client that restarts without an exit notice, from the same address and port: the old
    session keeps working while the new one handshakes, then the new one takes over."""
    d = _server(pki, "none")
    addr = ("198.18.0.30", 1194)
    old = _client(pki, pki["clients"][0], wrapping.PlainWrapper)
    _pump(d, [(old, addr)])
    old_rec = d.clients[0]
    new = _client(pki, pki["clients"][0], wrapping.PlainWrapper)
    # The new session's first packets: the old session is untouched meanwhile.
    for p in new.take_outgoing():
        d.receive(p, addr, 1.0)
    replies = d.take_outgoing()
    assert d.clients == [old_rec] and not old_rec.session.closed
    assert len(d.receive(old.encrypt(_icmp(old.pushed.ifconfig[0], "198.19.0.1")), addr, 1.0)[1]) == 1
    for p, _a in replies:
        new.receive(p, 1.0)
    _pump(d, [(new, addr)], now=1.1)
    assert _up(new)
    assert len(d.clients) == 1 and d.clients[0] is not old_rec and d.clients[0].session.established
    assert old_rec.session.closed
    assert len(d.receive(new.encrypt(_icmp(new.pushed.ifconfig[0], "198.19.0.1")), addr, 1.2)[1]) == 1


@pytest.mark.parametrize("protection", ["none", "tls-crypt"])
def test_a_full_server_lets_a_client_restarting_from_its_own_address_back_in(pki, protection):
    """max-clients reached, and the one client restarts from the same address and port (a
    fixed `lport`, a NAT keeping the mapping): its new session replaces the old one at once, as
    OpenVPN 2.6 (which hands the reset to the address's instance) does. It was refused as
    "max-clients reached" until the old session timed out. A client from another address is
    still refused, and the count stays one."""
    if protection == "tls-crypt":
        key = keyfiles.parse_static_key(keyfiles.generate_static_key())
        d = _server(pki, "tls-crypt", static_key=key, max_clients=1)
        mk = lambda: wrapping.TlsCryptWrapper(key, False)      # noqa: E731
    else:
        d = _server(pki, "none", max_clients=1)
        mk = wrapping.PlainWrapper
    addr = ("198.18.0.33", 1194)
    old = _client(pki, pki["clients"][2], mk)
    _pump(d, [(old, addr)])
    old_rec = d.clients[0]
    assert _up(old)
    new = _client(pki, pki["clients"][2], mk)
    _pump(d, [(new, addr)], now=1.0)
    assert _up(new), f"the restarted client was refused: {d.drop_counters()}"
    assert len(d.clients) == 1 and d.clients[0] is not old_rec and old_rec.session.closed
    assert d.admission.n_established == 1
    other = _client(pki, pki["clients"][3], mk)
    _pump(d, [(other, ("198.18.0.34", 1194))], now=2.0)
    assert not _up(other), "max-clients 1 let a second client in"


def test_new_session_from_the_same_address_takes_data_under_the_old_peer_id(pki):
    """Debian's OpenVPN 2.6 client, after a failed renegotiation, starts a new TLS session from
    the same address and port and keeps sending the first session's peer-id (captured in the
    lab: P_DATA_V2 with peer-id 0 after a PUSH_REPLY with peer-id 1), as an OpenVPN server keeps
    the peer-id per client instance. Those packets were dropped as "data for unknown peer-id".
    Now the new session keeps the old one's peer-id, as 2.6's instance does; a peer-id nobody
    holds (one from before an earlier restart) still reaches the session at the address."""
    d = _server(pki, "none")
    addr = ("198.18.0.31", 1194)
    old = _client(pki, pki["clients"][1], wrapping.PlainWrapper)
    _pump(d, [(old, addr)])
    old_pid = d.clients[0].peer_id
    new = _client(pki, pki["clients"][1], wrapping.PlainWrapper)
    _pump(d, [(new, addr)], now=1.0)
    assert _up(new) and len(d.clients) == 1 and d.clients[0].peer_id == old_pid
    assert new.peer_id == old_pid                      # pushed to it
    stale = old_pid + 77
    k = new.send_key                                   # as that client: a stale peer-id on the wire
    k._hword = (k._hword & ~0xFFFFFF) | stale
    k.hdr = k.hdr[:1] + stale.to_bytes(3, "big")
    ping = _icmp(new.pushed.ifconfig[0], "198.19.0.1")
    assert len(d.receive(new.encrypt(ping), addr, 1.2)[1]) == 1
    # from another address, or not authenticated by the session's keys: still dropped
    assert d.receive(new.encrypt(ping), ("198.18.0.32", 1194), 1.3)[1] == []
    forged = bytearray(new.encrypt(ping))
    forged[-1] ^= 1
    assert d.receive(bytes(forged), addr, 1.4)[1] == []


def test_peer_ids_are_the_lowest_free_and_a_freed_ones_late_packet_reaches_nobody(pki):
    """As OpenVPN 2.6 (multi_assign_peer_id, seen in the lab): clients 0 and 1, 0 leaves, the next
    client is 0 again (we went on round-robin: 2). Reusing the number at once is safe: a late data
    packet of the client that left, sealed with its keys, now leads to the newcomer's session,
    whose keys do not authenticate it -- dropped, not delivered, and the newcomer is not moved to
    the old address."""
    d = _server(pki, "none")
    a = _client(pki, pki["clients"][3], wrapping.PlainWrapper)
    b = _client(pki, pki["clients"][4], wrapping.PlainWrapper)
    pa, pb, pc = ("198.18.0.40", 1), ("198.18.0.41", 1), ("198.18.0.42", 1)
    _pump(d, [(a, pa), (b, pb)])
    assert sorted(r.peer_id for r in d.clients) == [0, 1] and a.peer_id == 0
    late = a.encrypt(_icmp(a.pushed.ifconfig[0], "198.19.0.1"))
    assert a.notify_exit(1.0, first=True)
    for p in a.take_outgoing():
        d.receive(p, pa, 1.0)
    t = 1.0 + EXIT_HOLD                    # (its EXIT ends it EXIT_HOLD s later, as 2.6)
    d.handle_timer(t)
    d.take_outgoing()
    assert [r.peer_id for r in d.clients] == [1]
    c = _client(pki, pki["clients"][5], wrapping.PlainWrapper)
    _pump(d, [(c, pc)], now=t + 0.2)
    assert _up(c) and c.peer_id == 0
    rec_c = d.by_peer_id[0]
    assert rec_c.addr == pc
    assert d.receive(late, pa, t + 0.3)[1] == []
    assert rec_c.addr == pc and d.by_addr.get(pc) is rec_c and pa not in d.by_addr
    assert len(d.receive(c.encrypt(_icmp(c.pushed.ifconfig[0], "198.19.0.1")), pc, t + 0.4)[1]) == 1
    d2 = _server(pki, "none")
    assert [d2.accepted(("tcp", i)) for i in range(3)] == [0, 1, 2]
    d2.stream_closed(("tcp", 1))
    assert d2.accepted(("tcp", 9)) == 1 and d2.accepted(("tcp", 9)) == 1     # once per connection


def test_a_restart_whose_old_session_ends_first_takes_its_peer_id_over(pki):
    """A restart from an established client's address keeps that client's peer-id (OpenVPN 2.6's
    instance); if the old session ends (its timeout, a kill) while the restart still
    handshakes, the restart takes the number over -- not freed for a stranger while it is in
    use -- and it is free again only once the restart is gone too."""
    d = _server(pki, "none")
    addr = ("198.18.0.43", 1194)
    old = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    _pump(d, [(old, addr)])
    old_rec = d.clients[0]
    new = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    for p in new.take_outgoing():
        d.receive(p, addr, 1.0)
    for p, _a in d.take_outgoing():
        new.receive(p, 1.0)
    for p in new.take_outgoing():
        d.receive(p, addr, 1.0)          # the third packet: the restart's record is made
    (heir,) = d.pending.values()
    assert heir.peer_id == old_rec.peer_id == 0 and d.by_peer_id[0] is old_rec
    d.end(old_rec, "test: its timeout")
    assert d.by_peer_id[0] is heir and d.peer_ids.holders == {0: 1}
    stranger = _client(pki, pki["clients"][7], wrapping.PlainWrapper)
    _pump(d, [(new, addr), (stranger, ("198.18.0.44", 1))], now=1.1)
    assert _up(stranger) and stranger.peer_id == 1
    assert _up(new) and new.peer_id == 0 and d.by_peer_id[0] is heir and heir.session.established
    d.end(d.by_peer_id[0], "test: gone")
    assert d.peer_ids.holders == {1: 1}


def test_a_restart_from_a_clients_address_with_another_certificate_is_refused(pki):
    """A restart from an established client's address keeps that client's ID and peer-id (2.6's
    instance for the address takes the reset), and 2.6 locks the instance's common name: a new
    session there with another name fails ("TLS object CN attempted to change"). Ours made a
    fresh Session, so whoever completed a handshake from that address and port (the same NAT
    port later, anyone on the path) with any valid certificate took over the client's record:
    its ID, its >CLIENT:REAUTH, its status row. The newcomer is refused; the client keeps its
    tunnel, and the same certificate restarting is still let in."""
    d = _server(pki, "none")
    addr = ("198.18.0.45", 1194)
    old = _client(pki, pki["clients"][2], wrapping.PlainWrapper)
    _pump(d, [(old, addr)])
    old_rec = d.clients[0]
    other = _client(pki, pki["clients"][3], wrapping.PlainWrapper)
    _pump(d, [(other, addr)], now=1.0)
    assert not _up(other)
    assert d.clients == [old_rec] and not old_rec.session.closed and old_rec.session.peer_common_name == "client2"
    assert d.by_peer_id[0] is old_rec and d.peer_ids.holders == {0: 1} and not d.pending
    assert len(d.receive(old.encrypt(_icmp(old.pushed.ifconfig[0], "198.19.0.1")), addr, 1.2)[1]) == 1
    same = _client(pki, pki["clients"][2], wrapping.PlainWrapper)
    _pump(d, [(same, addr)], now=1.3)
    assert _up(same) and len(d.clients) == 1 and d.clients[0].session.peer_common_name == "client2"
    assert old_rec.session.closed and d.clients[0].peer_id == 0


def test_a_restart_refused_for_its_certificate_hears_auth_failed(pki):
    """What the refused newcomer is told, as by Debian's 2.6 server (seen in the lab: its client
    logs "AUTH: Received control message: AUTH_FAILED" and exits, auth-failure): the server's
    key-method message, then AUTH_FAILED. Ours sent AUTH_FAILED in the key-method message's
    place, so a 2.6 client read it as one ("TLS ERROR: Unknown key_method/flags=95"), took it for
    a TLS error and came back after its restart pause, again and again, each time a handshake
    and a log line here."""
    d = _server(pki, "none")
    addr = ("198.18.0.47", 1194)
    old = _client(pki, pki["clients"][5], wrapping.PlainWrapper)
    _pump(d, [(old, addr)])
    other = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    _pump(d, [(other, addr)], now=1.0)
    closed = [e for e in other.events if isinstance(e, ev.SessionClosed)]
    assert len(closed) == 1 and closed[0].reason == "AUTH_FAILED" and not closed[0].restart, closed
    assert any(isinstance(e, ev.AuthFailed) for e in other.events)
    assert d.clients[0].session.peer_common_name == "client5" and not d.clients[0].session.closed


def test_a_restart_refused_for_its_certificate_whose_key_method_never_comes_ends_at_hand_window(pki):
    """The refusal waits for the client's key-method message, to ack it (a 2.6 client reads
    nothing behind an unacked one); a client that never sends it is still refused, with the
    same words, at hand-window -- not left holding its handshake slot."""
    d = _server(pki, "none")
    addr = ("198.18.0.48", 1194)
    old = _client(pki, pki["clients"][7], wrapping.PlainWrapper)
    _pump(d, [(old, addr)])
    other = _client(pki, pki["clients"][8], wrapping.PlainWrapper)
    now = 1.0
    waiting = None
    for _ in range(60):
        for p in other.take_outgoing():
            d.receive(p, addr, now)
            rec = d.pending.get(addr)
            if rec is not None and rec.session.keys.get(0) is not None and rec.session.keys[0].refusal:
                waiting = rec
                break
        if waiting is not None:
            break
        for p, _a in d.take_outgoing():
            other.receive(p, now)
    assert waiting is not None and waiting.alive, "the refusal did not wait for the key-method message"
    d.handle_timer(now + 59)
    assert waiting.alive
    d.receive(old.encrypt(_icmp(old.pushed.ifconfig[0], "198.19.0.1")), addr, now + 59)  # (its keepalive)
    d.handle_timer(now + 61)
    closed = [e for r, e in d.events if r is waiting and isinstance(e, ev.SessionClosed)]
    assert not waiting.alive and closed and "CN attempted to change from 'client7' to 'client8'" in closed[0].reason
    assert not d.pending and d.clients[0].session.peer_common_name == "client7" and not d.clients[0].session.closed


def test_a_restart_from_a_clients_address_with_another_username_is_refused(pki):
    """The same lock for the username (2.6's locked_username on the address's instance): the
    same certificate with another login does not take the client's record over."""
    stls = TlsSettings(_pem(pki["ca"][0]), _pem(pki["server"][0]), _kpem(pki["server"][1]), True,
                       remote_cert_tls="client")
    st = ServerSettings(
        session_config=lambda pid: SessionConfig(Role.SERVER, stls, None, peer_id=pid, ping=10, ping_restart=60,
                                                 verify_user=lambda u, p, cn: True),
        protection="none", pool=AddressPool("198.19.0.0", "255.255.255.0", "subnet"))
    d = ServerDispatcher(st, 0.0)
    addr = ("198.18.0.46", 1194)

    def client(user):
        c, k = pki["clients"][4]
        cfg = SessionConfig(Role.CLIENT, TlsSettings(_pem(pki["ca"][0]), _pem(c), _kpem(k), False,
                                                     remote_cert_tls="server"), wrapping.PlainWrapper,
                            username=user, password="pw")
        s = Session(cfg, 0.0)
        s.start(0.0)
        return s

    old = client("alice")
    _pump(d, [(old, addr)])
    old_rec = d.clients[0]
    assert _up(old) and old_rec.session.peer_username == "alice"
    mallory = client("mallory")
    _pump(d, [(mallory, addr)], now=1.0)
    assert not _up(mallory) and d.clients == [old_rec] and not old_rec.session.closed and not d.pending
    again = client("alice")
    _pump(d, [(again, addr)], now=1.3)
    assert _up(again) and d.clients[0].session.peer_username == "alice" and old_rec.session.closed
