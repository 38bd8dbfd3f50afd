"""Key files: our parsers and generators against keys made by Debian's openvpn 2.6."""
import base64
import shutil
import struct
import subprocess
import time

import pytest
from hypothesis import given, settings, strategies as st

from appliance.openvpn import keyfiles
from appliance.openvpn.errors import BadPacket, ConfigError

OPENVPN = shutil.which("openvpn") or "/usr/sbin/openvpn"


def _openvpn(*args: str, cwd) -> None:
    r = subprocess.run([OPENVPN, *args], cwd=cwd, capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, f"openvpn {' '.join(args)} failed: {r.stdout}{r.stderr}"


@pytest.fixture(scope="module")
def ovpn_keys(tmp_path_factory):
    """Keys written by the real openvpn binary (the test fails if it is missing)."""
    d = tmp_path_factory.mktemp("wrpkeys")
    assert shutil.which(OPENVPN), "openvpn binary is required for the real-peer key vectors"
    _openvpn("--genkey", "secret", "F", cwd=d)
    _openvpn("--genkey", "tls-crypt-v2-server", "S", cwd=d)
    _openvpn("--tls-crypt-v2", "S", "--genkey", "tls-crypt-v2-client", "C", cwd=d)
    meta = b"user=alice;group=ops"
    _openvpn("--tls-crypt-v2", "S", "--genkey", "tls-crypt-v2-client", "CM",
             base64.b64encode(meta).decode(), cwd=d)
    return {name: (d / name).read_text() for name in ("F", "S", "C", "CM")} | {"meta": meta, "dir": d}


# ------------------------------------------------------------ static key
@pytest.mark.openvpn
def test_parse_openvpn_static_key(ovpn_keys):
    text = ovpn_keys["F"]
    key = keyfiles.parse_static_key(text)
    assert len(key) == 256
    hexlines = text.split("-----BEGIN OpenVPN Static key V1-----")[1].split("-----END")[0].split()
    assert key.hex() == "".join(hexlines)
    assert keyfiles.parse_static_key(text.encode()) == key


@pytest.mark.openvpn
def test_generated_static_key_is_accepted_by_openvpn(tmp_path):
    text = keyfiles.generate_static_key()
    key = keyfiles.parse_static_key(text)
    assert len(key) == 256 and keyfiles.parse_static_key(keyfiles.generate_static_key()) != key
    (tmp_path / "mine.key").write_text(text)
    # --test-crypto loads the static key and runs openvpn's crypto self test; a malformed key
    # file is a fatal error there.
    r = subprocess.run([OPENVPN, "--test-crypto", "--secret", "mine.key", "--cipher", "AES-256-CBC", "--verb", "1"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "self-test mode SUCCEEDED" in r.stdout, r.stdout + r.stderr


def test_static_key_ignores_text_outside_markers():
    text = keyfiles.generate_static_key()
    key = keyfiles.parse_static_key(text)
    assert keyfiles.parse_static_key("junk ☺ line\n" + text + "\ntrailing words\n") == key
    assert keyfiles.parse_static_key(text.replace("\n", "\r\n")) == key


@pytest.mark.parametrize("mangle", [
    lambda t: t.replace("-----BEGIN OpenVPN Static key V1-----", ""),
    lambda t: t.replace("-----END OpenVPN Static key V1-----", ""),
    lambda t: t.replace("-----BEGIN OpenVPN Static key V1-----\n", "-----BEGIN OpenVPN Static key V1-----\n00"),
    lambda t: t.replace("-----END", "00\n-----END"),
    lambda t: "\n".join(ln for i, ln in enumerate(t.splitlines()) if i != 5),   # one hex line missing
    lambda t: t.replace("-----BEGIN OpenVPN Static key V1-----\n", "-----BEGIN OpenVPN Static key V1-----\nzz"),
    lambda t: "",
])
def test_bad_static_key_raises_config_error(mangle):
    with pytest.raises(ConfigError):
        keyfiles.parse_static_key(mangle(keyfiles.generate_static_key()))


def test_non_ascii_bytes_raise_config_error():
    with pytest.raises(ConfigError):
        keyfiles.parse_static_key(b"\xff\xfe")
    with pytest.raises(ConfigError):
        keyfiles.parse_tls_crypt_v2_server_key(b"\x80")


# ------------------------------------------------------------ tls-crypt-v2
@pytest.mark.openvpn
def test_parse_openvpn_v2_server_key(ovpn_keys):
    sk = keyfiles.parse_tls_crypt_v2_server_key(ovpn_keys["S"])
    assert len(sk) == 128


@pytest.mark.openvpn
def test_unwrap_openvpn_client_key_default_metadata_is_timestamp(ovpn_keys):
    sk = keyfiles.parse_tls_crypt_v2_server_key(ovpn_keys["S"])
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(ovpn_keys["C"])
    assert len(kc) == 256 and len(wkc) == 32 + 256 + 9 + 2
    kc2, mtype, meta = keyfiles.unwrap_client_key_untrusted(wkc, sk)
    assert kc2 == kc
    assert mtype == keyfiles.METADATA_TYPE_TIMESTAMP
    (ts,) = struct.unpack("!q", meta)
    assert abs(ts - time.time()) < 600


@pytest.mark.openvpn
def test_unwrap_openvpn_client_key_with_user_metadata(ovpn_keys):
    sk = keyfiles.parse_tls_crypt_v2_server_key(ovpn_keys["S"])
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(ovpn_keys["CM"])
    assert keyfiles.unwrap_client_key_untrusted(wkc, sk) == (kc, keyfiles.METADATA_TYPE_USER, ovpn_keys["meta"])


@pytest.mark.openvpn
def test_openvpn_client_key_does_not_unwrap_with_another_server_key(ovpn_keys):
    other = keyfiles.parse_tls_crypt_v2_server_key(keyfiles.generate_tls_crypt_v2_server_key())
    _kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(ovpn_keys["C"])
    with pytest.raises(BadPacket):
        keyfiles.unwrap_client_key_untrusted(wkc, other)


@pytest.mark.openvpn
def test_our_client_key_has_openvpns_layout_and_unwraps(ovpn_keys):
    sk = keyfiles.parse_tls_crypt_v2_server_key(ovpn_keys["S"])
    text = keyfiles.generate_tls_crypt_v2_client_key(sk, b"user=bob", keyfiles.METADATA_TYPE_USER)
    theirs = ovpn_keys["CM"]
    assert text.splitlines()[0] == theirs.splitlines()[0]
    assert text.splitlines()[-1] == theirs.splitlines()[-1]
    assert {len(ln) for ln in text.splitlines()[1:-2]} == {64}
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(text)
    assert keyfiles.unwrap_client_key_untrusted(wkc, sk) == (kc, 0, b"user=bob")


@pytest.mark.openvpn
def test_our_timestamp_client_key(ovpn_keys):
    sk = keyfiles.parse_tls_crypt_v2_server_key(ovpn_keys["S"])
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(keyfiles.generate_tls_crypt_v2_client_key(sk, timestamp=True))
    _, mtype, meta = keyfiles.unwrap_client_key_untrusted(wkc, sk)
    assert mtype == 1 and abs(struct.unpack("!q", meta)[0] - time.time()) < 600


@pytest.mark.openvpn
def test_our_server_key_works_with_openvpn_genkey(tmp_path):
    """openvpn generates a client key from *our* server key and checks it unwraps (its own self
    test), and we unwrap that key with our server key: both directions of the server-key format."""
    text = keyfiles.generate_tls_crypt_v2_server_key()
    (tmp_path / "S").write_text(text)
    _openvpn("--tls-crypt-v2", "S", "--genkey", "tls-crypt-v2-client", "C", cwd=tmp_path)
    sk = keyfiles.parse_tls_crypt_v2_server_key(text)
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key((tmp_path / "C").read_text())
    assert keyfiles.unwrap_client_key_untrusted(wkc, sk)[0] == kc


def test_metadata_limits():
    sk = bytes(range(128))
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(keyfiles.generate_tls_crypt_v2_client_key(sk, b"m" * 733))
    assert len(wkc) == 1024
    assert keyfiles.unwrap_client_key_untrusted(wkc, sk)[2] == b"m" * 733
    with pytest.raises(ConfigError):
        keyfiles.generate_tls_crypt_v2_client_key(sk, b"m" * 734)


def test_bad_v2_key_files_raise_config_error():
    sk = bytes(128)
    good = keyfiles.generate_tls_crypt_v2_client_key(sk)
    with pytest.raises(ConfigError):
        keyfiles.parse_tls_crypt_v2_client_key(good.replace("client key", "server key"))
    with pytest.raises(ConfigError):
        lines = good.splitlines()
        lines[1] = "*" + lines[1][1:]             # not base64
        keyfiles.parse_tls_crypt_v2_client_key("\n".join(lines))
    short = keyfiles._pem_encode(bytes(256 + 100), "OpenVPN tls-crypt-v2 client key")
    with pytest.raises(ConfigError):
        keyfiles.parse_tls_crypt_v2_client_key(short)
    raw = bytes(256) + bytes(300)          # length field says 0
    with pytest.raises(ConfigError):
        keyfiles.parse_tls_crypt_v2_client_key(keyfiles._pem_encode(raw, "OpenVPN tls-crypt-v2 client key"))
    with pytest.raises(ConfigError):
        keyfiles.parse_tls_crypt_v2_server_key(keyfiles._pem_encode(bytes(127), "OpenVPN tls-crypt-v2 server key"))
    with pytest.raises(ConfigError):
        keyfiles.parse_tls_crypt_v2_server_key(keyfiles.generate_static_key())


def test_wkc_tampering_and_truncation_are_bad_packets():
    sk = bytes(range(128))
    _kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(keyfiles.generate_tls_crypt_v2_client_key(sk, b"xy"))
    for i in range(len(wkc)):
        for bit in (0x01, 0x80):
            bad = bytearray(wkc)
            bad[i] ^= bit
            with pytest.raises(BadPacket):
                keyfiles.unwrap_client_key_untrusted(bytes(bad), sk)
    for n in range(len(wkc)):
        with pytest.raises(BadPacket):
            keyfiles.unwrap_client_key_untrusted(wkc[:n], sk)
    # A consistent length field with a truncated body still fails authentication.
    cut = wkc[:-3] + struct.pack("!H", len(wkc) - 1)
    with pytest.raises(BadPacket):
        keyfiles.unwrap_client_key_untrusted(cut, sk)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=1100), st.binary(min_size=128, max_size=128))
def test_fuzz_unwrap_client_key_only_bad_packet_escapes(data, sk):
    try:
        keyfiles.unwrap_client_key_untrusted(data, sk)
    except BadPacket:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(291, 1024), st.binary(min_size=0, max_size=1100))
def test_fuzz_unwrap_with_consistent_length_field(n, data):
    wkc = (data * (n // max(len(data), 1) + 1))[:n - 2] if data else bytes(n - 2)
    with pytest.raises(BadPacket):
        keyfiles.unwrap_client_key_untrusted(wkc + struct.pack("!H", n), bytes(128))
