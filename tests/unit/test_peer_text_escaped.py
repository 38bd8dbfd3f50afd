"""Text a peer sends on the control channel reaches our log (AUTH_FAILED reasons, INFO, the
pushed options we ignore, bad-option errors): CR/LF would forge log lines, ESC sequences drive
the terminal reading them. keymethod.split_text_messages_untrusted, the one place peer text
becomes str, escapes them."""
from __future__ import annotations

from appliance.gateway.eventlog import push_summary
from appliance.openvpn.errors import BadPacket
from appliance.openvpn.keymethod import parse_push_reply_untrusted, split_text_messages_untrusted


def _controls(s: str) -> list[str]:
    return [ch for ch in s if (ch < " " and ch != "\t") or "\x7f" <= ch <= "\x9f"]


def test_control_characters_from_the_peer_come_out_escaped():
    msgs = split_text_messages_untrusted(b"AUTH_FAILED,no\r\n12:00:00.000 INFO tunnel up: forged\0"
                                         b"INFO,\x1b]0;title\x07\x1b[2J\xc2\x9b31m\0")
    assert msgs == ["AUTH_FAILED,no\\x0d\\x0a12:00:00.000 INFO tunnel up: forged",
                    "INFO,\\x1b]0;title\\x07\\x1b[2J\\x9b31m"]


def test_ordinary_text_is_unchanged():
    text = "PUSH_REPLY,route 198.18.0.0 255.254.0.0,dhcp-option DOMAIN bücher.example,ping 10\tx"
    assert split_text_messages_untrusted(text.encode() + b"\0") == [text]


def test_a_hostile_push_logs_without_control_characters():
    (text,) = split_text_messages_untrusted(b"PUSH_REPLY,foo \x1b[31mRED\r\nFAKE,redirect-gateway def1 \x1b[0m\0")
    summary = push_summary(parse_push_reply_untrusted(text))
    assert not _controls(summary) and "ignored: foo \\x1b[31mRED\\x0d\\x0aFAKE" in summary
    (bad,) = split_text_messages_untrusted(b"PUSH_REPLY,ping \x1b[1m\0")
    try:
        parse_push_reply_untrusted(bad)
    except BadPacket as e:
        assert not _controls(str(e)) and "\\x1b" in str(e)
    else:
        raise AssertionError("a bad ping value was accepted")
