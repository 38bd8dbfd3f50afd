"""crl-verify's reading of a CRL against OpenSSL's (`openssl crl -verify -text`, what OpenVPN 2.6
reads through) on the same bytes, over edits of a CRL's DER: whenever we find a CRL signed by the
CA, OpenSSL must verify that signature too and read the same revoked serials. Why: the v1 reading
(crl.py _parse_der) hands cryptography a copy without the version element while the signature
and the serials come from the DER as written; a difference between the two is a signature over
one list with another list enforced. Edits are made inside the tbsCertList and signed again (a
CA tool writing odd DER), and outside it without a new signature (bytes changed on the way)."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings, strategies as st

from appliance.certs import issue
from appliance.openvpn import crl as crl_mod
from appliance.openvpn.crl import make_crl, read_crls

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

CA = issue("OpenSSL CLI CA", None, None)
PROP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.function_scoped_fixture])
_SERIAL = re.compile(r"Serial Number: *(-)?([0-9A-Fa-f:]+)")


def _der(v1: bool) -> bytes:
    pem = make_crl(*CA, [5, 127, 128, 300, 2**70], v1=v1)
    return crl_mod._pem_body(pem.split(b"-----BEGIN X509 CRL-----")[1].split(b"-----END X509 CRL-----")[0])  # noqa: SLF001


BASES = {v1: _der(v1) for v1 in (False, True)}


def _parts(der: bytes) -> tuple[bytes, bytes]:
    """(the tbsCertList's contents, the signatureAlgorithm element)."""
    el = crl_mod._der_element                                        # noqa: SLF001
    _, body, _ = el(der, 0)
    _, tbs_at, tbs_end = el(der, body)
    return der[tbs_at:tbs_end], der[tbs_end:el(der, tbs_end)[2]]


def _signed(tbs_contents: bytes, alg: bytes) -> bytes:
    tlv = crl_mod._der_tlv                                           # noqa: SLF001
    tbs = tlv(0x30, tbs_contents)
    return tlv(0x30, tbs + alg + tlv(0x03, b"\0" + CA[1].sign(tbs, ec.ECDSA(hashes.SHA256()))))


def _ours(der: bytes) -> tuple[bool, list[int]] | None:
    """(whether CA signed it, its revoked serials), or None when unreadable."""
    s = read_crls(der, None, "edit.der", [CA[0]])
    if s.error is not None:
        return None
    assert len(s.crls) == 1
    return bool(s.signed.get((0, CA[0]))), sorted(s.crls[0].serials)    # no entry: not CA's CRL


def _openssl(der: bytes, tmp) -> tuple[bool, list[int]] | None:
    """(whether `openssl crl -verify` says "verify OK", the serials it lists), or None when it
    cannot read the CRL."""
    crl, ca = tmp / "edit.der", tmp / "ca.pem"
    crl.write_bytes(der)
    ca.write_bytes(CA[0].public_bytes(serialization.Encoding.PEM))
    r = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(crl), "-CAfile", str(ca), "-noout", "-text",
                        "-verify"], capture_output=True, text=True, timeout=30)
    if "Certificate Revocation List" not in r.stdout:
        return None
    serials = sorted((-1 if neg else 1) * int(h.replace(":", ""), 16) for neg, h in _SERIAL.findall(r.stdout))
    return "verify OK" in r.stderr, serials


def _same_when_we_enforce(der: bytes, tmp) -> None:
    """Where we enforce a CRL (read, and signed by CA) that OpenSSL reads, it reads the same list;
    where OpenSSL verifies one we read, we verify it too and enforce that list. Not asserted: that
    OpenSSL reads or verifies all we enforce. It refuses some CRLs the CA did sign, whose list is
    the CA's all the same (an issuer name in VisibleString: unreadable; a signature BIT STRING
    declaring unused bits: not verified), where OpenVPN 2.6 then refuses everyone."""
    ours = _ours(der)
    theirs = _openssl(der, tmp)
    if ours is not None and ours[0] and theirs is not None:
        assert ours[1] == theirs[1], f"signed, but another list enforced: ours {ours[1]}, OpenSSL {theirs[1]}: {der.hex()}"
    if theirs is not None and theirs[0] and ours is not None:
        assert ours[0], f"OpenSSL verifies the CA's signature, we do not: {der.hex()}"
        assert ours[1] == theirs[1]


def test_the_unedited_crls_read_the_same():
    for der in BASES.values():
        assert _ours(der) == (True, [5, 127, 128, 300, 2**70])


_EDITS = st.lists(st.tuples(st.sampled_from(["set", "insert", "delete", "repeat"]), st.integers(0, 10**6),
                            st.integers(0, 255)), min_size=1, max_size=3)


def _edit(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for op, at, value in edits:
        i = at % (len(b) + 1)
        if op == "set" and i < len(b):
            b[i] = value
        elif op == "insert":
            b.insert(i, value)
        elif op == "delete" and i < len(b):
            del b[i]
        elif op == "repeat":
            b[i:i] = bytes(b[i:i + 1 + value % 6])
    return bytes(b)


@PROP
@given(v1=st.booleans(), edits=_EDITS)
def test_a_crl_edited_and_signed_again_reads_as_openssl_reads_it(tmp_path, v1, edits):
    tbs, alg = _parts(BASES[v1])
    _same_when_we_enforce(_signed(_edit(tbs, edits), alg), tmp_path)


@PROP
@given(v1=st.booleans(), edits=_EDITS)
def test_a_crl_edited_outside_what_it_signed_reads_as_openssl_reads_it(tmp_path, v1, edits):
    der = BASES[v1]
    _, start, _ = crl_mod._der_element(der, 0)                      # noqa: SLF001 - the tbsCertList, whole
    end = crl_mod._der_element(der, start)[2]                       # noqa: SLF001
    edited = _edit(der[:start] + der[end:], edits)
    cut = min(start, len(edited))
    _same_when_we_enforce(edited[:cut] + der[start:end] + edited[cut:], tmp_path)


_VERSIONS = [None, 0, 1, 2, -1, 5, 127, 128, -128, -129, 256, 2**70, -(2**70)]


@pytest.mark.parametrize("version", _VERSIONS, ids=[str(v) for v in _VERSIONS])
def test_any_version_openssl_reads_we_read_and_enforce_the_same(tmp_path, version):
    """OpenSSL 3.0 reads a CRL whatever INTEGER its version holds ("Version unknown (2)") and
    OpenVPN 2.6 enforces it; cryptography reads only 1 (v2): 2 or -1 refused everyone here."""
    pem = make_crl(*CA, [5, 300], version=version)
    der = crl_mod._pem_body(pem.split(b"-----BEGIN X509 CRL-----")[1].split(b"-----END X509 CRL-----")[0])  # noqa: SLF001
    assert _openssl(der, tmp_path) == (True, [5, 300])
    assert _ours(der) == (True, [5, 300])


@pytest.mark.parametrize("version", ["", "0001", "ffff", "007f"])
def test_a_version_openssl_cannot_read_is_unreadable_here_too(tmp_path, version):
    """Not a DER INTEGER (empty, padded): OpenSSL reads no CRL, so neither do we."""
    tbs, alg = _parts(BASES[False])
    vend = crl_mod._der_element(tbs, 0)[2]                            # noqa: SLF001 - INTEGER 1
    der = _signed(crl_mod._der_tlv(0x02, bytes.fromhex(version)) + tbs[vend:], alg)   # noqa: SLF001
    assert _openssl(der, tmp_path) is None
    assert _ours(der) is None
