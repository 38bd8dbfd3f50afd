"""Pushed values that are not UTF-8: setenv-safe's and dhcp-option's reach the scripts as the
server's bytes, as OpenVPN 2.6 (CC_PRINT keeps 0x80-0xff); everything else is text with U+FFFD,
and nothing acted on takes such a byte (tests/interop/test_pushed_bytes_vs_openvpn.py runs
Debian's client beside ours)."""
from __future__ import annotations

from types import SimpleNamespace

from appliance.host.dns_settings import from_pushed
from appliance.openvpn.keymethod import parse_push_reply_untrusted, split_text_messages_untrusted
from appliance.openvpn.peernames import to_bytes


def _push(raw: bytes):
    msgs, refused = split_text_messages_untrusted(raw + b"\0")
    assert not refused and len(msgs) == 1
    return parse_push_reply_untrusted(msgs[0])


def test_setenv_safe_and_dhcp_option_values_keep_their_bytes():
    p = _push(b"PUSH_REPLY,setenv-safe MOTD caf\xe9-\xff,dhcp-option DOMAIN ex\xffample.org,"
              b"dhcp-option DNS 198.18.5.5,route 198.18.9.0 255.255.255.0 \xff")
    assert to_bytes(p.setenv_safe["OPENVPN_MOTD"]) == b"caf\xe9-\xff"
    assert [(k, to_bytes(v)) for k, v in p.dhcp_options] == [("DOMAIN", b"ex\xffample.org"),
                                                             ("DNS", b"198.18.5.5")]
    # The DNS settings act on valid names only: the 0xff domain is not one (nor was U+FFFD).
    dns = from_pushed(SimpleNamespace(**{**vars(p), "ifconfig": ("198.19.0.2", "255.255.255.0")}))
    assert dns.search == () and dns.servers == ("198.18.5.5",)


def test_a_byte_in_a_name_is_dropped_and_other_messages_stay_text():
    p = _push(b"PUSH_REPLY,setenv-safe M\xffOTD v")
    assert list(p.setenv_safe) == ["OPENVPN_MOTD"]        # CC_NAME: only letters, digits, _
    msgs, _ = split_text_messages_untrusted(b"AUTH_FAILED,caf\xe9\0")
    assert msgs == ["AUTH_FAILED,caf\ufffd"]
