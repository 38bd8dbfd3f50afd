"""Client and server Sessions wired in memory, with a fake clock and a seeded lossy link.

What a user relies on, checked without any I/O: every cipher × protection handshakes and carries
data both ways; renegotiation (by either side, by timer, by packet count) loses nothing in
flight; loss, duplication and reordering on the link only slow the handshake down.
"""
from __future__ import annotations

import random

import pytest

from appliance.bench import _cert, _pems
from appliance.openvpn import events as ev
from appliance.openvpn import keyfiles, wrapping
from appliance.openvpn.session import EXIT_HOLD, PEER_RENEG_BURST, PEER_RENEG_EVERY, Role, Session, SessionConfig
from appliance.openvpn.tls import TlsSettings
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from tests.aead_paths import aead_path  # noqa: F401 - the fixture: both AEAD paths, compiled and Python

pytestmark = pytest.mark.usefixtures("aead_path")

CIPHERS = ["AES-128-GCM", "AES-256-GCM", "CHACHA20-POLY1305", "AES-256-CBC"]
PROTECTIONS = ["none", "tls-auth", "tls-crypt", "tls-crypt-v2"]


@pytest.fixture(scope="module")
def pki():
    ca = _cert("mem CA")
    return {"ca": ca[0].public_bytes(serialization.Encoding.PEM),
            "server": _pems(_cert("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)),
            "client": _pems(_cert("client", ca, ExtendedKeyUsageOID.CLIENT_AUTH))}


class Link:
    """Moves packets between two sessions; drops/duplicates/reorders with a seeded RNG; fake time."""

    def __init__(self, client: Session, server: Session, seed=1, loss=0.0, dup=0.0, reorder=0.0,
                 strip_wkc=False) -> None:
        self.c, self.s = client, server
        self.rng = random.Random(seed)
        self.loss, self.dup, self.reorder = loss, dup, reorder
        self.now = 0.0
        self.strip_wkc = strip_wkc
        self.delivered: list = []

    def _mangle(self, pkts: list) -> list:
        out = []
        for p in pkts:
            if self.rng.random() < self.loss:
                continue
            out.append(p)
            if self.rng.random() < self.dup:
                out.append(p)
        if len(out) > 1 and self.rng.random() < self.reorder:
            i = self.rng.randrange(len(out) - 1)
            out[i], out[i + 1] = out[i + 1], out[i]
        return out

    def step(self) -> int:
        moved = 0
        for p in self._mangle(self.c.take_outgoing()):
            p = bytes(p)
            if self.strip_wkc and p[0] >> 3 in (10, 11):
                p, _ = wrapping.split_wkc_untrusted(p)
            self.s.receive(p, self.now)
            moved += 1
        for p in self._mangle(self.s.take_outgoing()):
            self.c.receive(bytes(p), self.now)
            moved += 1
        return moved

    def run(self, until, max_steps=5000, max_time=600.0) -> None:
        for _ in range(max_steps):
            if until():
                return
            if not self.step():
                dls = [d for d in (self.c.next_deadline(), self.s.next_deadline()) if d is not None]
                if not dls or min(dls) > max_time:
                    return
                self.now = max(self.now, min(dls))
                self.c.handle_timer(self.now)
                self.s.handle_timer(self.now)

    def send(self, a: Session, b: Session, payloads: list[bytes], loss_free=True) -> list[bytes]:
        got = []
        for p in payloads:
            w = a.encrypt(p)
            assert w is not None
            for q in ([w] if loss_free else self._mangle([w])):
                got += [bytes(x) for x in b.receive(bytes(q), self.now)]
        return got


def make_pair(pki, cipher="AES-256-GCM", protection="tls-crypt", server_ekm=True, peer_id=5, proto="udp",
              tls_max=None, **kw):
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    v2 = keyfiles.parse_tls_crypt_v2_server_key(keyfiles.generate_tls_crypt_v2_server_key())
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(keyfiles.generate_tls_crypt_v2_client_key(v2))
    cw = {"none": wrapping.PlainWrapper, "tls-auth": lambda: wrapping.TlsAuthWrapper(key, 1, "SHA256"),
          "tls-crypt": lambda: wrapping.TlsCryptWrapper(key, False),
          "tls-crypt-v2": lambda: wrapping.TlsCryptV2ClientWrapper(kc, wkc)}[protection]
    sw = {"none": wrapping.PlainWrapper, "tls-auth": lambda: wrapping.TlsAuthWrapper(key, 0, "SHA256"),
          "tls-crypt": lambda: wrapping.TlsCryptWrapper(key, True),
          "tls-crypt-v2": lambda: wrapping.TlsCryptWrapper(kc, True)}[protection]
    common = dict(proto=proto, auth="SHA256", **kw)
    c = Session(SessionConfig(Role.CLIENT, TlsSettings(pki["ca"], *pki["client"], False, remote_cert_tls="server",
                                                       tls_version_max=tls_max), cw,
                              data_ciphers=[cipher], data_ciphers_fallback=cipher if cipher.endswith("CBC") else None,
                              early_negotiation=protection == "tls-crypt-v2", **common), 0.0)
    s = Session(SessionConfig(Role.SERVER, TlsSettings(pki["ca"], *pki["server"], True, remote_cert_tls="client"), sw,
                              data_ciphers=[cipher], peer_id=peer_id, server_ekm=server_ekm,
                              push_options=lambda _s: ["ifconfig 198.19.0.2 255.255.255.0", "topology subnet"],
                              **common), 0.0)
    c.start(0.0)
    return c, s, protection == "tls-crypt-v2"


def up(c, s):
    return c.established and s.established


def connected(pki, **kw):
    """A client and server session (make_pair's keywords) brought up over a Link: (c, s, link)."""
    c, s, strip = make_pair(pki, **kw)
    link = Link(c, s, strip_wkc=strip)
    link.run(lambda: up(c, s))
    assert up(c, s)
    return c, s, link


def payloads(n, seed=0):
    r = random.Random(seed)
    return [bytes([0x45]) + r.randbytes(r.randrange(20, 1400)) for _ in range(n)]


def recorded_pair(pki, n_data: int, **kw):
    """connected() while recording every packet of the handshake (each kind of control packet),
    then n_data data packets, the first half client->server: what hostile-input tests mutate.
    (c, s, link, recorded); the link keeps recording what it carries."""
    c, s, strip = make_pair(pki, **kw)
    link = Link(c, s, strip_wkc=strip)
    recorded: list[bytes] = []
    real_step = link.step

    def recording_step() -> int:
        cs, ss = c.take_outgoing(), s.take_outgoing()
        recorded.extend(bytes(p) for p in cs + ss)
        c.out, s.out = list(cs), list(ss)
        return real_step()
    link.step = recording_step
    link.run(lambda: up(c, s))
    assert up(c, s)
    data = payloads(n_data)
    half = n_data // 2
    recorded += [bytes(c.encrypt(p)) for p in data[:half]] + [bytes(s.encrypt(p)) for p in data[half:]]
    return c, s, link, recorded


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("protection", PROTECTIONS)
def test_every_cipher_and_protection(pki, cipher, protection):
    c, s, strip = make_pair(pki, cipher, protection)
    link = Link(c, s, strip_wkc=strip)
    link.run(lambda: up(c, s))
    assert up(c, s), (c.stats, s.stats, list(c.events), list(s.events))
    ups = [e for e in c.events if isinstance(e, ev.TunnelUp)]
    assert ups and ups[0].cipher == cipher
    data = payloads(50)
    assert link.send(c, s, data) == data
    assert link.send(s, c, data) == data


@pytest.mark.parametrize("server_ekm,peer_id,proto,tls_max", [
    (False, 5, "udp", None), (True, None, "udp", None), (True, 5, "tcp", None), (True, 5, "udp", "1.2")])
def test_prf_data_v1_tcp_and_tls12(pki, server_ekm, peer_id, proto, tls_max):
    c, s, _ = make_pair(pki, server_ekm=server_ekm, peer_id=peer_id, proto=proto, tls_max=tls_max)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s)
    tu = [e for e in c.events if isinstance(e, ev.TunnelUp)][0]
    assert tu.key_derivation == ("tls-ekm" if server_ekm else "prf")
    assert c.send_key.hdr[0] >> 3 == (9 if peer_id is not None else 6)
    data = payloads(20)
    assert link.send(c, s, data) == data and link.send(s, c, data) == data


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_handshake_survives_loss_duplication_reordering(pki, seed):
    c, s, _ = make_pair(pki, protection="tls-crypt")
    link = Link(c, s, seed=seed, loss=0.2, dup=0.1, reorder=0.3)
    link.run(lambda: up(c, s), max_steps=20000)
    assert up(c, s), (link.now, c.stats, s.stats)
    assert link.now < 60, "took longer than hand-window"
    data = payloads(200, seed)
    got = link.send(c, s, data, loss_free=False)
    assert len(got) == len(set(got)), "a duplicate was delivered twice"
    assert set(got) <= set(data) and len(got) >= 100


def test_reordered_data_within_window_accepted_once(pki):
    c, s, _ = make_pair(pki)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    data = payloads(64, 9)
    wires = [bytes(c.encrypt(p)) for p in data]
    random.Random(3).shuffle(wires)
    got = [bytes(x) for w in wires for x in s.receive(w, 1.0)]
    assert sorted(got) == sorted(data)
    assert all(s.receive(w, 1.0) == [] for w in wires)        # replays
    assert s.stats["replayed data packet"] == 64


def _transfer_during(link, c, s, rounds, trigger):
    """Send traffic both ways each round; `trigger(round)` may start a renegotiation."""
    sent = got = 0
    for r in range(rounds):
        trigger(r)
        for _ in range(3):
            link.step()
        data = payloads(10, r)
        sent += 2 * len(data)
        got += len(link.send(c, s, data)) + len(link.send(s, c, data))
    return sent, got


@pytest.mark.parametrize("who", ["client", "server"])
def test_renegotiation_loses_nothing(pki, who):
    c, s, _ = make_pair(pki)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    # 12 renegotiations within a few seconds: the answering end must have earned its burst first
    # (a new session has one in hand: session.PEER_RENEG_START).
    link.now += PEER_RENEG_BURST * PEER_RENEG_EVERY
    ids = []

    def trigger(r):
        if r % 5 == 0:
            (c if who == "client" else s).renegotiate(link.now)
            ids.append(r)
    sent, got = _transfer_during(link, c, s, 60, trigger)
    link.run(lambda: False, max_steps=50)
    assert got == sent, f"lost {sent - got} packets across renegotiations"
    # 12 renegotiations: key ids 1..7 then wrap to 1 (never 0 again).
    renegs = [e.key_id for e in c.events if isinstance(e, ev.KeyRenegotiated)]
    assert len(renegs) >= 10, renegs
    assert renegs[:8] == [1, 2, 3, 4, 5, 6, 7, 1]


def test_renegotiation_by_timer_and_by_packets(pki):
    c, s, _ = make_pair(pki, reneg_sec=30, reneg_pkts=500)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    link.now = 31.0
    c.handle_timer(link.now)
    link.run(lambda: c.send_key.key_id == 1 and s.send_key.key_id == 1, max_time=40)
    assert c.send_key.key_id == 1 and s.send_key.key_id == 1
    data = payloads(300)
    assert link.send(c, s, data) == data and link.send(s, c, data) == data     # 600 packets > reneg-pkts
    c.handle_timer(link.now)
    s.handle_timer(link.now)
    link.run(lambda: c.send_key.key_id == 2 and s.send_key.key_id == 2, max_time=45)
    assert c.send_key.key_id == 2


def test_lame_duck_key_until_tran_window(pki):
    c, s, _ = make_pair(pki, tran_window=20)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    old = bytes(c.encrypt(payloads(1)[0]))            # sealed with key 0, delivered late
    c.renegotiate(link.now)
    link.run(lambda: c.send_key.key_id == 1 and s.send_key.key_id == 1, max_time=10)
    assert len(s.receive(old, link.now)) == 1           # lame duck still decrypts
    old2 = bytearray(old)
    old2[4:8] = (int.from_bytes(old[4:8], "big") + 1000).to_bytes(4, "big")
    link.now += 25
    c.handle_timer(link.now)
    s.handle_timer(link.now)
    assert s.recv_keys[0] is None, "key 0 should be gone after tran-window"


def test_keepalive_ping_and_ping_restart(pki):
    c, s, _ = make_pair(pki, ping=5, ping_restart=20)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    t0 = link.now
    c.handle_timer(t0 + 5.5)
    pings = [p for p in c.take_outgoing() if p[0] >> 3 in (6, 9)]   # data packets only (no control resends)
    assert len(pings) == 1
    assert s.receive(bytes(pings[0]), t0 + 5.5) == []          # not delivered as a tunnel packet
    s.handle_timer(t0 + 30)                                     # client went silent
    closed = [e for e in s.events if isinstance(e, ev.SessionClosed)]
    assert closed and closed[0].restart and "ping-restart" in closed[0].reason


def test_exit_notification_closes_server_session_after_the_hold(pki):
    """The client's EXIT ends the server's session EXIT_HOLD seconds later, as OpenVPN 2.6's
    schedule_exit: meanwhile data passes both ways; an EXIT repeated (a hostile client's, or a
    retransmission) does not move the end."""
    c, s, _ = make_pair(pki)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert c.notify_exit(link.now, first=True)       # explicit-exit-notify's notice (EXIT: cc-exit)
    link.step()
    t0 = link.now
    assert not s.closed and s.exit_at == t0 + EXIT_HOLD
    link.now = t0 + EXIT_HOLD - 0.5
    c._send_text("EXIT")                              # again, later: nothing moves
    c._flush(link.now)
    link.step()
    assert s.exit_at == t0 + EXIT_HOLD
    assert link.send(c, s, [b"from the departing client"]) == [b"from the departing client"]
    assert link.send(s, c, [b"to it"]) == [b"to it"]
    assert s.next_deadline() <= t0 + EXIT_HOLD
    s.handle_timer(t0 + EXIT_HOLD - 0.01)
    assert not s.closed
    s.handle_timer(t0 + EXIT_HOLD)
    closed = [e for e in s.events if isinstance(e, ev.SessionClosed)]
    assert s.closed and closed and closed[0].reason == "client exited (EXIT)" and not closed[0].restart


def test_the_server_starts_no_renegotiation_in_the_exits_hold(pki):
    """reneg-sec falling due within the EXIT's hold starts nothing on the server's side (a new
    TLS handshake for a session that ends within 5 s): the hold's guard in _start_soft_reset and
    the reneg timer. The session ends at the hold's end on the key it had. (A soft reset the
    client itself sends in the hold is answered, as 2.6 answers it: its single-session flag
    refuses new sessions, not renegotiations; at the peer's renegotiation rate, as a live one.)"""
    c, s, link = connected(pki)
    s.cfg.reneg_sec = 20
    active = s._newest().active_since
    link.now = active + 17
    assert c.notify_exit(link.now, first=True)
    link.step()
    assert s.exit_at == link.now + EXIT_HOLD
    end = s.exit_at
    for _ in range(200):                              # bounded: 0.05 s steps past the hold's end
        if s.closed:
            break
        link.now += 0.05
        s.handle_timer(link.now)
        link.step()
        assert s.next_deadline() is None or s.next_deadline() <= end
    assert s.closed and link.now <= end + 0.1
    assert not [e for e in s.events if isinstance(e, ev.KeyRenegotiated)], "the server renegotiated in the hold"
    assert list(s.keys) == [0], f"the server began a new key in the hold: {sorted(s.keys)}"


def test_wrong_tls_crypt_key_never_connects(pki):
    c, s, _ = make_pair(pki, protection="tls-crypt")
    other = keyfiles.parse_static_key(keyfiles.generate_static_key())
    s.wrapper = wrapping.TlsCryptWrapper(other, True)
    link = Link(c, s)
    link.run(lambda: up(c, s), max_time=120)
    assert not up(c, s)
    assert sum(s.stats.values()) >= 3
    closed = [e for e in c.events if isinstance(e, ev.SessionClosed)]
    assert closed and closed[0].restart, "hand-window expiry should ask the client to reconnect"


def test_auth_failed(pki):
    c, s, _ = make_pair(pki, verify_user=lambda u, p, cn: False)
    c.cfg.username, c.cfg.password = "mallory", "x"
    link = Link(c, s)
    link.run(lambda: c.closed)
    assert any(isinstance(e, ev.AuthFailed) for e in c.events)
    closed = [e for e in c.events if isinstance(e, ev.SessionClosed)]
    assert closed and not closed[0].restart


def test_renegotiation_by_bytes(pki):
    c, s, _ = make_pair(pki, reneg_bytes=100_000)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert c.send_key.key_id == 0
    data = payloads(150)                                  # ~100 kB each way: past reneg-bytes
    assert link.send(c, s, data) == data and link.send(s, c, data) == data
    c.handle_timer(link.now)
    s.handle_timer(link.now)
    link.run(lambda: c.send_key.key_id == 1 and s.send_key.key_id == 1, max_time=20)
    assert c.send_key.key_id == 1 and s.send_key.key_id == 1
    assert link.send(c, s, data[:10]) == data[:10]        # the new key carries traffic


def test_pull_filter_ignore_and_reject(pki):
    c, s, _ = make_pair(pki, pull_filter=[("ignore", "topology")])
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s) and c.pushed.topology == "net30" and c.pushed.filtered == ["topology subnet"]
    assert c.pushed.ifconfig == ("198.19.0.2", "255.255.255.0")

    c, s, _ = make_pair(pki, pull_filter=[("reject", "ifconfig ")])
    link = Link(c, s)
    link.run(lambda: c.closed, max_time=30)
    closed = [e for e in c.events if isinstance(e, ev.SessionClosed)]
    assert closed and closed[0].restart and "pull-filter" in closed[0].reason
    assert not c.established


def test_route_nopull_session_keeps_pushed_dns_out(pki):
    # route-nopull reached the session's parse only through the gateway's routes: the pushed DNS
    # still went to the host's resolver and the LAN's forwarder and DHCP server.
    c, s, _ = make_pair(pki, route_nopull=True)
    s.cfg.push_options = lambda _s: ["ifconfig 198.19.0.2 255.255.255.0", "topology subnet",
                                     "dhcp-option DNS 198.18.0.53", "route 198.18.9.0 255.255.255.0"]
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s) and c.pushed.dns == [] and c.pushed.routes == []
    assert c.pushed.ifconfig == ("198.19.0.2", "255.255.255.0")


@pytest.mark.parametrize("pushed, tun_mtu_max, used", [(65535, 0, 1600), (1600, 0, 1600), (1400, 0, 1400),
                                                      (9000, 9000, 9000), (65535, 9000, 9000), (1500, 1200, 1500)])
def test_pushed_tun_mtu_bounded_as_openvpn_tun_mtu_max(pki, pushed, tun_mtu_max, used):
    """The cap is the profile's tun-mtu-max, never under 1600 (OpenVPN 2.6 init.c
    frame_finalize_options); a jumbo-frame server's push is taken once the profile allows it."""
    c, s, _ = make_pair(pki)
    c.cfg.tun_mtu_max = tun_mtu_max
    s.cfg.push_options = lambda _s: ["ifconfig 198.19.0.2 255.255.255.0", "topology subnet", f"tun-mtu {pushed}"]
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s) and c.pushed.tun_mtu == used
    warned = [e for e in c.events if isinstance(e, ev.Warning) and "tun-mtu" in e.message]
    assert bool(warned) == (pushed > used)
    assert not warned or f"tun-mtu-max {pushed}" in warned[0].message


def test_ping_exit_ends_without_restart(pki):
    c, s, _ = make_pair(pki, ping=5, ping_exit=20)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    t0 = link.now
    c.handle_timer(t0 + 15)                       # quiet, but not for long enough
    assert not c.closed
    c.handle_timer(t0 + 21)                       # the server went silent for ping-exit seconds
    closed = [e for e in c.events if isinstance(e, ev.SessionClosed)]
    assert c.closed and closed and not closed[0].restart and "ping-exit" in closed[0].reason


def test_pushed_auth_token_replaces_the_password_on_renegotiation(pki):
    import base64
    seen = []
    c, s, _ = make_pair(pki, verify_user=lambda u, p, cn: seen.append((u, p)) or True)
    c.cfg.username, c.cfg.password = "alice", "one-time-123456"
    s.cfg.push_options = lambda _s: ["ifconfig 198.19.0.2 255.255.255.0", "topology subnet",
                                     "auth-token SESS_ID_tok3n", "auth-token-user " + base64.b64encode(b"alice").decode()]
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s) and seen == [("alice", "one-time-123456")]
    c.renegotiate(link.now)
    link.run(lambda: c.send_key.key_id == 1 and s.send_key.key_id == 1, max_time=20)
    km = next(k for k in s.keys.values() if k.key_id == 1).remote_km
    assert (km.username, km.password) == ("alice", "SESS_ID_tok3n")


def test_reneg_bytes_fires_during_continuous_traffic(pki):
    """Drive the client as the gateway does (timers only when next_deadline() has passed) while
    data flows every 50 ms: the reneg-bytes check must still come round."""
    c, s, _ = make_pair(pki, reneg_bytes=50_000)
    s.cfg.reneg_bytes = None                      # only the client counts
    link = Link(c, s)
    link.run(lambda: up(c, s))
    data = payloads(400, seed=3)
    for i, p in enumerate(data):
        link.now += 0.05
        w = c.encrypt(p)
        s.receive(bytes(w), link.now)
        c.note_sent(link.now)
        for sess in (c, s):
            dl = sess.next_deadline()
            if dl is not None and link.now >= dl:
                sess.handle_timer(link.now)
        link.step()
        if c.send_key.key_id == 1 and s.send_key.key_id == 1:
            break
    assert c.send_key.key_id == 1, "reneg-bytes never triggered while traffic kept flowing"


def test_reneg_sec_0_means_never(pki):
    """`reneg-sec 0` (in every eduVPN profile) turns time-based renegotiation off, as in OpenVPN."""
    c, s, _ = make_pair(pki, reneg_sec=0)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    for t in (10.0, 3600.0, 100_000.0):
        link.now = t
        c.handle_timer(t)
        s.handle_timer(t)
        link.run(lambda: False, max_steps=50, max_time=t + 1)
    assert not [e for e in c.events if isinstance(e, ev.KeyRenegotiated)]
    assert c.send_key.key_id == 0 and up(c, s)
    dl = c.next_deadline()
    assert dl is None or dl > 100_000.0 - 1
