"""tls-verify's hold in TlsEndpoint (settings.hold_for_verdict): once OpenSSL and our checks are
done, nothing goes out and nothing is read until the verdict; the certificate is nobody's
identity meanwhile; a refusal is a TLS failure that tells the peer (REFUSAL_NOTICE) and nothing
else; a peer piling input up on a held handshake ends it."""
from __future__ import annotations

import dataclasses

import pytest

from appliance.openvpn.errors import BadPacket, RemoteProtocolError, VerifyRefused
from appliance.openvpn.keymethod import decode_key_method_2_untrusted
from appliance.openvpn.tls import HELD_INPUT_MAX, REFUSAL_NOTICE, TlsEndpoint, build_context
from tests.engine.test_tls_endpoint import _pair


def _held_pair(version: str | None = None):
    c, s = _pair()
    if version:
        cs = dataclasses.replace(c.settings, tls_version_max=version)
        c = TlsEndpoint(build_context(cs), cs)
    st = dataclasses.replace(s.settings, hold_for_verdict=True, tls_version_max=version)
    return c, TlsEndpoint(build_context(st), st)


def _to_hold(c, s) -> bytes:
    """Run the handshake until the server holds; the client's last flight (its key-method
    message written after its Finished) comes back."""
    out_c, _ = c.pump()
    for _ in range(10):
        s.feed(out_c)
        out_s, _ = s.pump()
        if s.verify_chain is not None:
            return out_s
        c.feed(out_s)
        out_c, _ = c.pump()
    raise AssertionError("never held")


def test_held_until_the_verdict_then_the_messages_are_read():
    c, s = _held_pair()
    assert _to_hold(c, s) == b""
    assert not s.handshake_done and s.peer_cert is None and [x.subject.rfc4514_string() for x in s.verify_chain] == \
        ["CN=client", "CN=tls CA"]
    s.feed(c.send_message(b"key method 2"))
    assert s.pump() == (b"", [])                  # held: nothing read, nothing sent
    s.give_verdict(True)
    out, msgs = s.pump()
    assert s.handshake_done and msgs == [b"key method 2"] and s.peer_cert is not None


def test_a_refusal_fails_tls_and_leaves_no_certificate():
    c, s = _held_pair()
    _to_hold(c, s)
    s.give_verdict(False)
    with pytest.raises(RemoteProtocolError, match="VERIFY SCRIPT ERROR"):
        s.pump()
    assert s.peer_cert is None and not s.handshake_done
    s.give_verdict(True)                          # too late: nothing changes
    assert s.peer_cert is None


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_a_refusal_tells_the_peer_with_a_message_no_key_method_reader_takes(version):
    """What the peer gets: our held handshake records (1.2: our Finished) and then the one
    message REFUSAL_NOTICE, which a key-method reader refuses (OpenVPN: a TLS error, a restart
    at once); no other message, and the peer's own key-method message is never read."""
    c, s = _held_pair(version)
    _to_hold(c, s)
    if version == "1.3":                    # (1.2: the peer writes once it has our Finished)
        s.feed(c.send_message(b"the peer's key method"))
    s.give_verdict(False)
    with pytest.raises(VerifyRefused, match="VERIFY SCRIPT ERROR") as e:
        s.pump()
    assert s.peer_cert is None and not s.handshake_done and s.version == f"TLSv{version}"
    c.feed(e.value.notice)
    _, msgs = c.pump()
    assert c.handshake_done and msgs == [REFUSAL_NOTICE]
    for from_client in (False, True):
        with pytest.raises(BadPacket):
            decode_key_method_2_untrusted(REFUSAL_NOTICE, from_client)


def test_a_refusal_for_lack_of_room_tells_nothing():
    c, s = _held_pair()
    _to_hold(c, s)
    s.give_verdict(False, tell=False)
    with pytest.raises(VerifyRefused) as e:
        s.pump()
    assert e.value.notice == b""


def test_input_piling_up_on_a_held_handshake_ends_it():
    c, s = _held_pair()
    _to_hold(c, s)
    rec = c.send_message(b"x" * 16000)
    with pytest.raises(RemoteProtocolError, match="piling up"):
        for _ in range(HELD_INPUT_MAX // len(rec) + 2):
            s.feed(rec)
