"""crl-verify's checker: PEM, DER and inline CRLs, the directory mode, re-reading on change, and
refusing everything when the CRL cannot be read (never accept a revoked certificate by accident)."""
from __future__ import annotations

import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from appliance.openvpn.config import parse_config
from appliance.openvpn.crl import CrlChecker, make_crl
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.settings import tls_settings
from tests.gateway.conftest import server_conf

CA = issue("CRL CA", None, None)
A = issue("alice", CA, ExtendedKeyUsageOID.CLIENT_AUTH)[0]
B = issue("bob", CA, ExtendedKeyUsageOID.CLIENT_AUTH)[0]
OTHER_CA = issue("Other CA", None, None)


def test_file_is_reread_when_it_changes(tmp_path):
    f = tmp_path / "crl.pem"
    f.write_bytes(make_crl(*CA, []))
    c = CrlChecker("file", str(f))
    assert c.revoked(A) is None and c.loads == 1
    assert c.revoked(B) is None and c.loads == 1              # unchanged: not read again
    f.write_bytes(make_crl(*CA, [A.serial_number]))
    os.utime(f, ns=(0, os.stat(f).st_mtime_ns + 10**9))
    assert "CN=alice" in c.revoked(A) and c.revoked(B) is None and c.loads == 2


def test_der_and_several_pem_crls(tmp_path):
    der = x509.load_pem_x509_crl(make_crl(*CA, [B.serial_number])).public_bytes(serialization.Encoding.DER)
    f = tmp_path / "crl.der"
    f.write_bytes(der)
    assert CrlChecker("file", str(f)).revoked(B) is not None
    both = make_crl(*OTHER_CA, [A.serial_number]) + make_crl(*CA, [A.serial_number])
    f.write_bytes(both)
    assert CrlChecker("file", str(f)).revoked(A) is not None


def test_a_crl_of_another_issuer_revokes_nothing(tmp_path):
    f = tmp_path / "crl.pem"
    f.write_bytes(make_crl(*OTHER_CA, [A.serial_number]))
    assert CrlChecker("file", str(f)).revoked(A) is None


def test_unreadable_crl_refuses_everyone(tmp_path):
    f = tmp_path / "crl.pem"
    f.write_text("-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n")
    assert "unreadable" in CrlChecker("file", str(f)).revoked(A)
    g = tmp_path / "gone.pem"
    g.write_bytes(make_crl(*CA, []))
    c = CrlChecker("file", str(g))
    g.unlink()
    assert "unreadable" in c.revoked(A)


def test_directory_mode(tmp_path):
    (tmp_path / str(B.serial_number)).write_text("")
    c = CrlChecker("dir", str(tmp_path))
    assert c.revoked(A) is None and "crl-verify dir" in c.revoked(B)


def test_a_crl_directory_that_is_not_there_is_refused_at_its_line(tmp_path):
    """`crl-verify DIR dir` revokes by the files in DIR: a mistyped or missing DIR revoked nothing
    and every certificate got in. OpenVPN 2.6 refuses it at start; so do we, at its line."""
    (tmp_path / "crl.pem").write_bytes(make_crl(*CA, []))
    for arg, why in ((tmp_path / "revoked", "no such directory"), (tmp_path / "crl.pem", "not a directory")):
        conf = "port 1194\ndev tun\nserver 198.19.0.0 255.255.255.0\n" + f"crl-verify {arg} dir\n"
        with pytest.raises(ConfigError) as e:
            parse_config(conf, "/p/s.conf")
        errs = [str(x) for x in getattr(e.value, "errors", [e.value])]
        assert any(x.startswith("/p/s.conf:4: crl-verify: ") and why in x for x in errs), errs


def test_a_crl_directory_gone_while_running_refuses_everyone(tmp_path):
    d = tmp_path / "revoked"
    d.mkdir()
    c = CrlChecker("dir", str(d))
    assert c.revoked(A) is None
    d.rmdir()
    assert "unreadable" in c.revoked(A)


def test_inline_crl_block_reaches_the_tls_settings():
    pem = make_crl(*CA, [A.serial_number]).decode()
    srv = issue("server", CA, ExtendedKeyUsageOID.SERVER_AUTH)
    pki = {"ca": CA[0].public_bytes(serialization.Encoding.PEM).decode(),
           "server": (srv[0].public_bytes(serialization.Encoding.PEM).decode(),
                      srv[1].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()).decode())}
    opts = parse_config(server_conf(pki, extra=f"<crl-verify>\n{pem}</crl-verify>\n"), "/mem/s.conf")
    crl = tls_settings(opts, True).crl
    assert crl is not None and crl.revoked(A) is not None and crl.revoked(B) is None
    assert tls_settings(opts, False).crl is not None                # a client checks its server with it


def _expired_crl(ca) -> bytes:
    import datetime

    from cryptography.hazmat.primitives import hashes
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateRevocationListBuilder().issuer_name(ca[0].subject)
            .last_update(now - datetime.timedelta(days=10)).next_update(now - datetime.timedelta(days=1))
            .sign(ca[1], hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def test_an_expired_or_forged_crl_of_the_issuer_refuses_as_openvpn(tmp_path):
    """OpenSSL's CRL checks behind OpenVPN's crl-verify: the CRL of a certificate's issuer must be
    current and signed by that issuer, or the handshake fails. They passed before (a stale CRL,
    or one under the CA's name with another key, revoked nothing and refused nobody)."""
    f = tmp_path / "crl.pem"
    f.write_bytes(make_crl(*CA, [], days=30))
    assert CrlChecker("file", str(f)).revoked(A, [CA[0]]) is None
    f.write_bytes(_expired_crl(CA))
    assert "CRL has expired" in CrlChecker("file", str(f)).revoked(A, [CA[0]])
    assert "CRL has expired" in CrlChecker("file", str(f)).revoked(A)         # no chain: still dated
    impostor = issue("CRL CA", None, None)              # the CA's name, another key
    f.write_bytes(make_crl(impostor[0], impostor[1], []))
    assert "CRL signature failure" in CrlChecker("file", str(f)).revoked(A, [CA[0]])
    # A certificate whose issuer has no CRL in the file passes (OpenVPN ignores that error).
    f.write_bytes(_expired_crl(OTHER_CA))
    assert CrlChecker("file", str(f)).revoked(A, [CA[0]]) is None


def test_an_expired_crl_left_beside_the_current_one_refuses_nobody(tmp_path):
    """A CRL file holding the issuer's old, expired CRL and its current one (appended to the same
    file): OpenSSL takes the issuer's current CRL, so OpenVPN admits the unrevoked and refuses the
    revoked. Every client under that CA was refused ("CRL has expired"), whichever came first."""
    f = tmp_path / "crl.pem"
    for data in (_expired_crl(CA) + make_crl(*CA, [B.serial_number]),
                 make_crl(*CA, [B.serial_number]) + _expired_crl(CA)):
        f.write_bytes(data)
        c = CrlChecker("file", str(f))
        assert c.revoked(A, [CA[0]]) is None
        assert "CN=bob" in c.revoked(B, [CA[0]])
    f.write_bytes(_expired_crl(CA) + _expired_crl(CA))
    assert "CRL has expired" in CrlChecker("file", str(f)).revoked(A, [CA[0]])


def test_the_issuers_signature_on_a_crl_is_verified_once_per_read_of_the_file(tmp_path, monkeypatch):
    """Verifying a CRL's signature hashes all of it (34 ms for 100,000 entries): done at every
    handshake for each certificate of the chain, a client reconnecting in a loop (even a revoked
    one: the signature comes first) kept the server busy ~70 ms a handshake. Once per file read,
    the verdict holds, a forged CRL's included."""
    from appliance.openvpn import crl as crl_mod
    calls = []
    real = crl_mod._signature_ok
    monkeypatch.setattr(crl_mod, "_signature_ok", lambda crl, issuer: calls.append(1) or real(crl, issuer))
    f = tmp_path / "crl.pem"
    f.write_bytes(make_crl(*CA, [B.serial_number]))
    c = CrlChecker("file", str(f))
    for _ in range(5):
        assert c.revoked(A, [CA[0]]) is None and "CN=bob" in c.revoked(B, [CA[0]])
    assert len(calls) == 1
    impostor = issue("CRL CA", None, None)
    f.write_bytes(make_crl(impostor[0], impostor[1], []))
    os.utime(f, ns=(0, os.stat(f).st_mtime_ns + 10**9))
    for _ in range(3):
        assert "CRL signature failure" in c.revoked(A, [CA[0]])
    assert len(calls) == 2


def test_a_large_crl_finds_the_revoked_and_admits_the_rest(tmp_path):
    """100,000 entries (the checker keeps a set of each CRL's serials, read with the file): the
    revoked certificate is found among them, an unrevoked one of the same CA passes, and the
    rules hold as at ten entries: a re-written file that un-revokes it lets it in, and the same
    list under a forged signature refuses everyone."""
    serials = list(range(10**6, 10**6 + 50_000)) + [A.serial_number] + list(range(2 * 10**6, 2 * 10**6 + 49_999))
    f = tmp_path / "crl.pem"
    f.write_bytes(make_crl(*CA, serials))
    c = CrlChecker("file", str(f))
    assert "CN=alice" in c.revoked(A, [CA[0]])
    assert c.revoked(B, [CA[0]]) is None
    assert c.revoked(A, [CA[0]]) is not None and c.loads == 1
    f.write_bytes(make_crl(*CA, serials[:50_000] + serials[50_001:]))
    os.utime(f, ns=(0, os.stat(f).st_mtime_ns + 10**9))
    assert c.revoked(A, [CA[0]]) is None and c.loads == 2
    # Another key signing a CRL in CA's name (what `make_crl` with the other key makes).
    forged = make_crl(CA[0], OTHER_CA[1], serials)
    f.write_bytes(forged)
    os.utime(f, ns=(0, os.stat(f).st_mtime_ns + 2 * 10**9))
    assert "signature failure" in c.revoked(B, [CA[0]])
