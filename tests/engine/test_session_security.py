"""Issue 8, one Session pair in memory: what an authenticated but hostile (or changed) peer can do.

Each test is a thing OpenVPN refuses or bounds: a renegotiation under another identity, a
password that is no longer valid, a pushed value out of range, a packet-id counter at its end,
peer-info nonsense, kilobytes of junk control text, memory pinned by renegotiating.
"""
from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.bench import _cert, _pems
from appliance.certs import issue, subject
from appliance.openvpn import events as ev
from appliance.openvpn.tls import TlsSettings, build_context, common_name
from tests.engine.test_memory_link import Link, connected, make_pair, payloads, up
from tests.aead_paths import aead_path  # noqa: F401 - the fixture: both AEAD paths, compiled and Python

pytestmark = pytest.mark.usefixtures("aead_path")

DATA_PID_RENEG_AT = 0xFF000000          # OpenVPN's PACKET_ID_WRAP_TRIGGER
PID_MAX = 0xFFFFFFFF


@pytest.fixture(scope="module")
def pki():
    ca = _cert("sec CA")
    return {"ca": ca[0].public_bytes(serialization.Encoding.PEM),
            "server": _pems(_cert("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)),
            "client": _pems(_cert("alice", ca, ExtendedKeyUsageOID.CLIENT_AUTH)),
            "client_b": _pems(_cert("mallory", ca, ExtendedKeyUsageOID.CLIENT_AUTH)),
            "client_again": _pems(_cert("alice", ca, ExtendedKeyUsageOID.CLIENT_AUTH)),   # alice's second
            # alice's name first, mallory's last: OpenVPN's name for it is mallory
            "client_ab": _pems(issue("", ca, ExtendedKeyUsageOID.CLIENT_AUTH, subject("/CN=alice/CN=mallory")))}


def _closed(sess) -> list[ev.SessionClosed]:
    return [e for e in sess.events if isinstance(e, ev.SessionClosed)]


def _renegotiate(link, c, s) -> None:
    c.renegotiate(link.now)
    link.run(lambda: (c.send_key.key_id == 1 and s.send_key.key_id == 1) or c.closed or s.closed, max_time=30)


# ---------------------------------------------------------------- renegotiation re-checks
def test_renegotiation_with_another_certificate_ends_the_session(pki):
    """Another valid certificate of the same CA on renegotiation: OpenVPN's "TLS object CN
    attempted to change"; the tunnel must not carry on as the new name."""
    c, s, link = connected(pki)
    assert s.peer_common_name == "alice"
    c.cfg.tls = TlsSettings(pki["ca"], *pki["client_b"], False, remote_cert_tls="server")
    c.tls_context = build_context(c.cfg.tls)
    _renegotiate(link, c, s)
    closed = _closed(s)
    assert s.closed and closed and "CN attempted to change" in closed[0].reason
    assert s.peer_common_name == "alice", "the session's identity must not have been replaced"
    assert common_name(s.peer_certificate) == "alice", "client-disconnect would see mallory's certificate"
    assert s.send_key is None or s.send_key.key_id == 0


@pytest.mark.parametrize("who", ["client", "server"])
def test_renegotiation_with_a_certificate_of_another_ca_ends_the_session(pki, who):
    """A TLS failure of a renegotiation about the peer's certificate -- OpenSSL's verification
    refusing a chain of another CA -- ends the session: only failures on the bytes that reached
    TLS (a key holder's forgery) are contained (Session._contain_tls_failure, forge48); a
    revoked or foreign identity never keeps its tunnel on the old key."""
    c, s, link = connected(pki)
    other = _cert("other CA")
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if who == "client" else ExtendedKeyUsageOID.SERVER_AUTH
    changed, refusing = (c, s) if who == "client" else (s, c)
    t = changed.cfg.tls
    changed.cfg.tls = TlsSettings(pki["ca"], *_pems(_cert("alice" if who == "client" else "server", other, usage)),
                                  t.is_server, remote_cert_tls=t.remote_cert_tls)
    changed.tls_context = build_context(changed.cfg.tls)
    _renegotiate(link, c, s)
    closed = _closed(refusing)
    assert refusing.closed and closed and "verify failed" in closed[0].reason, closed
    assert not refusing.stats.get("renegotiation failed")


def test_renegotiation_with_another_certificate_of_the_same_name_ends_the_session(pki):
    """OpenVPN 2.6 locks the peer's certificates, not only its CN ("client-provided SSL certs
    unexpectedly changed during mid-session reauth"): a second certificate the CA gave the same
    name (another serial, another key) must not carry on the tunnel that client-connect and the
    status vouched for under the first one's serial and fingerprint."""
    c, s, link = connected(pki)
    first = s.peer_certificate
    c.cfg.tls = TlsSettings(pki["ca"], *pki["client_again"], False, remote_cert_tls="server")
    c.tls_context = build_context(c.cfg.tls)
    _renegotiate(link, c, s)
    closed = _closed(s)
    assert s.closed and closed and "certs unexpectedly changed" in closed[0].reason
    assert s.peer_common_name == "alice" and s.peer_certificate == first
    assert s.send_key is None or s.send_key.key_id == 0


def _sub_ca(root, key, cn: str = "sec sub CA"):
    """A sub-CA certificate of `root` for `key`: called twice with one key, the same sub-CA
    re-issued (same name and key, another serial), under which the same leaf verifies."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(root[0].subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(True, 0), True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
            .sign(root[1], hashes.SHA256()))


@pytest.fixture(scope="module")
def chain_pki():
    root = _cert("sec root CA")
    sub_key = ec.generate_private_key(ec.SECP256R1())
    sub, sub_again = _sub_ca(root, sub_key), _sub_ca(root, sub_key)
    leaf, leaf_key = _cert("alice", (sub, sub_key), ExtendedKeyUsageOID.CLIENT_AUTH)
    pem = serialization.Encoding.PEM
    cert, key = _pems((leaf, leaf_key))
    # The server's `ca` is the root alone: the client sends its sub-CA with its leaf.
    return {"ca": root[0].public_bytes(pem), "server": _pems(_cert("server", root, ExtendedKeyUsageOID.SERVER_AUTH)),
            "client": (cert + sub.public_bytes(pem), key),
            "client_resigned": (cert + sub_again.public_bytes(pem), key)}


def test_renegotiation_with_the_same_leaf_under_a_reissued_sub_ca_ends_the_session(chain_pki):
    """OpenVPN 2.6 locks the hash of the certificate at every depth of the verified chain
    (ssl_verify.c cert_hash_remember, tls_lock_cert_hash_set, and cert_hash_compare in
    verify_final_auth_checks), not the leaf alone: the same leaf (same DER) sent at
    renegotiation with a re-issued sub-CA (same name and key, another serial and fingerprint)
    is another chain, and the session ends as OpenVPN's does ("client-provided SSL certs
    unexpectedly changed during mid-session reauth")."""
    c, s, link = connected(chain_pki)
    first, first_chain = s.peer_certificate, s._locked_chain
    assert len(first_chain) == 3, "the lock covers leaf, sub-CA and root"
    c.cfg.tls = TlsSettings(chain_pki["ca"], *chain_pki["client_resigned"], False, remote_cert_tls="server")
    c.tls_context = build_context(c.cfg.tls)
    _renegotiate(link, c, s)
    closed = _closed(s)
    assert s.closed and closed and "certs unexpectedly changed during mid-session reauth" in closed[0].reason
    assert s.peer_certificate == first and s._locked_chain == first_chain
    assert s.send_key is None or s.send_key.key_id == 0


def test_renegotiation_with_the_same_chain_under_a_sub_ca_goes_on(chain_pki):
    c, s, link = connected(chain_pki)
    _renegotiate(link, c, s)
    assert not s.closed and not c.closed and s.send_key.key_id == 1


def test_renegotiation_with_the_same_certificate_goes_on(pki):
    c, s, link = connected(pki)
    _renegotiate(link, c, s)
    assert not s.closed and not c.closed and s.send_key.key_id == 1


def test_renegotiation_with_a_certificate_whose_last_cn_differs_ends_the_session(pki):
    """A second certificate with the first name as its FIRST CN and another as its last is
    another identity (OpenVPN reads the last CN): the CN lock must refuse it, not compare
    first CNs and let mallory's certificate carry alice's tunnel."""
    c, s, link = connected(pki)
    assert s.peer_common_name == "alice"
    c.cfg.tls = TlsSettings(pki["ca"], *pki["client_ab"], False, remote_cert_tls="server")
    c.tls_context = build_context(c.cfg.tls)
    _renegotiate(link, c, s)
    closed = _closed(s)
    assert s.closed and closed and "from 'alice' to 'mallory'" in closed[0].reason
    assert s.peer_common_name == "alice"


def test_renegotiation_with_another_username_ends_the_session(pki):
    c, s, link = connected(pki, verify_user=lambda u, p, cn: True, username="alice", password="pw")
    assert s.peer_username == "alice"
    c.cfg.username = "bob"
    _renegotiate(link, c, s)
    closed = _closed(s)
    assert s.closed and closed and "username attempted to change" in closed[0].reason
    assert not closed[0].restart


def test_password_is_verified_again_on_renegotiation(pki):
    calls = []

    def verify(u, p, cn):
        calls.append(p)
        return p == "right"
    c, s, link = connected(pki, verify_user=verify, username="alice", password="right")
    assert calls == ["right"]
    c.cfg.password = "revoked-or-wrong"
    _renegotiate(link, c, s)
    assert calls == ["right", "revoked-or-wrong"], "the renegotiation's password was not checked"
    assert s.closed and "renegotiation" in _closed(s)[0].reason
    assert any(isinstance(e, ev.AuthFailed) for e in c.events), "the client is told AUTH_FAILED"


def test_auth_token_is_accepted_on_renegotiation_without_the_password_check(pki):
    calls = []
    c, s, _ = make_pair(pki, verify_user=lambda u, p, cn: calls.append(p) or p == "otp-1",
                        username="alice", password="otp-1")
    s.cfg.push_options = lambda _s: ["ifconfig 198.19.0.2 255.255.255.0", "auth-token TOKEN-abc"]
    link = Link(c, s)
    link.run(lambda: up(c, s))
    calls.clear()
    _renegotiate(link, c, s)
    assert not s.closed and c.send_key.key_id == 1
    assert calls == [], "a valid auth-token must not go through the password check"


def test_a_renewed_auth_token_pushed_after_the_tunnel_is_up_replaces_the_old_one(pki):
    """OpenVPN 2.6 (auth-gen-token) renews the token at each renegotiation with a push of it
    alone (`PUSH_REPLY,auth-token ...`) and refuses a token older than twice its renewal time
    (default twice reneg-sec). Dropped as "a duplicate answer", the renewal never took: two hours
    in, the renegotiation sent the first token, the server said AUTH_FAILED,SESSION: token
    expired, and the client exited. Only the token is taken from such a push."""
    c, s, _ = make_pair(pki, verify_user=lambda u, p, cn: p == "otp-1", username="alice", password="otp-1")
    s.cfg.push_options = lambda _s: ["ifconfig 198.19.0.2 255.255.255.0", "auth-token TOKEN-abc"]
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert c.token.token == "TOKEN-abc"
    s._send_text("PUSH_REPLY,auth-token TOKEN-new,ifconfig 198.19.0.99 255.255.255.0")
    link.run(lambda: c.token.token == "TOKEN-new" or c.closed, max_time=link.now + 5)
    assert c.token.token == "TOKEN-new" and not c.closed
    assert c.pushed.ifconfig == ("198.19.0.2", "255.255.255.0"), "only the token is taken from it"


def test_auth_failed_on_a_token_renegotiation_reconnects_instead_of_exiting(pki):
    """A token the server no longer takes (expired, or the server restarted with a new token key:
    AUTH_FAILED,SESSION, or a plain AUTH_FAILED): OpenVPN 2.6 forgets the token and reconnects
    (its "auth-failure (auth-token)" soft restart), where the password may still be good. The
    client exited as for a refused password."""
    c, s, _ = make_pair(pki, verify_user=lambda u, p, cn: p == "otp-1", username="alice", password="otp-1")
    s.cfg.push_options = lambda _s: ["ifconfig 198.19.0.2 255.255.255.0", "auth-token TOKEN-abc"]
    link = Link(c, s)
    link.run(lambda: up(c, s))
    c.token.token = "TOKEN-the-server-forgot"
    c.renegotiate(link.now)
    link.run(lambda: c.closed, max_time=link.now + 30)
    closed = _closed(c)
    assert c.closed and closed and "AUTH_FAILED" in closed[0].reason
    assert closed[0].restart, "the client exited instead of reconnecting with its password"


# ---------------------------------------------------------------- hostile pushes
@pytest.mark.parametrize("option,what", [("peer-id 16777216", "peer-id"), ("peer-id -1", "peer-id"),
                                         ("ping -5", "ping"), ("ping-restart -1", "ping-restart"),
                                         ("tun-mtu 20", "tun-mtu"), ("peer-id x", "peer-id"),
                                         ("explicit-exit-notify 99999", "explicit-exit-notify"),
                                         ("dns server 1 address 198.19.0.53 bogus", "dns server 1")])
def test_a_bad_pushed_value_is_noted_and_the_session_comes_up(pki, option, what):
    """OpenVPN 2.6 logs such an option (left out, or read with atoi) and goes on with the rest
    of the push; Debian's 2.6.14 client came up against each in the lab. Ours ended the session
    and reconnected, a loop against such a server."""
    c, s, _ = make_pair(pki)
    s.cfg.push_options = lambda _s: ["ifconfig 198.19.0.2 255.255.255.0", option]
    link = Link(c, s)
    link.run(lambda: c.closed or up(c, s), max_time=30)     # must not raise
    assert up(c, s) and not c.closed
    assert any(what in m for m in c.pushed.malformed), c.pushed.malformed
    assert link.send(c, s, payloads(2)) == payloads(2)


def test_a_pushed_dns_server_without_an_address_restarts_as_26(pki):
    """2.6: "ERROR: dns server 1 does not have an address assigned", process-push-msg-failed."""
    c, s, _ = make_pair(pki)
    s.cfg.push_options = lambda _s: ["ifconfig 198.19.0.2 255.255.255.0", "dns server 1 address 999.1.1.1"]
    link = Link(c, s)
    link.run(lambda: c.closed or up(c, s), max_time=30)
    closed = _closed(c)
    assert c.closed and closed and "dns server 1" in closed[0].reason and not c.established
    assert closed[0].restart and not closed[0].tls_error


def test_peer_info_is_read_like_openvpn(pki):
    """IV_PROTO=seven is 0 for OpenVPN (atoi); a duplicated key counts with its first value."""
    c, s, _ = make_pair(pki)
    info = "IV_VER=2.6.0\nIV_PROTO=seven\nIV_PROTO=6\nIV_CIPHERS=AES-256-GCM\n"
    if hasattr(c, "role"):
        c.role._peer_info = lambda: info
    else:                                   # the layout before the split, for the red run
        c._peer_info = lambda: info
    link = Link(c, s)
    link.run(lambda: up(c, s) or s.closed or c.closed, max_time=30)
    assert s.peer_info["IV_PROTO"] == "seven"
    # IV_PROTO 0: no DATA_V2 (no peer-id), no request-push: the client's PUSH_REQUEST drives it
    assert up(c, s) and s.peer_id is None


@pytest.mark.parametrize("value", ["-1", "4294967295", "9" * 40])
def test_a_negative_iv_proto_claims_no_feature(pki, value):
    """fuzz47: 2.6.14 takes IV_PROTO only when its number is above 0 (extract_iv_proto). Ours
    read -1 -- or a number that wraps to it -- as every flag, so the server gave DATA_V2 and a
    peer-id (and TLS-EKM, request-push) to a client 2.6 treats as having none."""
    c, s, _ = make_pair(pki)
    info = f"IV_VER=2.6.0\nIV_PROTO={value}\nIV_CIPHERS=AES-256-GCM\n"
    c.role._peer_info = lambda: info
    link = Link(c, s)
    link.run(lambda: up(c, s) or s.closed or c.closed, max_time=30)
    assert up(c, s) and s.peer_id is None and not s.ekm


# ---------------------------------------------------------------- packet ids
def test_data_packet_ids_renegotiate_before_they_run_out_and_never_wrap(pki):
    c, s, link = connected(pki)
    c.send_key.send_pid = DATA_PID_RENEG_AT
    assert link.send(c, s, payloads(3)) == payloads(3)
    c.note_sent(link.now)                      # the data path reports; the key renegotiates
    link.run(lambda: c.send_key.key_id == 1 and s.send_key.key_id == 1, max_time=30)
    assert c.send_key.key_id == 1 and c.send_key.send_pid < 1000
    # Without note_sent (a pump that never calls it), the next wake-up starts it: the deadline says now.
    c1, s1, link1 = connected(pki)
    c1.send_key.send_pid = DATA_PID_RENEG_AT
    c1.encrypt(payloads(1)[0])
    assert c1.next_deadline() <= link1.now
    link1.run(lambda: c1.send_key.key_id == 1 and s1.send_key.key_id == 1, max_time=30)
    assert c1.send_key.key_id == 1
    # A counter at its very end: nothing sent with it, no exception anywhere (ping timer too).
    c2, s2, link2 = connected(pki, ping=5)
    c2.send_key.send_pid = PID_MAX
    assert c2.encrypt(payloads(1)[0]) is None
    c2.handle_timer(link2.now + 6)             # the ping would need id 2**32
    assert not c2.closed or _closed(c2)
    assert c2.stats.get("packet-id space exhausted (send)") == 1


def test_control_replay_ids_roll_over_into_a_new_epoch(pki):
    c, s, link = connected(pki, protection="tls-crypt")
    c.wrapper.send_pid = PID_MAX - 1
    link.now += 2.0
    _renegotiate(link, c, s)                    # needs many control packets: crosses the end
    assert not c.closed and not s.closed
    assert c.send_key.key_id == 1 and s.send_key.key_id == 1
    assert c.wrapper.send_pid < 100


# ---------------------------------------------------------------- bounds
def test_junk_control_text_gives_a_bounded_number_of_warnings(pki):
    c, s, link = connected(pki)
    for i in range(400):                        # unknown messages, within the control budget (a
        c._send_text(f"X{i:06d}")               # flood past it ends the session: test_control_budget)
    c._flush(link.now)                          # _send_text only queues; engine entry points flush
    link.run(lambda: False, max_steps=400)
    warnings = [e for e in s.events if isinstance(e, ev.Warning)]
    assert 1 <= len(warnings) <= 12, len(warnings)
    assert not s.closed and up(c, s)


def test_renegotiated_keys_drop_their_tls_state(pki):
    c, s, link = connected(pki, tran_window=3600)
    for k in range(1, 7):
        c.renegotiate(link.now)
        link.run(lambda: c.send_key.key_id == k and s.send_key.key_id == k, max_time=link.now + 30)
        assert link.send(c, s, payloads(2)) == payloads(2)
    live = [ks.data for ks in s.keys.values() if ks.data is not None]
    # the key in use and one lame duck, as OpenVPN 2.6 (each soft reset frees the one before)
    assert len(live) == 2
    assert all(ks.tls is None for ks in s.keys.values() if ks.retired_at is not None)


def test_control_message_ids_at_their_end_close_the_session_cleanly(pki):
    c, s, link = connected(pki)
    ks = s.keys[s.newest_key_id]
    ks.reliable.next_send_id = 0xFFFFFFFF + 1
    c._send_text("PUSH_REQUEST")                 # the server answers nothing (already pushed) …
    s._send_text("INFO,hello")                  # … but this needs a message id it does not have
    link.run(lambda: s.closed, max_steps=20)     # must not raise
    assert s.closed and "message ids" in _closed(s)[0].reason
