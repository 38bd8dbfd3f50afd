"""tls-verify's hold in TlsEndpoint (settings.hold_for_verdict): once OpenSSL and our checks are
done, nothing goes out and nothing is read until the verdict; the certificate is nobody's
identity meanwhile; a refusal is a TLS failure; a peer piling input up on a held handshake ends it."""
from __future__ import annotations

import dataclasses

import pytest

from appliance.openvpn.errors import RemoteProtocolError
from appliance.openvpn.tls import HELD_INPUT_MAX, TlsEndpoint, build_context
from tests.engine.test_tls_endpoint import _pair


def _held_pair():
    c, s = _pair()
    st = dataclasses.replace(s.settings, hold_for_verdict=True)
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


def test_input_piling_up_on_a_held_handshake_ends_it():
    c, s = _held_pair()
    _to_hold(c, s)
    rec = c.send_message(b"x" * 16000)
    with pytest.raises(RemoteProtocolError, match="piling up"):
        for _ in range(HELD_INPUT_MAX // len(rec) + 2):
            s.feed(rec)
