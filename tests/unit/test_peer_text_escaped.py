"""Text a peer sends on the control channel reaches our log (AUTH_FAILED reasons, INFO, the
pushed options we ignore, bad-option errors): CR/LF would forge log lines, ESC sequences drive
the terminal reading them. keymethod.split_text_messages_untrusted, the one place peer text
becomes str, refuses a message holding a control byte (as OpenVPN 2.6.14 does) and escapes what it
shows of it in the warning, and the C1 controls OpenVPN lets through (U+0080-U+009F) wherever they
go (tests/engine/test_control_message_framing.py: what each end then does)."""
from __future__ import annotations

from appliance.gateway.eventlog import push_summary
from appliance.openvpn.keymethod import parse_push_reply_untrusted, split_text_messages_untrusted


def _controls(s: str) -> list[str]:
    return [ch for ch in s if (ch < " " and ch != "\t") or "\x7f" <= ch <= "\x9f"]


def test_control_characters_from_the_peer_refuse_the_message_and_the_warning_is_escaped():
    msgs, refused = split_text_messages_untrusted(b"AUTH_FAILED,no\r\n12:00:00.000 INFO tunnel up: forged\0"
                                                  b"INFO,\x1b]0;title\x07\x1b[2J\xc2\x9b31m\0")
    assert msgs == []
    assert [r.split(": ", 1)[1] for r in refused] == [
        "AUTH_FAILED,no\\x0d\\x0a12:00:00.000 INFO tunnel up: forged",
        "INFO,\\x1b]0;title\\x07\\x1b[2J\\x9b31m"]
    assert not any(_controls(r) for r in refused)


def test_c1_controls_pass_as_in_openvpn_but_come_out_escaped():
    assert split_text_messages_untrusted(b"INFO,\xc2\x9b31mred\0") == (["INFO,\\x9b31mred"], [])


def test_ordinary_text_is_unchanged():
    text = "PUSH_REPLY,route 198.18.0.0 255.254.0.0,dhcp-option DOMAIN bücher.example,ping 10"
    assert split_text_messages_untrusted(text.encode() + b"\0") == ([text], [])
    assert split_text_messages_untrusted(text.encode() + b"\r\n\0") == ([text], [])   # OpenVPN's chomp


def test_a_hostile_push_logs_without_control_characters():
    (text,), _ = split_text_messages_untrusted(b"PUSH_REPLY,foo \xc2\x9b31mRED,redirect-gateway def1\0")
    summary = push_summary(parse_push_reply_untrusted(text))
    assert not _controls(summary) and "ignored: foo \\x9b31mRED" in summary
    (bad,), _ = split_text_messages_untrusted(b"PUSH_REPLY,ping \xc2\x9b1m\0")
    p = parse_push_reply_untrusted(bad)
    assert p.ping == 0 and not _controls(p.malformed[0]) and "\\x9b" in p.malformed[0], p.malformed



def test_pushed_compression_is_named_in_the_summary_and_cut_short():
    assert "compress lz4-v2" in push_summary(parse_push_reply_untrusted("PUSH_REPLY,compress lz4-v2,ping 10"))
    assert "comp-lzo yes" in push_summary(parse_push_reply_untrusted("PUSH_REPLY,comp-lzo,ping 10"))
    p = parse_push_reply_untrusted("PUSH_REPLY,comp-lzo " + "y" * 5000)
    long = push_summary(p)
    assert "comp-lzo" not in long and len(long) < 200                  # 2.6: "bad comp-lzo option"
    assert len(p.malformed) == 1 and len(p.malformed[0]) < 300 and "bad comp-lzo option" in p.malformed[0]
