"""auth-gen-token's tokens (appliance/openvpn/gentoken.py): the format OpenVPN 2.6 reads, and each
reason a token is refused. Interop with OpenVPN's own tokens: tests/interop/test_auth_gen_token_vs_openvpn.py."""
from __future__ import annotations

import base64
import hashlib
import hmac
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.openvpn import gentoken
from appliance.openvpn.gentoken import TokenPolicy, Verdict

KEY = bytes(range(32))
T0 = 1_800_000_000


def _pem(raw: bytes) -> str:
    b64 = base64.b64encode(raw).decode()
    body = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN {gentoken.PEM_NAME}-----\n{body}\n-----END {gentoken.PEM_NAME}-----\n"


def test_the_token_is_openvpns_layout_and_its_hmac_covers_the_username():
    tok = TokenPolicy(KEY).issue(b"alice", T0, random_bytes=lambda n: b"\x11" * n)
    assert gentoken.is_token(tok) and len(tok) == gentoken.TOKEN_LEN == 91
    raw = base64.b64decode(tok[len(gentoken.PREFIX):])
    assert raw[:12] == b"\x11" * 12
    assert struct.unpack(">QQ", raw[12:28]) == (T0, T0)
    assert raw[28:] == hmac.new(KEY, b"alice" + raw[:28], hashlib.sha256).digest()


def test_the_secret_is_the_hmac_half_of_openvpns_key_block():
    raw = bytes(range(128))
    assert gentoken.parse_secret(_pem(raw)) == raw[64:96]


@pytest.mark.parametrize("text,words", [
    ("", "not an auth-token secret"),
    (_pem(bytes(128)).replace("auth-token server key", "Static key V1"), "not an auth-token secret"),
    (_pem(bytes(64)), "64 bytes, 128 needed"),
    (f"-----BEGIN {gentoken.PEM_NAME}-----\n@@@@\n-----END {gentoken.PEM_NAME}-----\n", "not base64"),
    (f"-----END {gentoken.PEM_NAME}-----\n-----BEGIN {gentoken.PEM_NAME}-----\n", "not an auth-token secret"),
])
def test_a_bad_secret_says_what_is_wrong(text, words):
    with pytest.raises(ValueError, match=words):
        gentoken.parse_secret(text)


def test_valid_within_two_renewal_periods_then_expired():
    p = TokenPolicy(KEY, 0, 100)
    tok = p.issue(b"alice", T0)
    assert p.verify(tok, b"alice", T0) is Verdict.VALID
    assert p.verify(tok, b"alice", T0 + 199) is Verdict.VALID
    assert p.verify(tok, b"alice", T0 + 200) is Verdict.EXPIRED
    assert p.verify(tok, b"alice", T0 - 1) is Verdict.EXPIRED, "issued in the future (clock stepped back)"


def test_a_renewal_keeps_the_session_and_the_lifetime_counts_from_the_first():
    p = TokenPolicy(KEY, 250, 100)
    first = p.issue(b"alice", T0)
    renewed = p.issue(b"alice", T0 + 150, initial=first)
    assert renewed[:len(gentoken.PREFIX) + 16] == first[:len(gentoken.PREFIX) + 16]
    assert p.verify(renewed, b"alice", T0 + 240, first) is Verdict.VALID
    assert p.verify(renewed, b"alice", T0 + 251, first) is Verdict.EXPIRED


def test_refused_for_another_user_key_session_or_any_changed_byte():
    p = TokenPolicy(KEY, 0, 100)
    tok = p.issue(b"alice", T0)
    assert p.verify(tok, b"bob", T0) is Verdict.INVALID
    assert TokenPolicy(bytes(32)).verify(tok, b"alice", T0) is Verdict.INVALID
    other_session = p.issue(b"alice", T0)
    assert p.verify(other_session, b"alice", T0, initial=tok) is Verdict.INVALID
    for i in range(len(gentoken.PREFIX), len(tok)):
        c = "A" if tok[i] != "A" else "B"
        assert p.verify(tok[:i] + c + tok[i + 1:], b"alice", T0) is not Verdict.VALID, i


def test_an_initial_time_after_the_issue_time_is_expired():
    p = TokenPolicy(KEY, 0, 100)
    body = b"\x01" * 12 + struct.pack(">QQ", T0 + 50, T0)
    tok = gentoken.PREFIX + base64.b64encode(body + p._mac(b"alice", body)).decode()
    assert p.verify(tok, b"alice", T0) is Verdict.EXPIRED


@given(st.text(max_size=120))
def test_any_password_is_a_verdict_never_an_exception(text):
    p = TokenPolicy(KEY, 0, 100)
    for candidate in (text, gentoken.PREFIX + text, (gentoken.PREFIX + text * 80)[:gentoken.TOKEN_LEN]):
        assert p.verify(candidate, b"alice", T0) in (Verdict.INVALID, Verdict.EXPIRED, Verdict.VALID)
