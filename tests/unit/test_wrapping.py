"""Control-channel wrappers: round trips, tampering, truncation, replay, fuzzing, and the wire
format checked against real OpenVPN 2.6 servers and clients (see the end of this file)."""
import contextlib
import ctypes
import datetime
import hmac
import itertools
import os
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings, strategies as st

from appliance.openvpn import keyfiles
from appliance.openvpn.errors import BadPacket, ConfigError
from appliance.openvpn.wrapping import (PlainWrapper, TlsAuthWrapper, TlsCryptV2ClientWrapper, TlsCryptWrapper,
                                        make_wrapper, split_wkc_untrusted)
from lab.netns import Netns

KEY = bytes(range(256))
SID_C = bytes.fromhex("c1c2c3c4c5c6c7c8")
SID_S = bytes.fromhex("5151515151515151")
OP_RESET_C2 = 7 << 3
OP_RESET_C3 = 10 << 3
OP_RESET_S2 = 8 << 3
OP_CONTROL = 4 << 3
OP_ACK = 5 << 3
OP_WKC = 11 << 3
BODY_RESET = b"\x00" + bytes(4)                       # no acks, msg id 0
BODY_CTRL = b"\x01" + bytes(4) + SID_S + struct.pack("!I", 1) + b"\x16\x03\x01 tls bytes"
SERVER_KEY = bytes(range(100, 228))


def _v2_pair(early=True):
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(keyfiles.generate_tls_crypt_v2_client_key(SERVER_KEY, b"m"))
    return TlsCryptV2ClientWrapper(kc, wkc, early_negotiation=early), kc, wkc


def _pairs():
    """(name, client-side wrapper, server-side wrapper) for every configuration."""
    out = [("plain", PlainWrapper(), PlainWrapper())]
    for digest in ("SHA1", "SHA256", "SHA512"):
        out.append((f"auth-{digest}-nodir", TlsAuthWrapper(KEY, None, digest), TlsAuthWrapper(KEY, None, digest)))
        out.append((f"auth-{digest}-0/1", TlsAuthWrapper(KEY, 1, digest), TlsAuthWrapper(KEY, 0, digest)))
        out.append((f"auth-{digest}-1/0", TlsAuthWrapper(KEY, 0, digest), TlsAuthWrapper(KEY, 1, digest)))
    out.append(("crypt", TlsCryptWrapper(KEY, False), TlsCryptWrapper(KEY, True)))
    v2, kc, _ = _v2_pair()
    out.append(("crypt-v2", v2, TlsCryptWrapper(kc, True)))
    return out


PAIR_NAMES = [p[0] for p in _pairs()]


def _pair(name):
    return next(p for p in _pairs() if p[0] == name)[1:]


def _strip_wkc(name, wire):
    return split_wkc_untrusted(wire)[0] if name == "crypt-v2" and wire[0] >> 3 in (10, 11) else wire


@pytest.mark.parametrize("name", PAIR_NAMES)
def test_round_trip_both_directions(name):
    cli, srv = _pair(name)
    first = OP_RESET_C3 if name == "crypt-v2" else OP_RESET_C2
    wire = cli.wrap(first, SID_C, BODY_RESET, 10.0)
    assert srv.unwrap_untrusted(_strip_wkc(name, wire), 10.0) == (first, SID_C, BODY_RESET)
    back = srv.wrap(OP_RESET_S2, SID_S, BODY_CTRL, 10.0)
    assert len(back) == 9 + srv.overhead + len(BODY_CTRL)
    assert cli.unwrap_untrusted(back, 10.0) == (OP_RESET_S2, SID_S, BODY_CTRL)
    for i in range(5):   # more traffic, every opcode and key id
        ob = OP_CONTROL | (i % 8)
        w = cli.wrap(ob, SID_C, BODY_CTRL + bytes([i]), 11.0)
        assert len(w) == 9 + cli.overhead + len(BODY_CTRL) + 1
        assert srv.unwrap_untrusted(w, 11.0) == (ob, SID_C, BODY_CTRL + bytes([i]))
        assert cli.unwrap_untrusted(srv.wrap(OP_ACK | 7, SID_S, BODY_RESET, 11.0), 11.0)[0] == OP_ACK | 7


@pytest.mark.parametrize("name", [n for n in PAIR_NAMES if n != "plain"])
def test_tamper_any_byte_is_bad_packet(name):
    cli, srv = _pair(name)
    wire = _strip_wkc(name, cli.wrap(OP_CONTROL, SID_C, BODY_CTRL, 1.0))
    for i in range(len(wire)):
        bad = bytearray(wire)
        bad[i] ^= 0x40
        with pytest.raises(BadPacket):
            srv.unwrap_untrusted(bytes(bad), 1.0)
    assert srv.unwrap_untrusted(wire, 1.0)[2] == BODY_CTRL     # the window was not disturbed


@pytest.mark.parametrize("name", [n for n in PAIR_NAMES if n != "plain"])
def test_truncation_at_every_length_is_bad_packet(name):
    cli, srv = _pair(name)
    wire = _strip_wkc(name, cli.wrap(OP_CONTROL, SID_C, BODY_CTRL, 1.0))
    for n in range(len(wire)):
        with pytest.raises(BadPacket):
            srv.unwrap_untrusted(wire[:n], 1.0)
    with pytest.raises(BadPacket):
        srv.unwrap_untrusted(wire + b"\x00", 1.0)
    srv.unwrap_untrusted(wire, 1.0)


def test_plain_is_the_clear_form():
    w = PlainWrapper()
    assert w.wrap(OP_CONTROL | 2, SID_C, BODY_CTRL, 0.0) == bytes([OP_CONTROL | 2]) + SID_C + BODY_CTRL
    for n in range(10):
        with pytest.raises(BadPacket):
            w.unwrap_untrusted(bytes(n), 0.0)


@pytest.mark.parametrize("name", [n for n in PAIR_NAMES if n != "plain"])
def test_replay_is_bad_packet_and_check_replay_false_records_nothing(name):
    cli, srv = _pair(name)
    w1 = _strip_wkc(name, cli.wrap(OP_CONTROL, SID_C, BODY_CTRL, 1.0))
    w2 = cli.wrap(OP_CONTROL, SID_C, BODY_CTRL, 1.0)            # a retransmission: new replay id
    assert w1 != w2
    srv.unwrap_untrusted(w1, 1.0, check_replay=False)           # stateless look: records nothing
    srv.unwrap_untrusted(w1, 1.0, check_replay=False)
    srv.unwrap_untrusted(w2, 1.0)
    srv.unwrap_untrusted(w1, 1.0)                               # older but inside the window
    for w in (w1, w2):
        with pytest.raises(BadPacket):
            srv.unwrap_untrusted(w, 1.0)
    assert srv.unwrap_untrusted(w2, 1.0, check_replay=False)[2] == BODY_CTRL


def _replay_field(wire, hlen):
    return struct.unpack_from("!II", wire, 9 + hlen)


def test_tls_auth_wire_layout_matches_openvpn_description():
    w = TlsAuthWrapper(KEY, 0, "SHA256")
    wire = w.wrap(OP_RESET_C2, SID_C, BODY_RESET, 123.0)
    mac, rp = wire[9:41], wire[41:49]
    pid, t = struct.unpack("!II", rp)
    assert pid == 1 and t == 123       # the epoch is the caller's time at the first wrap, fixed after
    assert wire[:9] == bytes([OP_RESET_C2]) + SID_C and wire[49:] == BODY_RESET
    # direction 0 sends with the HMAC slot [64:128), truncated to the digest size
    assert mac == hmac.digest(KEY[64:96], rp + wire[:9] + BODY_RESET, "sha256")
    assert _replay_field(w.wrap(OP_ACK, SID_C, BODY_RESET, 124.0), 32) == (2, t)   # same time, next id
    w1 = TlsAuthWrapper(KEY, 1, "SHA1")
    wire1 = w1.wrap(OP_ACK, SID_C, BODY_RESET, 0.0)
    assert wire1[9:29] == hmac.digest(KEY[192:212], wire1[29:37] + wire1[:9] + BODY_RESET, "sha1")
    wn = TlsAuthWrapper(KEY, None, "SHA512").wrap(OP_ACK, SID_C, BODY_RESET, 0.0)
    assert wn[9:73] == hmac.digest(KEY[64:128], wn[73:81] + wn[:9] + BODY_RESET, "sha512")


def test_tls_crypt_wire_layout_matches_openvpn_description():
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    w = TlsCryptWrapper(KEY, is_server=False)                  # client sends with half 1
    wire = w.wrap(OP_CONTROL, SID_C, BODY_CTRL, 0.0)
    ad, tag, ct = wire[:17], wire[17:49], wire[49:]
    assert struct.unpack_from("!I", ad, 9)[0] == 1
    half = KEY[128:]
    assert tag == hmac.digest(half[64:96], ad + BODY_CTRL, "sha256")
    dec = Cipher(algorithms.AES(half[0:32]), modes.CTR(tag[:16])).decryptor()
    assert dec.update(ct) + dec.finalize() == BODY_CTRL
    assert TlsCryptWrapper(KEY, True).overhead == 40


def test_tls_crypt_reused_contexts_match_a_fresh_cipher_per_packet():
    """The wrapper keeps one AES-CTR context per direction and re-points it at each packet's IV:
    every packet of a session, whatever the lengths before it (partial blocks included), must
    be exactly what a fresh cipher makes, and decrypt as such, also after a forged packet."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    cli, srv = TlsCryptWrapper(KEY, is_server=False), TlsCryptWrapper(KEY, is_server=True)
    half = KEY[128:]
    for n in (1, 15, 16, 17, 33, 100, 1250, 7, 64):
        body = bytes((n + i) & 0xFF for i in range(n))
        wire = cli.wrap(OP_CONTROL, SID_C, body, 0.0)
        tag, ct = wire[17:49], wire[49:]
        ref = Cipher(algorithms.AES(half[0:32]), modes.CTR(tag[:16])).encryptor()
        assert ct == ref.update(body) + ref.finalize()
        forged = wire[:-1] + bytes((wire[-1] ^ 1,))
        with pytest.raises(BadPacket):
            srv.unwrap_untrusted(forged, 0.0)
        assert srv.unwrap_untrusted(wire, 0.0)[2] == body


def test_tls_crypt_wrong_direction_fails():
    a, b = TlsCryptWrapper(KEY, False), TlsCryptWrapper(KEY, False)
    with pytest.raises(BadPacket):
        b.unwrap_untrusted(a.wrap(OP_CONTROL, SID_C, BODY_CTRL, 0.0), 0.0)
    x, y = TlsAuthWrapper(KEY, 0), TlsAuthWrapper(KEY, 0)
    with pytest.raises(BadPacket):
        y.unwrap_untrusted(x.wrap(OP_CONTROL, SID_C, BODY_CTRL, 0.0), 0.0)
    with pytest.raises(BadPacket):   # different digest
        TlsAuthWrapper(KEY, None, "SHA256").unwrap_untrusted(
            TlsAuthWrapper(KEY, None, "SHA1").wrap(OP_CONTROL, SID_C, BODY_CTRL + bytes(12), 0.0), 0.0)


def test_v2_client_appends_wkc_only_to_opcodes_10_and_11_and_starts_early_neg_counter():
    cli, kc, wkc = _v2_pair(early=True)
    assert cli.wkc == wkc
    reset = cli.wrap(OP_RESET_C3, SID_C, BODY_RESET, 0.0)
    assert reset.endswith(wkc)
    assert struct.unpack_from("!I", reset, 9)[0] == 0x0F000001
    ctrl = cli.wrap(OP_CONTROL, SID_C, BODY_CTRL, 0.0)
    assert not ctrl.endswith(wkc) and len(ctrl) == 9 + 40 + len(BODY_CTRL)
    assert cli.wrap(OP_WKC, SID_C, BODY_CTRL, 0.0).endswith(wkc)
    # The server side: split, unwrap the key, then unwrap the packet.
    pkt, got = split_wkc_untrusted(reset)
    assert got == wkc
    kc2, mtype, meta = keyfiles.unwrap_client_key_untrusted(got, SERVER_KEY)
    assert (kc2, mtype, meta) == (kc, 0, b"m")
    assert TlsCryptWrapper(kc2, True).unwrap_untrusted(pkt, 0.0) == (OP_RESET_C3, SID_C, BODY_RESET)
    late, _, _ = _v2_pair(early=False)
    assert struct.unpack_from("!I", late.wrap(OP_RESET_C3, SID_C, BODY_RESET, 0.0), 9)[0] == 1


def test_skip_packet_ids():
    w = TlsCryptWrapper(KEY, True)
    w.skip_packet_ids(1)
    assert struct.unpack_from("!I", w.wrap(OP_CONTROL, SID_S, BODY_CTRL, 0.0), 9)[0] == 2


def test_split_wkc_rejects_nonsense_lengths():
    cli, _, wkc = _v2_pair()
    reset = cli.wrap(OP_RESET_C3, SID_C, BODY_RESET, 0.0)
    for n in range(len(wkc) + 50):          # WKc with too little packet in front of it
        with pytest.raises(BadPacket):
            split_wkc_untrusted(reset[-n:] if n else b"")
    for bogus in (0, 1, 290, 1025, 0xFFFF):
        with pytest.raises(BadPacket):
            split_wkc_untrusted(bytes(1100) + struct.pack("!H", bogus))


def test_config_errors():
    with pytest.raises(ConfigError):
        TlsAuthWrapper(KEY[:255], None)
    with pytest.raises(ConfigError):
        TlsAuthWrapper(KEY, 2)
    with pytest.raises(ConfigError):
        TlsAuthWrapper(KEY, None, "MD4")
    with pytest.raises(ConfigError):
        TlsCryptWrapper(KEY + b"x", True)
    with pytest.raises(ConfigError):
        TlsCryptV2ClientWrapper(KEY, b"short")
    with pytest.raises(ConfigError):
        make_wrapper("tls-weird", key=KEY)
    assert isinstance(make_wrapper("none"), PlainWrapper)
    assert isinstance(make_wrapper("tls-auth", key=KEY, key_direction=1, digest="sha256"), TlsAuthWrapper)
    assert type(make_wrapper("tls-crypt", key=KEY, is_server=True)) is TlsCryptWrapper


# ------------------------------------------------------------ fuzzing: only BadPacket escapes
FUZZ_WRAPPERS = [p[2] for p in _pairs()] + [p[1] for p in _pairs()]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(FUZZ_WRAPPERS) - 1), st.binary(max_size=400), st.booleans())
def test_fuzz_unwrap_untrusted(i, data, check):
    try:
        FUZZ_WRAPPERS[i].unwrap_untrusted(data, 0.0, check_replay=check)
    except BadPacket:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1200), st.integers(0, 0xFFFF))
def test_fuzz_split_wkc(data, tail):
    for pkt in (data, data + struct.pack("!H", tail)):
        try:
            a, b = split_wkc_untrusted(pkt)
        except BadPacket:
            continue
        assert a + b == pkt and len(b) == tail and 291 <= len(b) <= 1024


# ======================================================================================
# Real peer: Debian's OpenVPN 2.6 in a network namespace of our own (prefix "wrp"), on
# 198.18.77.1 bound to that namespace's loopback. Our wrappers talk to it over UDP.
# ======================================================================================

OPENVPN = shutil.which("openvpn") or "/usr/sbin/openvpn"
NS_ADDR = "198.18.77.1"
OVPN_PORT = 1194
CLONE_NEWNET = 0x40000000
_ns_counter = itertools.count()


def _cert(cn, key, issuer=None, issuer_key=None, ca=False, eku=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, key_agreement=not ca, key_cert_sign=ca, crl_sign=ca,
                                      content_commitment=False, key_encipherment=False, data_encipherment=False,
                                      encipher_only=False, decipher_only=False), critical=True))
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    return b.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("wrppki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("wrp-ca", ca_key, ca=True)
    files = {}
    for role, eku in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        k = ec.generate_private_key(ec.SECP256R1())
        c = _cert(f"wrp-{role}", k, ca.subject, ca_key, eku=eku)
        (d / f"{role}.crt").write_bytes(c.public_bytes(serialization.Encoding.PEM))
        (d / f"{role}.key").write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
        files[role] = (str(d / f"{role}.crt"), str(d / f"{role}.key"))
    (d / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["ca"] = str(d / "ca.crt")
    static = keyfiles.generate_static_key()
    (d / "static.key").write_text(static)
    files["static"], files["static_key"] = str(d / "static.key"), keyfiles.parse_static_key(static)
    # tls-crypt-v2: server key and one client key made by openvpn itself.
    r = subprocess.run([OPENVPN, "--genkey", "tls-crypt-v2-server", str(d / "v2s.key")], capture_output=True, timeout=20)
    assert r.returncode == 0, r
    r = subprocess.run([OPENVPN, "--tls-crypt-v2", str(d / "v2s.key"), "--genkey", "tls-crypt-v2-client",
                        str(d / "v2c.key")], capture_output=True, timeout=20)
    assert r.returncode == 0, r
    files["v2s"], files["v2c"] = str(d / "v2s.key"), str(d / "v2c.key")
    files["dir"] = d
    return files


@contextlib.contextmanager
def _netns():
    assert os.geteuid() == 0, "the real-peer tests need root (network namespaces)"
    assert shutil.which(OPENVPN), "the real-peer tests need the openvpn binary"
    ns = Netns(f"wrp{os.getpid()}n{next(_ns_counter)}")   # lo up; registered: a killed run's goes at the next run
    try:
        subprocess.run(["ip", "-n", ns.name, "addr", "add", f"{NS_ADDR}/32", "dev", "lo"], check=True, timeout=10)
        yield ns.name
    finally:
        ns.delete()


def _udp_socket_in(ns: str, bind_port: int = 0) -> socket.socket:
    """A UDP socket living in `ns`: made by a short-lived thread that joined the namespace
    (setns changes only the calling thread; the socket keeps its namespace afterwards)."""
    box: dict = {}

    def run():
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((NS_ADDR, bind_port))
            box["s"] = s
        except BaseException as e:  # handed to the caller below
            box["e"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    if "e" in box:
        raise box["e"]
    return box["s"]


@contextlib.contextmanager
def _openvpn_in(ns: str, args: list[str], logname: str, ready: str | None, tmp):
    log = tmp / logname
    proc = subprocess.Popen(["ip", "netns", "exec", ns, OPENVPN, "--verb", os.environ.get("WRP_VERB", "4"), "--log", str(log), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if ready is not None:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                text = log.read_text(errors="replace") if log.exists() else ""
                if ready in text:
                    break
                assert proc.poll() is None, f"openvpn exited early:\n{text}"
                time.sleep(0.05)
            else:
                raise AssertionError(f"openvpn not ready in 15 s:\n{text}")
        yield proc, log
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _exchange(sock: socket.socket, packet: bytes, dest, tries: int = 3, timeout: float = 2.0) -> bytes:
    sock.settimeout(timeout)
    for _ in range(tries):
        sock.sendto(packet, dest)
        try:
            return sock.recv(4096)
        except socket.timeout:
            continue
    raise AssertionError("no answer from openvpn")


def _parse_body(body: bytes):
    """(acks, peer_sid, msg_id, payload) of a reliable control body (test-local decoder)."""
    n = body[0]
    acks = [struct.unpack_from("!I", body, 1 + 4 * i)[0] for i in range(n)]
    off = 1 + 4 * n
    peer = None
    if n:
        peer, off = body[off:off + 8], off + 8
    msg_id = struct.unpack_from("!I", body, off)[0]
    return acks, peer, msg_id, body[off + 4:]


def _client_wrapper(kind, pki):
    key = pki["static_key"]
    if kind == "tls-crypt":
        return ["--tls-crypt", pki["static"]], TlsCryptWrapper(key, False), OP_RESET_C2, False
    if kind == "tls-auth-SHA1":
        return ["--tls-auth", pki["static"]], TlsAuthWrapper(key, None), OP_RESET_C2, False
    if kind == "tls-auth-SHA256-dir":
        return (["--tls-auth", pki["static"], "0", "--auth", "SHA256"], TlsAuthWrapper(key, 1, "SHA256"),
                OP_RESET_C2, False)
    if kind == "tls-auth-SHA512-dir":
        return (["--tls-auth", pki["static"], "1", "--auth", "SHA512"], TlsAuthWrapper(key, 0, "SHA512"),
                OP_RESET_C2, False)
    sk = keyfiles.parse_tls_crypt_v2_server_key(open(pki["v2s"]).read())
    if kind == "tls-crypt-v2-our-key":
        # A client key *we* generated: openvpn must unwrap it with its own server key.
        kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(keyfiles.generate_tls_crypt_v2_client_key(sk, b"wrp"))
        return ["--tls-crypt-v2", pki["v2s"]], TlsCryptV2ClientWrapper(kc, wkc, True), OP_RESET_C3, True
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(open(pki["v2c"]).read())   # openvpn's, no early neg
    return ["--tls-crypt-v2", pki["v2s"]], TlsCryptV2ClientWrapper(kc, wkc, False), OP_RESET_C3, False


@pytest.mark.root
@pytest.mark.netns
@pytest.mark.openvpn
@pytest.mark.parametrize("kind", ["tls-crypt", "tls-auth-SHA1", "tls-auth-SHA256-dir", "tls-auth-SHA512-dir",
                                  "tls-crypt-v2-our-key", "tls-crypt-v2-openvpn-key"])
def test_openvpn_server_answers_our_wrapped_reset(kind, pki, tmp_path):
    """We are the client: our HARD_RESET reaches a real OpenVPN 2.6 UDP server, which answers with
    HARD_RESET_SERVER_V2 acking our message 0 and our session id; our ack of that reset is accepted
    too (OpenVPN then creates the session and logs our session id)."""
    prot, w, first_op, early = _client_wrapper(kind, pki)
    sid = os.urandom(8)
    args = ["--server", "198.19.77.0", "255.255.255.0", "--topology", "subnet", "--dev", "wrptun0",
            "--dev-type", "tun", "--proto", "udp4", "--local", NS_ADDR, "--port", str(OVPN_PORT),
            "--ca", pki["ca"], "--cert", pki["server"][0], "--key", pki["server"][1], "--dh", "none", *prot]
    with _netns() as ns, _openvpn_in(ns, args, "server.log", "Initialization Sequence Completed", tmp_path) as (_p, log):
        sock = _udp_socket_in(ns)
        try:
            reply = _exchange(sock, w.wrap(first_op, sid, BODY_RESET, time.monotonic()), (NS_ADDR, OVPN_PORT))
            op_b, server_sid, body = w.unwrap_untrusted(reply, time.monotonic())
            assert op_b == OP_RESET_S2
            acks, peer, msg_id, payload = _parse_body(body)
            assert (acks, peer, msg_id) == ([0], sid, 0)
            # Early negotiation: the TLV asking for the WKc again (type 1, len 2, RESEND_WKC).
            assert payload == (bytes.fromhex("000100020001") if early else b"")
            # Third packet: ack the server's reset and send message 1, the start of a TLS record
            # (header announces more bytes than we send, so the peer's TLS just waits). OpenVPN acks
            # message 1 only if it accepted our wrapping and replay id 2 (and, for the early-
            # negotiation flow, the WKc resent in a P_CONTROL_WKC_V1).
            tls_start = bytes.fromhex("1603010080") + b"\x01" * 8
            third = w.wrap(OP_WKC if early else OP_CONTROL, sid,
                           b"\x01" + bytes(4) + server_sid + struct.pack("!I", 1) + tls_start, time.monotonic())
            sock.sendto(third, (NS_ADDR, OVPN_PORT))
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                nxt = sock.recv(4096)                  # socket timeout bounds each wait
                op_b, ssid, body = w.unwrap_untrusted(nxt, time.monotonic())
                assert ssid == server_sid
                if op_b >> 3 == 5 or op_b >> 3 == 4:
                    acks, peer, *_ = _parse_body(body) if op_b >> 3 == 4 else (
                        [struct.unpack_from("!I", body, 1 + 4 * i)[0] for i in range(body[0])],
                        body[1 + 4 * body[0]:9 + 4 * body[0]])
                    if 1 in acks:
                        assert peer == sid
                        break
            else:
                raise AssertionError("openvpn never acked our message 1")
        finally:
            sock.close()


@pytest.mark.root
@pytest.mark.netns
@pytest.mark.openvpn
@pytest.mark.parametrize("kind", ["tls-crypt", "tls-auth-SHA256-dir", "tls-crypt-v2"])
def test_our_server_wrapper_talks_to_openvpn_client(kind, pki, tmp_path):
    """We are the server: a real OpenVPN client's reset unwraps with our server-side wrapper (for
    tls-crypt-v2: split WKc, unwrap OpenVPN's client key, then the packet), our wrapped
    HARD_RESET_SERVER_V2 is accepted, and the client's next packet carries its TLS ClientHello."""
    key = pki["static_key"]
    if kind == "tls-crypt":
        prot, srv = ["--tls-crypt", pki["static"]], TlsCryptWrapper(key, True)
    elif kind == "tls-auth-SHA256-dir":
        prot, srv = ["--tls-auth", pki["static"], "1", "--auth", "SHA256"], TlsAuthWrapper(key, 0, "SHA256")
    else:
        prot, srv = ["--tls-crypt-v2", pki["v2c"]], None
    args = ["--tls-client", "--dev", "null", "--proto", "udp4", "--nobind", "--remote", NS_ADDR, str(OVPN_PORT),
            "--ca", pki["ca"], "--cert", pki["client"][0], "--key", pki["client"][1], "--connect-retry", "1",
            "--hand-window", "20", *prot]
    with _netns() as ns:
        sock = _udp_socket_in(ns, OVPN_PORT)
        sock.settimeout(10)
        try:
            with _openvpn_in(ns, args, "client.log", None, tmp_path) as (_p, log):
                first, addr = sock.recvfrom(4096)
                if srv is None:
                    assert first[0] == OP_RESET_C3
                    pkt, wkc = split_wkc_untrusted(first)
                    sk = keyfiles.parse_tls_crypt_v2_server_key(open(pki["v2s"]).read())
                    kc, mtype, _meta = keyfiles.unwrap_client_key_untrusted(wkc, sk)
                    assert mtype == keyfiles.METADATA_TYPE_TIMESTAMP
                    srv = TlsCryptWrapper(kc, True)
                    assert struct.unpack_from("!I", pkt, 9)[0] == 0x0F000001   # early negotiation
                    first = pkt
                op_b, client_sid, body = srv.unwrap_untrusted(first, time.monotonic())
                assert op_b in (OP_RESET_C2, OP_RESET_C3)
                assert _parse_body(body)[:3] == ([], None, 0)
                sid = os.urandom(8)
                reply = srv.wrap(OP_RESET_S2, sid, b"\x01" + bytes(4) + client_sid + bytes(4), time.monotonic())
                sock.sendto(reply, addr)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:     # skip retransmitted resets
                    nxt, _ = sock.recvfrom(4096)
                    if nxt[0] >> 3 == 4:
                        break
                else:
                    raise AssertionError("no P_CONTROL_V1 from openvpn")
                op_b, csid, body = srv.unwrap_untrusted(nxt, time.monotonic())
                acks, peer, msg_id, payload = _parse_body(body)
                assert (op_b, csid, peer, msg_id) == (OP_CONTROL, client_sid, sid, 1)
                assert 0 in acks
                assert payload[:1] == b"\x16"          # a TLS handshake record: the ClientHello
        finally:
            sock.close()


@pytest.mark.parametrize("name", ["tls-auth", "tls-crypt"])
def test_replay_time_field_is_an_epoch_like_openvpn(name):
    """OpenVPN's packet_id_test (long form): an earlier time than the newest seen is refused
    ("time backtrack") even with a fresh id; a later time is accepted and starts a new window;
    id 0 is never valid."""
    mk = {"tls-auth": lambda d: TlsAuthWrapper(KEY, d), "tls-crypt": lambda d: TlsCryptWrapper(KEY, d == 0)}[name]
    old, new, srv = mk(1), mk(1), mk(0)
    w_old = old.wrap(OP_CONTROL, SID_C, BODY_CTRL, 100.0)      # epoch 100, id 1
    w_new = new.wrap(OP_CONTROL, SID_C, BODY_CTRL, 200.0)      # epoch 200, id 1
    assert srv.unwrap_untrusted(w_new, 0.0)[2] == BODY_CTRL
    with pytest.raises(BadPacket):
        srv.unwrap_untrusted(w_old, 0.0)                         # time went back
    w_next = new.wrap(OP_CONTROL, SID_C, BODY_CTRL, 200.0)      # same epoch, id 2
    assert srv.unwrap_untrusted(w_next, 0.0)[2] == BODY_CTRL
    newer = mk(1)
    newer.send_pid = 0
    w_newer = newer.wrap(OP_CONTROL, SID_C, BODY_CTRL, 300.0)   # later epoch, id 1 again: accepted
    assert srv.unwrap_untrusted(w_newer, 0.0)[2] == BODY_CTRL
    with pytest.raises(BadPacket):
        srv.unwrap_untrusted(w_next, 0.0)                        # the old epoch is over
    zero = mk(1)
    zero.send_pid = -1                                           # forces id 0 on the wire
    with pytest.raises(BadPacket):
        srv.unwrap_untrusted(zero.wrap(OP_CONTROL, SID_C, BODY_CTRL, 400.0), 0.0)


def test_send_counter_rolls_into_a_new_epoch_or_refuses():
    from appliance.openvpn.errors import PacketIdExhausted
    w = TlsCryptWrapper(KEY, False)
    w.wrap(OP_CONTROL, SID_C, BODY_CTRL, 10.0)
    w.send_pid = 0xFFFFFFFF
    with pytest.raises(PacketIdExhausted):
        w.wrap(OP_CONTROL, SID_C, BODY_CTRL, 10.5)              # same second: no id left
    wire = w.wrap(OP_CONTROL, SID_C, BODY_CTRL, 11.0)          # a second later: new epoch, id 1
    assert _replay_field(wire, 0) == (1, 11)


@pytest.mark.parametrize("name", ["tls-auth", "tls-crypt"])
def test_window_zero_starts_an_epoch_only_at_id_1_as_openvpn(name):
    """replay-window 0 is 2.6's sequence mode (packet_id.c packet_id_test, no backtrack): a
    series begins at id 1 -- the first packet of a session and the first of every later epoch
    --, then only newest + 1. Ours took any id as an epoch's first. A server's session whose
    first packet the stateless cookie exchange checked starts mid-series (that first one only)."""
    mk = {"tls-auth": lambda d, w=64: TlsAuthWrapper(KEY, d, replay_window=w),
          "tls-crypt": lambda d, w=64: TlsCryptWrapper(KEY, d == 0, replay_window=w)}[name]
    peer = mk(1)
    peer.wrap(OP_CONTROL, SID_C, BODY_CTRL, 100.0)
    third = peer.wrap(OP_CONTROL, SID_C, BODY_CTRL, 100.0)     # epoch 100, id 2 (id 1 not seen)
    srv = mk(0, 0)
    with pytest.raises(BadPacket):
        srv.unwrap_untrusted(third, 0.0)
    assert mk(0).unwrap_untrusted(third, 0.0)[2] == BODY_CTRL   # a window of 64 takes it
    resumed = mk(0, 0)
    resumed.first_id_verified_elsewhere()
    assert resumed.unwrap_untrusted(third, 0.0)[2] == BODY_CTRL
    assert resumed.unwrap_untrusted(peer.wrap(OP_CONTROL, SID_C, BODY_CTRL, 100.0), 0.0)[2] == BODY_CTRL
    later = mk(1)
    later.send_pid = 4
    with pytest.raises(BadPacket):                              # a later epoch at id 5
        resumed.unwrap_untrusted(later.wrap(OP_CONTROL, SID_C, BODY_CTRL, 200.0), 0.0)
    later.send_pid = 0
    assert resumed.unwrap_untrusted(later.wrap(OP_CONTROL, SID_C, BODY_CTRL, 200.0), 0.0)[2] == BODY_CTRL
    fresh = mk(0, 0)
    first = mk(1)
    assert fresh.unwrap_untrusted(first.wrap(OP_CONTROL, SID_C, BODY_CTRL, 300.0), 0.0)[2] == BODY_CTRL
