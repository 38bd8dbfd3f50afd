"""Usernames are bytes, as OpenVPN 2.6 keeps them: two users whose names differ only in bytes
that are not UTF-8 (`caf\\xe9` and `caf\\xe8`, Latin-1) are two identities under
username-as-common-name -- two ccd files, two duplicate-cn slots, two names for a verify check.
Decoded with replacement they were one (`caf\\ufffd`): the second login dropped the first, both
read the same ccd file (neither the one the operator wrote for its bytes), and a check saw one
name for both. A client's name is given here as the str peernames.from_peer makes of its bytes;
the client sends those bytes."""
from __future__ import annotations

from appliance.openvpn import peernames
from appliance.openvpn.config import CcdOptions
from appliance.openvpn.keymethod import KeyMethod2, decode_key_method_2_untrusted, encode_key_method_2
from tests.engine.test_server_dispatcher import _pump, _up
from tests.engine.test_server_dispatcher import pki  # noqa: F401 - the fixture
from tests.engine.test_server_security import _mk_client, _mk_server

E9, E8 = peernames.from_peer(b"caf\xe9"), peernames.from_peer(b"caf\xe8")


def test_two_byte_usernames_are_two_identities(pki):  # noqa: F811
    asked: list[bytes] = []
    checked: list[tuple[bytes, bytes]] = []

    def ccd(cn):
        asked.append(peernames.to_bytes(cn))
        return CcdOptions(disable=True) if peernames.to_bytes(cn) == b"caf\xe8" else None

    def verify(u, p, cn):
        checked.append((peernames.to_bytes(u), peernames.to_bytes(p)))
        return (peernames.to_bytes(u), peernames.to_bytes(p)) in {(b"caf\xe9", b"pw\xe9"), (b"caf\xe8", b"pw\xe8")}

    d = _mk_server(pki, ccd=ccd, username_as_cn=True, verify_user=verify)
    a = _mk_client(pki, pki["clients"][1], username=E9, password=peernames.from_peer(b"pw\xe9"))
    b = _mk_client(pki, pki["clients"][2], username=E8, password=peernames.from_peer(b"pw\xe8"))
    _pump(d, [(a, ("198.18.0.110", 1))])
    assert _up(a)
    _pump(d, [(b, ("198.18.0.111", 1))], now=1.0)
    # The check saw each user's own bytes; caf\xe8's ccd file says disable (its own file, not
    # caf\xe9's); caf\xe9 was not dropped as a duplicate of a name it does not have.
    assert checked == [(b"caf\xe9", b"pw\xe9"), (b"caf\xe8", b"pw\xe8")]
    assert asked[0] == b"caf\xe9" and b"caf\xe8" in asked
    assert not _up(b)
    assert [peernames.to_bytes(r.common_name) for r in d.clients] == [b"caf\xe9"]
    assert d.clients[0].addr == ("198.18.0.110", 1)


def test_a_password_of_other_bytes_is_another_password(pki):  # noqa: F811
    """Replacement made every byte that is not UTF-8 the same character: a password `pw\\xe9`
    was matched by `pw\\xff` (and by the UTF-8 `pw\\ufffd`)."""
    d = _mk_server(pki, verify_user=lambda u, p, cn: peernames.to_bytes(p) == b"pw\xe9")
    ok = _mk_client(pki, pki["clients"][1], username="u", password=peernames.from_peer(b"pw\xe9"))
    bad = _mk_client(pki, pki["clients"][2], username="u", password=peernames.from_peer(b"pw\xff"))
    bad2 = _mk_client(pki, pki["clients"][3], username="u", password="pw\ufffd")
    _pump(d, [(ok, ("198.18.0.120", 1)), (bad, ("198.18.0.121", 1)), (bad2, ("198.18.0.122", 1))])
    assert _up(ok) and not _up(bad) and not _up(bad2)


def test_the_key_method_message_keeps_a_name_byte_for_byte():
    """Every byte string but NUL-cut and (for names) control bytes made `_`, as OpenVPN 2.6:
    distinct bytes decode to distinct names and encode back to themselves."""
    names = [b"caf\xe9", b"caf\xe8", b"caf\xc3\xa9", b"caf\xef\xbf\xbd", b"\xed\xa0\x80", b"\xff\xfe", b"a\xe9\0tail"]
    seen = {}
    for raw in names:
        msg = encode_key_method_2(KeyMethod2(b"r" * 32, b"s" * 32, "V4", b"p" * 48,
                                             peernames.from_peer(raw), peernames.from_peer(b"pw" + raw)), True)
        km = decode_key_method_2_untrusted(msg, True)
        assert peernames.to_bytes(km.username) == raw.split(b"\0")[0]
        assert peernames.to_bytes(km.password) == b"pw" + raw.split(b"\0")[0]
        seen[km.username] = raw
    assert len(seen) == len(names)


def test_a_second_user_does_not_drop_the_first_as_a_duplicate(pki):  # noqa: F811
    """duplicate-cn off: a login drops the session of the same name only."""
    d = _mk_server(pki, username_as_cn=True, verify_user=lambda u, p, cn: True)
    a = _mk_client(pki, pki["clients"][1], username=E9, password="x")
    b = _mk_client(pki, pki["clients"][2], username=E8, password="y")
    _pump(d, [(a, ("198.18.0.130", 1))])
    _pump(d, [(b, ("198.18.0.131", 1))], now=1.0)
    assert _up(a) and _up(b)
    assert sorted(peernames.to_bytes(r.common_name) for r in d.clients) == [b"caf\xe8", b"caf\xe9"]


def test_the_password_file_holds_a_latin1_name():
    """The password file's names are bytes too (server_files reads it with peernames.from_peer):
    a Latin-1 name has its own line, which no other bytes match."""
    from appliance.openvpn.passdb import PasswordDb, hash_password
    db = PasswordDb.parse(peernames.from_peer(b"caf\xe9:" + hash_password("secret").encode() + b"\n"))
    assert db.verify(E9, "secret")
    assert not db.verify(E8, "secret") and not db.verify("caf\ufffd", "secret")


def test_a_username_longer_than_a_common_name_is_refused_under_username_as_common_name(pki):  # noqa: F811
    """OpenVPN 2.6 refuses a username of more than 64 bytes (TLS_USERNAME_LEN) when it is to be
    the common name; 64 bytes (32 two-byte characters here) are fine."""
    d = _mk_server(pki, username_as_cn=True, verify_user=lambda u, p, cn: True)
    ok = _mk_client(pki, pki["clients"][1], username="é" * 32, password="x")
    long = _mk_client(pki, pki["clients"][2], username="é" * 32 + "a", password="x")
    _pump(d, [(ok, ("198.18.0.140", 1)), (long, ("198.18.0.141", 1))])
    assert _up(ok) and not _up(long)
    assert [r.common_name for r in d.clients] == ["é" * 32]


def test_a_string_without_its_nul_loses_its_last_byte_as_in_openvpn():
    """OpenVPN 2.6 (read_string) writes the NUL over a string's last byte, sent or not: a
    username `alicex` without its NUL is `alice` there; here it was `alicex`."""
    import struct
    body = b"\0\0\0\0\x02" + b"p" * 48 + b"r" * 64
    msg = body + struct.pack("!H", 3) + b"V4\0" + struct.pack("!H", 6) + b"alicex" + struct.pack("!H", 3) + b"pw\0"
    km = decode_key_method_2_untrusted(msg, True)
    assert (km.options, km.username, km.password) == ("V4", "alice", "pw")


def test_a_pushed_auth_token_user_that_is_not_utf8_is_used_as_its_bytes():
    """OpenVPN 2.6's client sends the token with auth-token-user's bytes; ours dropped the token
    (the username did not decode) and sent the password again."""
    import base64

    from appliance.openvpn.authtoken import AuthToken
    t = AuthToken()
    t.take("tok", base64.b64encode(b"caf\xe9").decode())
    user, pw = t.credentials("other", "secret")
    assert (peernames.to_bytes(user), pw) == (b"caf\xe9", "tok")
