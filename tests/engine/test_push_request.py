"""When the client asks for its options (roles.py PUSH_REQUEST_DELAY), in memory with a fake clock.

As OpenVPN 2.6's client: it announces IV_PROTO_REQUEST_PUSH, so a 2.5+ server pushes as soon as it
has the client's ACK of its key-method message, unasked; a PUSH_REQUEST sent at once only made the
server decrypt and ACK it before pushing. A server that waits to be asked (older ones) gets the
request PUSH_REQUEST_DELAY after the key exchange began, and again every PUSH_REQUEST_INTERVAL."""
from __future__ import annotations

from appliance.openvpn.roles import PUSH_REQUEST_DELAY, PUSH_REQUEST_INTERVAL
from tests.engine.test_memory_link import Link, make_pair, pki, up  # noqa: F401 - pki is a fixture


def _record_texts(s) -> list[tuple[str, float]]:
    got: list[tuple[str, float]] = []
    orig = s.role.text_message

    def text_message(ks, text, now):
        got.append((text, now))
        orig(ks, text, now)
    s.role.text_message = text_message
    return got


def test_a_server_that_pushes_unasked_gets_no_push_request(pki):  # noqa: F811
    c, s, _ = make_pair(pki, protection="tls-auth")
    texts = _record_texts(s)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s) and link.now < PUSH_REQUEST_DELAY
    link.run(lambda: False, max_time=PUSH_REQUEST_DELAY + PUSH_REQUEST_INTERVAL + 1)
    assert texts == [], texts


def test_a_server_that_waits_to_be_asked_is_asked_after_the_delay(pki):  # noqa: F811
    c, s, _ = make_pair(pki, protection="tls-crypt")
    texts = _record_texts(s)
    push = s.role.send_push_reply
    s.role.send_push_reply = lambda ks, now: push(ks, now) if texts else None   # only once asked
    link = Link(c, s)
    link.run(lambda: up(c, s), max_time=30)
    assert up(c, s)
    assert [t for t, _ in texts] == ["PUSH_REQUEST"]
    assert PUSH_REQUEST_DELAY <= texts[0][1] < PUSH_REQUEST_DELAY + 0.5, texts
