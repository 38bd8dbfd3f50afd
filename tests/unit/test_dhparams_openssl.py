"""A `dh` file read as OpenSSL's loader reads it (fuzz40: the dh-file target compares
dhparams.modulus_bits with libcrypto's PEM_read_bio_Parameters, which OpenVPN 2.6 calls at
start). Each file below was refused by OpenSSL 3.0 -- 2.6 fails at start, "Cannot load DH
parameters" -- and taken here as a 2048-bit group before: a config 2.6 refuses must not start
here either. The DER is written by hand (the RFC 3526 2048-bit MODP prime, g = 2)."""
from __future__ import annotations

import base64

import pytest

from appliance.openvpn.dhparams import modulus_bits, read

P = int("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
        "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
        "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
        "15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(b),)) + b


def _int(n: int) -> bytes:
    body = n.to_bytes(n.bit_length() // 8 + 1, "big")
    return b"\x02" + _len(len(body)) + body


def _seq(*items: bytes) -> bytes:
    body = b"".join(items)
    return b"\x30" + _len(len(body)) + body


def _pem(der: bytes, label: bytes = b"DH PARAMETERS") -> bytes:
    b64 = base64.b64encode(der)
    lines = b"\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return b"-----BEGIN " + label + b"-----\n" + lines + b"\n-----END " + label + b"-----\n"


GOOD = _seq(_int(P), _int(2))
X942 = b"X9.42 DH PARAMETERS"


@pytest.mark.parametrize("data", [
    _pem(GOOD),
    _pem(_seq(_int(P), _int(2), _int(256))),                       # privateValueLength
    _pem(_seq(_int(P), _int(2), _int((P - 1) // 2)), X942),        # `openssl dhparam -dsaparam`'s shape
    _pem(_seq(_int(P), _int(2), _int((P - 1) // 2), _int(5), _seq(b"\x03\x02\x00\x01", _int(5))), X942),
    _pem(GOOD).replace(b"\n", b"\r\n"),                            # CRLF
    _pem(GOOD).replace(b"\n", b" \t\n"),                           # trailing blanks
    b"made with openssl dhparam\n" + _pem(GOOD),                   # text on lines before
    _pem(GOOD)[:-1],                                               # no final newline
    b"x -----BEGIN DH PARAMETERS-----\n" + _pem(GOOD),             # not a BEGIN line: the next block
], ids=["pkcs3", "pkcs3-length", "x942", "x942-j-seed", "crlf", "blanks", "text-before", "no-newline",
        "begin-not-at-line-start"])
def test_what_openssl_loads_is_read_with_its_bits(data):
    assert modulus_bits(data) == 2048


@pytest.mark.parametrize("data", [
    _pem(_seq(_int(P))),                                           # no generator
    _pem(_seq(_int(P), b"\x04\x01\x02")),                          # the generator not an INTEGER
    _pem(_seq(_int(P), _int(2), _int(1 << 31))),                   # privateValueLength past 32 bits
    _pem(_seq(_int(P), _int(2), _int(256), _int(1))),              # a fourth element
    _pem(GOOD, X942),                                              # X9.42 without q
    _pem(_seq(_int(P), _int(2), _int(3), _int(5), _seq(), _int(1)), X942),
    _pem(b"\x30\x82\x01\x09\x02\x83\x00\x01\x01" + GOOD[8:]),      # a length not in its shortest form
    _pem(GOOD).replace(b"\n-----END", b"-----END"),                # END glued to the last base64 line
    _pem(GOOD).replace(b"-----END DH PARAMETERS-----", b"-----END DH PARAMETERS----- x"),
    _pem(GOOD).replace(b"\n", b"\n\n", 2),                         # a blank line in the body
    _pem(GOOD).replace(b"-----\n", b"-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n", 1),
    b"x -----BEGIN DH PARAMETERS-----\n" + _pem(GOOD)[30:],        # the only BEGIN not a line of its own
    b"  " + _pem(GOOD),                                            # BEGIN indented
], ids=["no-g", "g-not-integer", "pvl-64-bit", "four-elements", "x942-no-q", "x942-six", "long-length",
        "end-glued", "end-trailing-text", "blank-line", "encrypted-header", "begin-mid-line", "begin-indented"])
def test_what_openssl_refuses_is_refused(data):
    with pytest.raises(ValueError):
        modulus_bits(data)


def test_many_begin_lines_without_an_end_stay_linear():
    data = b"-----BEGIN DH PARAMETERS-----\n" * 100_000
    with pytest.raises(ValueError, match="does not parse|no END"):
        modulus_bits(data)


def test_a_sequence_of_thousands_of_integers_is_refused_after_a_few():
    with pytest.raises(ValueError):
        modulus_bits(_pem(_seq(*[_int(1)] * 50_000)))


# review41: files compared with OpenSSL 3.0's loader and SSL_CTX_set0_tmp_dh_pkey (what 2.6 calls),
# and with Debian's openvpn itself: these start 2.6 and were refused here.
BOM = b"\xef\xbb\xbf"
CERT_BLOCK = _pem(_seq(_int(5)), b"CERTIFICATE")             # any other block, well framed


@pytest.mark.parametrize("data", [
    BOM + _pem(GOOD),                                              # saved as UTF-8 with a BOM (Notepad)
    BOM + _pem(GOOD).replace(b"\n", b"\r\n"),
    CERT_BLOCK + BOM + _pem(GOOD),                                 # two such files concatenated
    _pem(GOOD).replace(b"-----\n", b"-----\n\n", 1),               # a blank line after BEGIN (no headers)
    _pem(GOOD).replace(b"-----\n", b"-----\n  \r\n", 1),
], ids=["bom", "bom-crlf", "bom-after-a-block", "blank-after-begin", "blank-with-spaces-after-begin"])
def test_what_openssl_loads_and_2_6_starts_with_is_read(data):
    assert modulus_bits(data) == 2048


@pytest.mark.parametrize("data", [
    b"text\n" + BOM + _pem(GOOD),                                  # a BOM only where a read starts
    BOM + BOM + _pem(GOOD),
    _pem(GOOD).replace(b"-----\n", b"-----\n\n\n", 1),             # one blank line only
    _pem(GOOD).replace(b"-----\n", b"-----\n\n ", 1),               # and then no indented line
    _pem(_seq(_int(P), _int(2), b"\x02\x02\x00\x01")),             # privateValueLength padded (not DER)
    _pem(_seq(_int(P), _int(2), _int((P - 1) // 2), _seq()), X942),    # validationParms without its fields
    _pem(_seq(_int(P), _int(2), _int((P - 1) // 2), _seq(b"\x04\x01\x00", _int(5))), X942),
    _pem(_seq(_int(P), _int(2), _int((P - 1) // 2), _seq(b"\x03\x02\x00\x01", _int(5), _int(6))), X942),
], ids=["bom-on-a-later-line", "two-boms", "two-blank-lines", "blank-then-indented", "pvl-padded", "x942-empty-seed",
        "x942-seed-not-bits", "x942-seed-three"])
def test_what_openssl_cannot_load_is_refused(data):
    with pytest.raises(ValueError):
        modulus_bits(data)


@pytest.mark.parametrize("data, strength", [
    (_pem(GOOD), 112),
    (_pem(_seq(_int(P), _int(2), _int((1 << 159) + 1)), X942), 80),    # `genpkey -algorithm DHX ... subprime_len:160`
    (_pem(_seq(_int(P), _int(2), _int((1 << 222) + 1)), X942), 111),
    (_pem(_seq(_int(P), _int(2), _int((1 << 223) + 1)), X942), 112),
    (_pem(_seq(_int(P), _int(2), b"\x02\x01\x00"), X942), 0),          # q = 0
    (_pem(_seq(_int(P | 1 << 2048), _int(2), _int(160))), 80),        # 0.9.8's `dhparam -dsaparam`: length 160
    (_pem(_seq(_int(P | 1 << 2048), _int(2), _int(256))), 112),
    (_pem(_seq(_int(P), _int(2), _int(160))), 112),                    # a known group: OpenSSL takes its own q
    (_pem(_seq(_int(P | 1 << 3071), _int(2))), 128),
], ids=["pkcs3", "x942-q160", "x942-q223", "x942-q224", "x942-q0", "pvl-160", "pvl-256", "known-group-pvl-160",
         "3072"])
def test_the_strength_is_openssls_as_2_6_checks_it_at_start(data, strength):
    assert read(data).strength == strength


def test_a_server_with_a_2048_bit_group_of_a_160_bit_subgroup_fails_at_its_dh_line_as_2_6():
    from .test_startup_checks26 import SERVER, _err
    weak = _pem(_seq(_int(P), _int(2), _int((1 << 159) + 1)), X942).decode()
    e = _err(SERVER + "<dh>\n" + weak + "</dh>\n")
    assert e.startswith("/p/s.conf:13: dh: "), e
    assert "80 bits of security" in e and "dh key too small" in e and "\n" not in e


# compat41: the first parameters block decides, of any kind OpenSSL 3 loads there (DSA and EC too,
# which 2.6 starts with as its "DH" at 112 bits of security or more: Debian's 2.6.14 with
# `openssl ecparam -name prime256v1` and `openssl dsaparam 2048` starts, with prime192v1 and
# dsaparam 1024 fails, "dh key too small"), and BER's indefinite lengths, which OpenSSL's decoder
# takes. Each file is compared with libcrypto itself (tests/fuzz's oracle), nothing written in.
def _oid_der(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray()
    for n in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [n & 0x7F]
        while n > 0x7F:
            n >>= 7
            chunk.append(0x80 | (n & 0x7F))
        body += bytes(reversed(chunk))
    return b"\x06" + bytes((len(body),)) + bytes(body)


def _indefinite(der: bytes) -> bytes:
    """The SEQUENCE `der` re-framed with BER's indefinite length (30 80 ... 00 00)."""
    tag, n = der[0], der[1]
    skip = 2 + (n & 0x7F if n & 0x80 else 0)
    return bytes((tag, 0x80)) + der[skip:] + b"\0\0"


EC = b"EC PARAMETERS"
CURVES = {"P-192": "1.2.840.10045.3.1.1", "P-224": "1.3.132.0.33", "P-256": "1.2.840.10045.3.1.7",
          "P-384": "1.3.132.0.34", "P-521": "1.3.132.0.35", "secp256k1": "1.3.132.0.10",
          "brainpoolP512r1": "1.3.36.3.3.2.8.1.1.13"}
Q = (P - 1) // 2
SMALL_P = P >> 1024                                                # a 1024-bit odd number: DSA of 80 bits
COMPARED = {
    **{f"ec-{name}": _pem(_oid_der(oid), EC) for name, oid in CURVES.items()},
    "ec-before-dh": _pem(_oid_der(CURVES["P-256"]), EC) + _pem(GOOD),
    "weak-ec-before-dh": _pem(_oid_der(CURVES["P-192"]), EC) + _pem(GOOD),
    "dh-before-ec": _pem(GOOD) + _pem(_oid_der(CURVES["P-192"]), EC),
    "dsa-2048": _pem(_seq(_int(P), _int((1 << 223) + 1), _int(2)), b"DSA PARAMETERS"),
    "dsa-2048-q160": _pem(_seq(_int(P), _int((1 << 159) + 1), _int(2)), b"DSA PARAMETERS"),
    "dsa-1024": _pem(_seq(_int(SMALL_P), _int((1 << 159) + 1), _int(2)), b"DSA PARAMETERS"),
    "dsa-before-dh": _pem(_seq(_int(P), _int((1 << 255) + 1), _int(2)), b"DSA PARAMETERS") + _pem(GOOD),
    "dsa-two-numbers": _pem(_seq(_int(P), _int(2)), b"DSA PARAMETERS"),
    "ber-indefinite": _pem(_indefinite(GOOD)),
    "ber-indefinite-pvl": _pem(_indefinite(_seq(_int(P), _int(2), _int(256)))),
    "ber-indefinite-x942": _pem(_indefinite(_seq(_int(P), _int(2), _int(Q), _int(5),
                                                 _indefinite(_seq(b"\x03\x02\x00\x01", _int(5))))), X942),
    "ber-indefinite-no-end": _pem(_indefinite(GOOD)[:-2]),
    "ber-indefinite-integer": _pem(b"\x30\x80\x02\x80" + _int(P)[4:] + b"\0\0" + _int(2) + b"\0\0"),
    "ber-indefinite-dsa": _pem(_indefinite(_seq(_int(P), _int((1 << 223) + 1), _int(2))), b"DSA PARAMETERS"),
    # review43: P-256's OID with a subidentifier padded by 0x80 (X.690 8.19.2: not minimal): OpenSSL
    # refuses the encoding (2.6 does not start); read as P-256 it started here
    "ec-padded-oid": _pem(b"\x06\x09\x2a\x86\x48\xce\x3d\x03\x01\x80\x07", EC),
}


def _openssl():
    from tests.fuzz.dh_budget_targets import _Libcrypto
    try:
        return _Libcrypto()
    except OSError:
        pytest.skip("no system libcrypto.so.3")


@pytest.mark.parametrize("name", COMPARED)
def test_the_first_parameters_block_is_read_as_openssl_reads_it(name):
    data = COMPARED[name]
    got = _openssl().load(data)
    kinds = {28: "DH", 920: "DH", 116: "DSA", 408: "EC"}
    try:
        ours = read(data)
    except ValueError:
        ours = None
    if got is None:
        assert ours is None, (name, ours)
    else:
        assert ours is not None, (name, got)
        assert (ours.kind, ours.bits) == (kinds[got[0]], got[1]), (name, ours, got)
        assert (ours.strength >= 112) == (got[2] >= 112), (name, ours, got)   # what 2.6's start holds it to


def test_explicit_ec_parameters_and_unknown_curves_are_refused_stricter():
    """OpenSSL knows ~80 curves and reads explicit ones; here only those `cryptography` names."""
    with pytest.raises(ValueError, match="curve 1.3.132.0.38, not one known here"):
        read(_pem(_oid_der("1.3.132.0.38"), EC))                   # sect571k1: OpenSSL loads it
    with pytest.raises(ValueError, match="name no curve"):
        read(_pem(_seq(_int(1), _seq(_oid_der("1.2.840.10045.1.1"), _int(P))), EC))


def test_a_long_oid_is_refused_as_no_known_curve():
    """review43: an OID of 200,000 bytes (one huge arc) was decoded arc by arc into a big number,
    quadratic in its length (~11 s for this file, minutes for the 4 MiB a key file may hold) before
    being found no curve; no curve's OID is that long, so it is refused unread."""
    oid = b"\x2a" + b"\xff" * 200_000 + b"\x01"
    with pytest.raises(ValueError, match="not one known here"):
        read(_pem(b"\x06\x83" + len(oid).to_bytes(3, "big") + oid, EC))
