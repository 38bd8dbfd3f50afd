"""crl-verify's own reading of a CRL's DER (openvpn/crl.py: _revoked_serials, _tbs_digest, the
PEM blocks): the worker reads the revoked serials and the signed bytes itself, so whatever DER
cryptography accepts must give the serial set and signature verdict cryptography gives -- a
serial read wrong or missed is a revoked certificate let in."""
from __future__ import annotations

import base64
import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import HealthCheck, given, settings, strategies as st

from appliance.certs import issue
from appliance.openvpn import crl as crl_mod
from appliance.openvpn.crl import CrlChecker, make_crl

CA = issue("DER CA", None, None)
A = issue("alice", CA, ExtendedKeyUsageOID.CLIENT_AUTH)[0]
B = issue("bob", CA, ExtendedKeyUsageOID.CLIENT_AUTH)[0]
PROP = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)   # as the builder keeps it


def _crl_der(serials: list[int], entry_ext: bool = False, next_update: bool = True, crl_ext: bool = False) -> bytes:
    rv = []
    for s in serials:
        b = x509.RevokedCertificateBuilder().serial_number(s).revocation_date(NOW)
        if entry_ext:
            b = b.add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), False)
        rv.append(b.build())
    b = x509.CertificateRevocationListBuilder(issuer_name=CA[0].subject, last_update=NOW - datetime.timedelta(minutes=5),
                                              next_update=NOW + datetime.timedelta(days=1), revoked_certificates=rv)
    if crl_ext:
        b = b.add_extension(x509.CRLNumber(7), False)
    der = b.sign(CA[1], hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    return der if next_update else _without_next_update(der)


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + body


def _tbs_parts(der: bytes) -> list[bytes]:
    """The elements of the CRL's tbsCertList: version, signature, issuer, thisUpdate, nextUpdate, ..."""
    el = crl_mod._der_element                                  # noqa: SLF001
    _, body, _ = el(der, 0)
    _, tbs_at, tbs_end = el(der, body)
    parts, at = [], tbs_at
    while at < tbs_end:
        _, _, end = el(der, at)
        parts.append(der[at:end])
        at = end
    assert parts[0][0] == 0x02 and parts[4][0] in (0x17, 0x18)
    return parts


def _signed(parts: list[bytes]) -> bytes:
    """A CRL of these tbsCertList elements, signed by CA."""
    tbs = _tlv(0x30, b"".join(parts))
    sig = CA[1].sign(tbs, ec.ECDSA(hashes.SHA256()))
    return _tlv(0x30, tbs + parts[1] + _tlv(0x03, b"\x00" + sig))


def _without_next_update(der: bytes) -> bytes:
    """The CRL without its (optional) nextUpdate, signed again: cryptography's builder always
    writes one."""
    parts = _tbs_parts(der)
    return _signed(parts[:4] + parts[5:])


def _theirs(der: bytes) -> tuple[frozenset[int], bool] | None:
    """cryptography's serial set and signature verdict, None when it does not read the CRL."""
    try:
        c = x509.load_der_x509_crl(der)
        return frozenset(r.serial_number for r in c), c.is_signature_valid(CA[0].public_key())
    except Exception:  # noqa: BLE001 - whatever cryptography refuses, any of its errors
        return None


def _ours(der: bytes) -> tuple[frozenset[int], bool] | str:
    state = crl_mod.read_crls(der, None, "t", [CA[0]])
    if state.error is not None:
        return state.error
    signed = state.signed.get((0, CA[0]))                      # None: a name the edit changed
    return state.crls[0].serials, signed if signed is not None else crl_mod._signature_ok(state.crls[0], CA[0])  # noqa: SLF001


@PROP
@given(serials=st.lists(st.integers(1, 2**159 - 1), max_size=6),
       entry_ext=st.booleans(), next_update=st.booleans(), crl_ext=st.booleans())
def test_the_serials_and_signature_read_from_the_der_are_cryptographys(serials, entry_ext, next_update, crl_ext):
    der = _crl_der(serials, entry_ext, next_update, crl_ext)
    assert _ours(der) == _theirs(der) == (frozenset(serials), True)


BASES = [_crl_der([1, 5, 128, 2**159 - 1], entry_ext=True, crl_ext=True), _crl_der([], crl_ext=True),
         _crl_der([77], next_update=False)]


@PROP
@given(base=st.sampled_from(BASES),
       edits=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from([0x00, 0x01, 0x02, 0x7F, 0x80, 0x81, 0x82,
                                                                           0x84, 0xFF, 0x30, 0x31, 0xA0, 0x17, 0x18,
                                                                           0x1F, 0x9F, 0xBF])),
                      min_size=1, max_size=3))
def test_der_that_cryptography_still_reads_gives_its_serials_and_verdict(base, edits):
    """Hand-mutated DER (tags, long-form and short-form lengths, high tag numbers, negative and
    non-minimal serials): where cryptography still reads the CRL and its entries, our reading
    gives the same serials and signature verdict, or refuses the file (every peer refused)."""
    der = bytearray(base)
    for at, value in edits:
        der[at % len(der)] = value
    theirs, ours = _theirs(bytes(der)), _ours(bytes(der))
    if theirs is not None and not isinstance(ours, str):
        assert ours == theirs


def test_negative_and_zero_serials_read_as_cryptography_and_openssl_read_them():
    der = _crl_der([5, 0x7F, 1])
    at = der.index(bytes([0x02, 0x01, 0x05]))
    der = der[:at + 2] + b"\x85" + der[at + 3:]           # serial -123 (two's complement)
    at = der.index(bytes([0x02, 0x01, 0x7F]))
    der = der[:at + 2] + b"\x00" + der[at + 3:]           # serial 0
    assert _theirs(der)[0] == frozenset({-123, 0, 1})
    assert _ours(der)[0] == frozenset({-123, 0, 1})


def test_pem_crls_with_other_blocks_text_crlf_and_spaces_between_are_all_read():
    crl1 = make_crl(*CA, [11, 12])
    crl2 = make_crl(*CA, [13])
    cert = CA[0].public_bytes(serialization.Encoding.PEM)
    lines2 = crl2.decode().splitlines()
    spaced = "\r\n".join(lines2[:1] + ["  " + " ".join(line[i:i + 8] for i in range(0, len(line), 8)) + "\t"
                                       for line in lines2[1:-1]] + lines2[-1:]).encode()
    data = b"some text\n" + crl1.replace(b"\n", b"\r\n") + cert + b"between\r\n" + spaced + b"\r\ntrailing\n"
    state = crl_mod.read_crls(data, None, "t", [CA[0]])
    assert state.error is None
    assert [c.serials for c in state.crls] == [frozenset({11, 12}), frozenset({13})]
    assert all(state.signed[(i, CA[0])] for i in range(2))


def _unknown_algorithm(der: bytes) -> bytes:
    """The CRL with its signature algorithm (outer and inner) an OID cryptography does not know:
    ecdsa-with-SHA256 (1.2.840.10045.4.3.2) made 1.2.840.10045.4.3.9, same length."""
    known = bytes.fromhex("06082a8648ce3d040302")
    assert der.count(known) == 2
    return der.replace(known, bytes.fromhex("06082a8648ce3d040309"))


def test_a_crl_signed_with_an_algorithm_we_do_not_know_refuses_its_issuers_peers_as_openvpn(tmp_path):
    """OpenSSL loads such a CRL and fails its signature check: OpenVPN 2.6 starts and refuses
    the CA's clients ("CRL signature failure"). Ours raised UnsupportedAlgorithm out of the
    reading: out of the server's settings at start, out of a handshake's check at a change."""
    bad = _unknown_algorithm(_crl_der([999]))
    f = tmp_path / "crl.der"
    f.write_bytes(bad)
    c = CrlChecker("file", str(f), cas=[CA[0]])                  # at start
    assert "CRL signature failure" in c.revoked(A, [CA[0]])
    f.write_bytes(_crl_der([999]))
    os.utime(f, ns=(0, os.stat(f).st_mtime_ns + 10**9))
    assert c.revoked(A, [CA[0]]) is None
    f.write_bytes(bad)                                            # changed while running, read inline
    os.utime(f, ns=(0, os.stat(f).st_mtime_ns + 2 * 10**9))
    assert "CRL signature failure" in c.revoked(A, [CA[0]])


def _v1(parts: list[bytes], version: bytes = bytes([0x02, 0x01, 0x00])) -> bytes:
    """A CRL of these tbsCertList elements with its version written out (INTEGER 0: v1), signed
    by CA."""
    return _signed([version] + parts[1:])


def test_a_crl_whose_version_is_written_out_as_v1_is_read_and_enforced_as_openssl_does(tmp_path):
    """A CRL with its version written out as v1 (INTEGER 0; RFC 5280 wants it absent or v2), as
    some CA tools write it: OpenSSL, and so OpenVPN 2.6, reads and enforces it; cryptography
    refuses it (InvalidVersion), and we then refused everyone as for an unreadable file. Read
    now, with the same checks: its serials revoked, its signature checked over the bytes the
    CA signed (version included), at start and when the file changes."""
    v1 = _v1(_tbs_parts(_crl_der([A.serial_number])))
    f = tmp_path / "crl.der"
    f.write_bytes(v1)
    c = CrlChecker("file", str(f), cas=[CA[0]])                  # at start
    assert c.error is None, c.error
    assert "is revoked by the CRL" in (c.revoked(A, [CA[0]]) or "")
    assert c.revoked(B, [CA[0]]) is None, "a v1 CRL refused a certificate it does not revoke"
    f.write_bytes(_crl_der([999]))
    os.utime(f, ns=(0, os.stat(f).st_mtime_ns + 10**9))
    assert c.revoked(A, [CA[0]]) is None
    f.write_bytes(v1)                                             # changed while running, read inline
    os.utime(f, ns=(0, os.stat(f).st_mtime_ns + 2 * 10**9))
    assert "is revoked by the CRL" in (c.revoked(A, [CA[0]]) or "")
    # The PEM form, and the worker's reading, the same.
    pem = b"-----BEGIN X509 CRL-----\n" + base64.encodebytes(v1) + b"-----END X509 CRL-----\n"
    state = crl_mod.read_crls(pem, None, "v1.pem", [CA[0]])
    assert state.error is None and A.serial_number in state.crls[0].serials and state.signed[(0, CA[0])]


def test_a_v1_crl_keeps_the_signature_and_validity_checks():
    parts = _tbs_parts(_crl_der([A.serial_number]))
    good = _v1(parts)
    # Its signature made over the CRL without the version: not the bytes as they stand.
    unsigned = _signed(parts)
    forged = _swap_signature(good, unsigned)
    state = crl_mod.read_crls(forged, None, "forged.der", [CA[0]])
    assert state.error is None and state.signed[(0, CA[0])] is False, "a v1 CRL's signature was not checked"
    c = CrlChecker("inline", "", cas=[CA[0]])
    c._install(state)                                            # noqa: SLF001
    assert "CRL signature failure" in c.revoked(B, [CA[0]])
    # Another CA's key: not its issuer's CRL.
    other = issue("DER CA", None, None)
    assert crl_mod.read_crls(good, None, "x.der", [other[0]]).signed[(0, other[0])] is False
    # Any other version is read as OpenSSL 3.0 reads it (test_crl_reading_vs_openssl_cli.py);
    # a version that is no DER INTEGER (padded) stays unreadable, as there (fail closed).
    bad = _v1(parts, bytes([0x02, 0x02, 0x00, 0x05]))
    assert "unreadable" in (crl_mod.read_crls(bad, None, "v6.der", [CA[0]]).error or "")


def test_an_ed25519_cas_v1_crl_is_checked_over_the_bytes_it_signed():
    """EdDSA signs the bytes themselves (no hash to check against): the check must cover the
    CRL as written, not cryptography's reading of it without the version."""
    from cryptography.hazmat.primitives.asymmetric import ed25519
    key = ed25519.Ed25519PrivateKey.generate()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(CA[0].subject).issuer_name(CA[0].subject)
            .public_key(key.public_key()).serial_number(5).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, None))
    crl = (x509.CertificateRevocationListBuilder().issuer_name(CA[0].subject)
           .last_update(now - datetime.timedelta(minutes=5)).next_update(now + datetime.timedelta(days=1))
           .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(77).revocation_date(now).build())
           .sign(key, None).public_bytes(serialization.Encoding.DER))
    parts = _tbs_parts(crl)
    tbs = _tlv(0x30, b"".join([bytes([0x02, 0x01, 0x00])] + parts[1:]))
    v1 = _tlv(0x30, tbs + parts[1] + _tlv(0x03, b"\x00" + key.sign(tbs)))
    state = crl_mod.read_crls(v1, None, "ed.der", [cert])
    assert state.error is None and state.signed[(0, cert)] is True and 77 in state.crls[0].serials
    forged = _tlv(0x30, tbs + parts[1] + _tlv(0x03, b"\x00" + key.sign(tbs[:-1] + b"\x01")))
    assert crl_mod.read_crls(forged, None, "ed.der", [cert]).signed[(0, cert)] is False


def _swap_signature(crl: bytes, donor: bytes) -> bytes:
    """`crl` with `donor`'s signature value."""
    el = crl_mod._der_element                                  # noqa: SLF001
    def sig(der):
        _, body, _ = el(der, 0)
        _, _, tbs_end = el(der, body)
        _, _, alg_end = el(der, tbs_end)
        return der[body:alg_end], der[alg_end:]
    head, _ = sig(crl)
    _, tail = sig(donor)
    return _tlv(0x30, head + tail)


def _integer(n: int) -> bytes:
    return _tlv(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True))


def test_serials_of_more_than_20_bytes_and_long_negative_ones_read_as_cryptography_reads_them():
    """RFC 5280 caps serials at 20 bytes; OpenSSL and cryptography read longer ones, and so must
    we: a CA that issued one revokes it with its full value. Long-form lengths included (an
    entry list over 127 bytes)."""
    serials = [2**200 + 7, -(2**100) - 3, 2**159, 1] + list(range(1000, 1010))
    when = _tlv(0x17, NOW.strftime("%y%m%d%H%M%SZ").encode())
    entries = _tlv(0x30, b"".join(_tlv(0x30, _integer(s) + when) for s in serials))
    parts = _tbs_parts(_crl_der([1]))
    der = _signed(parts[:5] + [entries] + parts[6:])
    assert _theirs(der) == (frozenset(serials), True)
    assert _ours(der) == (frozenset(serials), True)
