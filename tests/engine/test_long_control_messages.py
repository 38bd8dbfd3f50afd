"""A server (or whoever holds its key) sending control messages longer than OpenVPN 2.6 reads.

OpenVPN reads at most TLS_CHANNEL_BUF_SIZE (2048 bytes) of control plaintext at a time, so it
never acts on a longer message; its pushes come in parts of at most 1024 bytes. A TLS record
holds 16 KB, and the control budget (control.py) charges a record and each message in it one unit
whatever their length: a 16 KB PUSH_REPLY of ~2,300 `ping 1` was parsed whole, ~7 ms of Python a
message, five times the work a unit was made for, and once the tunnel is up every PUSH_REPLY is
parsed (for its auth-token). keymethod.MAX_TEXT_MESSAGE: such a message is refused unread.
"""
from __future__ import annotations

from appliance.openvpn import keymethod
from appliance.openvpn.keymethod import MAX_TEXT_MESSAGE, split_text_messages_untrusted
from tests.engine.test_memory_link import Link, make_pair, pki, up  # noqa: F401 - pki: the fixture


def _server_sends(link, c, s, blobs) -> None:
    """The hostile server: TLS output queued straight onto its control channel, every message
    taken as acknowledged so nothing waits for the client."""
    ks = s.keys[0]
    for b in blobs:                 # one at a time: the server's own send queue is bounded too
        s._queue_tls(ks, b)
        for _ in range(1000):
            s._flush(link.now)
            for p in s.take_outgoing():
                c.receive(p, link.now)
                c.take_outgoing()
            ks.reliable.inflight.clear()
            if not ks.reliable.queue:
                break
    assert not s.closed


def _push(length: int, token: str) -> bytes:
    """A PUSH_REPLY of `length` bytes with an auth-token, padded with `ping 1`."""
    head = f"PUSH_REPLY,auth-token {token}"
    pad = ",ping 1" * ((length - len(head)) // 7)
    text = (head + pad).encode()
    return text + b"x" * (length - len(text))      # the last option `ping 1x...`: still one word


def test_a_message_longer_than_openvpn_reads_is_refused_unread():
    assert split_text_messages_untrusted(b"INFO," + b"a" * (MAX_TEXT_MESSAGE - 5) + b"\0")[0] != []
    msgs, refused = split_text_messages_untrusted(b"INFO," + b"a" * (MAX_TEXT_MESSAGE - 4) + b"\0INFO,b\0")
    assert msgs == ["INFO,b"] and len(refused) == 1 and "refused" in refused[0]


def test_a_server_flooding_16_kb_pushes_after_the_tunnel_is_up_gets_none_parsed(pki, monkeypatch):  # noqa: F811
    c, s, _ = make_pair(pki, proto="tcp", reneg_sec=0, ping=0)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s)
    parsed: list[int] = []
    real = keymethod.parse_push_reply_untrusted

    def counting(text, *a, **k):
        parsed.append(len(text))
        return real(text, *a, **k)

    monkeypatch.setattr("appliance.openvpn.roles.parse_push_reply_untrusted", counting)
    tls = s.keys[0].tls
    # a push OpenVPN could send is read as before: its token is taken
    _server_sends(link, c, s, [tls.send_message(_push(1000, "SHORT") + b"\0")])
    assert c.token.token == "SHORT" and parsed == [1000]
    # 16 KB ones, as fast as the budget lets them in: none is parsed, the token stays
    link.now += 1.0
    _server_sends(link, c, s, [tls.send_message(_push(16000, f"LONG{i}") + b"\0") for i in range(200)])
    assert c.token.token == "SHORT"
    assert parsed == [1000], f"{len(parsed) - 1} long pushes parsed ({sum(parsed[1:]) // 1000} KB)"
    assert c.stats.get(f"control message over {MAX_TEXT_MESSAGE + 1} bytes refused", 0) > 0
