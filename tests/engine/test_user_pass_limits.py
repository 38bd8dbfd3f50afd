"""Username and password lengths as OpenVPN 2.6 reads them (keymethod.KEY_METHOD_READ): its server
reads a key-method message in one 2048-byte read, a username or password in a buffer of
USER_PASS_LEN (4096) bytes; one that does not fit refuses the client with
`AUTH_FAILED,Username or password is too long. Maximum length is 128 bytes` (2.6's words), checked
passwords or not. Ours read the whole TLS record: a peer not yet authenticated handed a 16 KB
username to the password check, the log and the scripts' environment."""
from __future__ import annotations

import struct

import pytest

from appliance.openvpn import control, events as ev
from appliance.openvpn.errors import BadPacket
from appliance.openvpn.keymethod import (KEY_METHOD_READ, USER_PASS_TOO_LONG, KeyMethod2,
                                         decode_key_method_2_untrusted, encode_key_method_2)
from tests.engine.test_server_dispatcher import _pump, _up
from tests.engine.test_server_dispatcher import pki  # noqa: F401 - the fixture
from tests.engine.test_server_security import _mk_client, _mk_server


def _msg(user: bytes, password: bytes, info: str = "IV_VER=2.6.14\nIV_PROTO=990\n", options: str = "V4") -> bytes:
    km = KeyMethod2(b"r" * 32, b"s" * 32, options, b"p" * 48, user.decode("latin-1"), password.decode("latin-1"), info)
    return encode_key_method_2(km, True).replace(user.decode("latin-1").encode(), user)


def test_a_username_and_password_within_the_first_2048_bytes_are_read():
    km = decode_key_method_2_untrusted(_msg(b"u" * 1800, b"p" * 50), True)
    assert not km.user_pass_too_long and len(km.username) == 1800 and km.password == "p" * 50


@pytest.mark.parametrize("user,password", [(b"u" * 1800, b"p" * 300),     # the password runs past 2048 bytes
                                           (b"u" * 5000, b"p"),             # the username does
                                           (b"u" * 20, b"p" * 3000)])
def test_one_past_the_first_2048_bytes_is_too_long(user, password):
    km = decode_key_method_2_untrusted(_msg(user, password), True)
    assert km.user_pass_too_long and km.username == "" and km.password == ""


def test_a_length_over_user_pass_len_is_too_long_even_with_few_bytes_behind_it():
    """A length field of 0xffff (over USER_PASS_LEN) was a malformed packet; 2.6 refuses the client."""
    msg = _msg(b"u", b"p")
    at = msg.index(b"\0\x02u\0")
    km = decode_key_method_2_untrusted(msg[:at] + struct.pack("!H", 0xFFFF) + b"u\0", True)
    assert km.user_pass_too_long


def test_peer_info_cut_off_by_the_read_is_none_and_long_options_are_refused():
    km = decode_key_method_2_untrusted(_msg(b"u", b"p", info="IV_PROTO=990\n" + "X" * 3000), True)
    assert km.peer_info == "" and not km.user_pass_too_long
    with pytest.raises(BadPacket):
        decode_key_method_2_untrusted(_msg(b"u", b"p", options="V4," + "x" * 600), True)
    assert len(_msg(b"u" * 1800, b"p" * 300)) > KEY_METHOD_READ


def test_a_client_with_a_long_username_gets_openvpns_auth_failed_and_no_check(pki, monkeypatch):  # noqa: F811
    """The server's answer to a client that sends one anyway (ours does not: see the next test)."""
    monkeypatch.setattr(control, "KEY_METHOD_READ", 1 << 20)      # our client's own limit, off
    checked = []
    d = _mk_server(pki, verify_user=lambda u, p, cn: checked.append(u) or True)
    c = _mk_client(pki, pki["clients"][1], username="u" * 3000, password="secret")
    _pump(d, [(c, ("198.18.0.140", 1))])
    assert not _up(c) and checked == []
    closed = [e for e in c.events if isinstance(e, ev.SessionClosed)]
    assert closed and closed[0].reason == f"AUTH_FAILED {USER_PASS_TOO_LONG}"
    assert not d.clients or not any(r.session.established for r in d.clients)


def test_a_certificate_only_server_refuses_it_too(pki, monkeypatch):  # noqa: F811
    monkeypatch.setattr(control, "KEY_METHOD_READ", 1 << 20)
    d = _mk_server(pki)
    c = _mk_client(pki, pki["clients"][1], username="u" * 3000, password="secret")
    _pump(d, [(c, ("198.18.0.141", 1))])
    assert not _up(c)
    assert [e.reason for e in c.events if isinstance(e, ev.SessionClosed)] == [f"AUTH_FAILED {USER_PASS_TOO_LONG}"]


def test_our_client_does_not_send_what_no_openvpn_server_reads(pki):  # noqa: F811
    d = _mk_server(pki, verify_user=lambda u, p, cn: True)
    c = _mk_client(pki, pki["clients"][1], username="u" * 1500, password="p" * 600)
    _pump(d, [(c, ("198.18.0.142", 1))])
    (closed,) = [e for e in c.events if isinstance(e, ev.SessionClosed)]
    assert not closed.restart and "too long" in closed.reason and "2048" in closed.reason
