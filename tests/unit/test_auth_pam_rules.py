"""The auth-pam plugin line's parsing (openvpn/config/d_plugin.py), the plugin's conversation and
credential rules (host/pam_rules.py, read from OpenVPN 2.6.14's auth-pam.c), the helper's message
format, and the helper process against hostile requests (host/pam_helper.py)."""
from __future__ import annotations

import base64
import os
import socket
import time

import pytest

from appliance.config.schema import parse_appliance_config
from appliance.host import pam_helper
from appliance.host.pam_rules import (ERROR_MSG, PROMPT_ECHO_OFF, PROMPT_ECHO_ON, TEXT_INFO, ConvError, Creds,
                                      answer, base64_decode, name_value_match, plugin_credentials, split_scrv1)
from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError

SERVER = ("port 1194\ndev tun\ntopology subnet\nserver 198.19.0.0 255.255.255.0\nca ca.crt\ncert s.crt\n"
          "key s.key\ndh none\n")
CLIENT = "client\ndev tun\nremote 198.18.0.1 1194\nca ca.crt\n"
PLUGIN = "/usr/lib/x86_64-linux-gnu/openvpn/plugins/openvpn-plugin-auth-pam.so"


def _any_file(path: str) -> bytes:
    return b"X\n"


def _parse(text: str):
    return parse_config(text, "/cfg/server.conf", _any_file)


def _errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        _parse(text)
    return [str(x) for x in getattr(e.value, "errors", [e.value])]


@pytest.mark.parametrize("line, want", [
    (f"plugin {PLUGIN} login", ("login", ())),
    ("plugin /usr/lib/openvpn/openvpn-plugin-auth-pam.so openvpn", ("openvpn", ())),
    ("plugin openvpn-plugin-auth-pam.so login", ("login", ())),
    ('plugin openvpn-plugin-auth-pam.so "openvpn name USERNAME password PASSWORD"',
     ("openvpn", (("name", "USERNAME"), ("password", "PASSWORD")))),
    ("plugin openvpn-auth-pam.so login login USERNAME password PASSWORD pin OTP",
     ("login", (("login", "USERNAME"), ("password", "PASSWORD"), ("pin", "OTP")))),
])
def test_the_plugin_line_gives_the_service_and_pairs(line, want):
    assert _parse(SERVER + line + "\n").auth_pam == want


@pytest.mark.parametrize("line, why", [
    ("plugin /usr/lib/openvpn/openvpn-plugin-down-root.so /nonexistent/down.sh", "no such file"),
    ("plugin /opt/x/radiusplugin.so /etc/radius.cnf", "plugins are not supported"),
    (f"plugin {PLUGIN}", "need PAM service parameter"),
    (f'plugin {PLUGIN} "login name"', "bad name/value list length"),
    (f"plugin {PLUGIN} login\nplugin {PLUGIN} login", "a second auth-pam plugin line"),
])
def test_other_plugins_and_bad_lines_are_refused_at_their_line(line, why):
    errs = _errors(SERVER + line + "\n")
    n = SERVER.count("\n") + line.count("\n") + 1
    assert len(errs) == 1 and errs[0].startswith(f"/cfg/server.conf:{n}: plugin: ") and why in errs[0], errs


def test_the_plugin_on_a_client_or_with_a_password_file_is_refused():
    assert any("is a server directive" in e for e in _errors(CLIENT + f"plugin {PLUGIN} login\n"))
    errs = _errors(SERVER + f"plugin {PLUGIN} login\nauth-user-pass-verify users.db passdb\n")
    assert any("with a password file" in e for e in errs), errs


def test_the_plugin_decides_a_login_without_credentials_with_auth_user_pass_optional():
    """As OpenVPN 2.6 (options.c): the optional login needs a script, management or a plugin."""
    assert _parse(SERVER + f"plugin {PLUGIN} login\nauth-user-pass-optional\n").auth_user_pass_optional


def test_the_vm_toml_refuses_the_plugin_with_its_reason(tmp_path):
    (tmp_path / "server.ovpn").write_text(SERVER + f"plugin {PLUGIN} login\n")
    for f in ("ca.crt", "s.crt", "s.key"):
        (tmp_path / f).write_text("X\n")
    toml = '[wan]\nname = "eth0"\ndhcp = true\n\n[vpn]\nrole = "server"\nconfig = "server.ovpn"\n'
    with pytest.raises(ConfigError) as e:
        parse_appliance_config(toml, str(tmp_path / "appliance.toml"))
    errs = [str(x) for x in getattr(e.value, "errors", [e.value])]
    assert any(x.startswith(f"{tmp_path}/server.ovpn:{SERVER.count(chr(10)) + 1}: plugin: ") and "no user accounts" in x
               for x in errs), errs


def test_directive_args(tmp_path):
    from appliance.openvpn.config.d_plugin import auth_pam_args
    assert auth_pam_args(["login"]) == ("login", ())
    assert auth_pam_args(["openvpn name USERNAME password PASSWORD"]) == \
        ("openvpn", (("name", "USERNAME"), ("password", "PASSWORD")))
    assert auth_pam_args(["login", "login", "USERNAME"]) == ("login", (("login", "USERNAME"),))
    assert auth_pam_args(["login 'a b' \"c d\""]) == ("login", (("a b", "c d"),))
    assert "need PAM service parameter" in auth_pam_args([])
    assert "bad name/value list length" in auth_pam_args(["login name"])
    assert "bad name/value list length" in auth_pam_args(["login"] + ["n", "v"] * 17)
    assert auth_pam_args(["login"] + ["n", "v"] * 16)[1][15] == ("n", "v")
    assert "unterminated" in auth_pam_args(['login "name'])


# ------------------------------------------------------------------ the conversation (auth-pam.c my_conv)
C = Creds(b"alice", b"s3cret", b"client0", b"123456", b"198.18.0.2")


def test_the_default_conversation_answers_by_echo_style():
    assert answer((), PROMPT_ECHO_ON, b"login: ", C) == b"alice"
    assert answer((), PROMPT_ECHO_OFF, b"Password: ", C) == b"s3cret"
    assert answer((), TEXT_INFO, b"hello", C) is None and answer((), ERROR_MSG, b"oops", C) is None
    with pytest.raises(ConvError):
        answer((), 7, b"binary", C)
    assert answer((), PROMPT_ECHO_OFF, b"Password: ", Creds(b"alice", b"")) == b""   # empty: passed on


def test_pairs_match_the_prompts_start_past_punctuation_ignoring_case():
    assert name_value_match(b"Password: ", b"password")
    assert name_value_match(b"  -- PIN code:", b"pin")
    assert not name_value_match(b"Your password:", b"password")     # a prefix, not a substring
    assert not name_value_match(b"::", b"x") and not name_value_match(None, b"x")
    assert not name_value_match(b"Pass", b"password")
    pairs = ((b"login", b"USERNAME"), (b"password", b"PASSWORD"), (b"pin", b"OTP"), (b"cn", b"COMMONNAME"),
             (b"domain", b"example.org"), (b"both", b"USERNAME@PASSWORD"))
    assert answer(pairs, PROMPT_ECHO_ON, b"Login:", C) == b"alice"
    assert answer(pairs, PROMPT_ECHO_OFF, b"password", C) == b"s3cret"
    assert answer(pairs, PROMPT_ECHO_OFF, b"PIN:", C) == b"123456"
    assert answer(pairs, PROMPT_ECHO_ON, b"CN?", C) == b"client0"
    assert answer(pairs, PROMPT_ECHO_ON, b"Domain:", C) == b"example.org"
    # Only the first special word (in the plugin's order) is replaced, wherever it occurs.
    assert answer(pairs, PROMPT_ECHO_ON, b"both", C) == b"alice@PASSWORD"
    # With pairs every message must match one, an info text too; and an empty value fails.
    for msg in (b"Token:", b"Welcome"):
        with pytest.raises(ConvError):
            answer(pairs, TEXT_INFO, msg, C)
    with pytest.raises(ConvError):
        answer(pairs, PROMPT_ECHO_OFF, b"Password:", Creds(b"alice", b""))
    with pytest.raises(ConvError):
        answer(pairs, PROMPT_ECHO_OFF, b"pin", C.__class__(b"alice", b"pw"))     # no OTP given


def test_credentials_are_cut_to_the_plugins_buffers_and_an_empty_username_is_refused():
    assert plugin_credentials(b"", b"pw", b"", "198.18.0.2") is None
    c = plugin_credentials(b"u" * 500, b"p" * 500, b"c" * 500, "2001:db8::1")
    assert (len(c.username), len(c.password), len(c.common_name)) == (127, 127, 127)
    assert c.remote == b"2001:db8::1"
    assert plugin_credentials(b"a\0b", b"x\0y", b"", "").username == b"a"     # C strings


def _scrv1(pw: bytes, resp: bytes) -> bytes:
    return b"SCRV1:" + base64.b64encode(pw) + b":" + base64.b64encode(resp)


def test_static_challenge_passwords_are_split_as_the_plugin_splits_them():
    assert split_scrv1(_scrv1(b"s3cret", b"123456")) == (b"s3cret", b"123456")
    assert split_scrv1(b"plain") == (b"plain", b"")
    assert split_scrv1(b"SCRV1:nocolon") == (b"SCRV1:nocolon", b"")
    assert split_scrv1(b"SCRV1:abc:def") == (b"SCRV1:abc:def", b"")      # not 4-character groups: kept
    assert split_scrv1(b"SCRV1::") == (b"", b"")
    c = plugin_credentials(b"alice", _scrv1(b"pw", b"42"), b"", "")
    assert (c.password, c.response) == (b"pw", b"42")
    # The password is cut to 127 bytes before the split, as there: a long one no longer decodes.
    long = _scrv1(b"p" * 100, b"1")
    assert plugin_credentials(b"alice", long, b"", "").password == long[:127]


def test_base64_decodes_as_openvpn_does():
    assert base64_decode(b"aGVsbG8=", 127) == b"hello"
    assert base64_decode(b"aGVsbG8=!!!", 127) == b"hello"       # stops at a character outside the alphabet
    assert base64_decode(b"aGVsbG8", 127) is None               # a partial group
    assert base64_decode(b"aGVsbG8=", 4) is None                # overflow
    assert base64_decode(b"a===", 127) is None
    assert base64_decode(b"", 127) == b""


# ------------------------------------------------------------------ the helper's messages and process
def test_requests_and_replies_round_trip_and_malformed_ones_are_told_apart():
    msg = pam_helper.encode_request(7, C)
    assert pam_helper.decode_request(msg) == (7, C)
    assert pam_helper.decode_request(msg[:-1]) == (7, None)
    assert pam_helper.decode_request(msg + b"x") == (7, None)
    assert pam_helper.decode_request(b"X" + msg[1:]) is None
    assert pam_helper.decode_request(b"V" + bytes(8) + b"\xff" + b"a" * 255) == (0, None)
    assert pam_helper.decode_reply(pam_helper.encode_reply(9, pam_helper.REFUSED, "no" * 500)) == \
        (9, pam_helper.REFUSED, ("no" * 500)[:200])
    assert pam_helper.decode_reply(b"R" + bytes(8) + b"\x09") is None


def test_the_helper_survives_hostile_requests_and_answers_the_next():
    """Garbage, oversized, truncated and unknown messages end only themselves; a real request
    after them is still answered (a service no file names: PAM's `other`, which refuses)."""
    from appliance.host.pam_client import PamHelper
    h = PamHelper(f"vpnapp-pam29-none-{os.getpid()}", (), 10.0)
    try:
        for junk in (b"\x00", b"V", b"V" + bytes(8), b"Z" * 100, b"V" + bytes(8) + b"\x05ab", os.urandom(5000)):
            h.sock.send(junk)
        status, _ = h.check(Creds(b"nobody-here", b"x" * 127, b"", b"", b"198.18.0.9"))
        assert status == pam_helper.REFUSED
        assert h.proc.poll() is None
    finally:
        h.close()
    assert h.proc.wait(5) == 0


def test_the_helper_bounds_its_checks_and_kills_one_past_its_limit():
    sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:                                   # a helper whose "PAM" hangs
        try:
            sock.close()
            pam_helper._child = lambda s, rid, *a: (time.sleep(30), os._exit(0))   # noqa: SLF001
            pam_helper.serve(theirs, b"x", (), 0.5, max_children=1, max_queued=1)
        finally:
            os._exit(0)
    theirs.close()
    try:
        for rid in (1, 2, 3):
            sock.send(pam_helper.encode_request(rid, C))
        sock.settimeout(10)
        replies = [pam_helper.decode_reply(sock.recv(512)) for _ in range(3)]
        assert replies[0][:2] == (3, pam_helper.BUSY)
        assert sorted(r[:2] for r in replies[1:]) == [(1, pam_helper.ERROR), (2, pam_helper.ERROR)]
        assert all("limit" in r[2] for r in replies[1:])
    finally:
        sock.close()
        os.waitpid(pid, 0)


def test_check_shows_the_service_and_pairs():
    from appliance.openvpn.config import render_options
    shown = render_options(_parse(SERVER + f'plugin {PLUGIN} "openvpn name USERNAME"\n'))
    assert f"auth-pam = PAM service 'openvpn', 'name' -> 'USERNAME'   # /cfg/server.conf:{SERVER.count(chr(10)) + 1}" \
        in shown.splitlines()
    assert "auth-pam = None   # (default)" in render_options(_parse(SERVER)).splitlines()
