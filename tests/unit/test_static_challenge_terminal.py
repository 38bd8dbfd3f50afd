"""`static-challenge TEXT ECHO` without a management client: the response is typed on the
terminal after the username and password, and the password goes as OpenVPN 2.6 packs it
(misc.c get_user_pass_cr: `SCRV1:base64(password):base64(response)`), also when the profile
holds the password (2.6 asks the response alone then). OpenVPN Access Server profiles with MFA
carry the line; before, ours refused it unless a management client was configured. Without a
terminal (the VM, a service) the run stops at the line, as for a missing password.
"""
from __future__ import annotations

import base64

import pytest

from appliance.gateway import credentials
from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError

BASE = "client\ndev tun\nremote 198.18.0.1 1194\nca ca.crt\n"


def _opts(extra: str):
    return parse_config(BASE + extra, "/cfg/p.ovpn", lambda p: b"alice\ns3cret\n")


def _terminal(monkeypatch, tty: bool, typed: dict):
    asked = []
    monkeypatch.setattr(credentials.sys.stdin, "isatty", lambda: tty, raising=False)
    monkeypatch.setattr("builtins.input", lambda prompt="": (asked.append(("echo", prompt)), typed[prompt])[1])
    monkeypatch.setattr(credentials.getpass, "getpass", lambda prompt="": (asked.append(("hidden", prompt)),
                                                                          typed[prompt])[1])
    return asked


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_the_response_is_asked_after_the_password_and_packed_as_scrv1(monkeypatch):
    o = _opts('auth-user-pass\nstatic-challenge "Enter Authenticator Code" 1\n')
    asked = _terminal(monkeypatch, True, {"Username: ": "alice", "Password: ": "pw:1",
                                          "CHALLENGE: Enter Authenticator Code ": "123456"})
    assert credentials.ask_credentials(o) == ("alice", f"SCRV1:{_b64('pw:1')}:{_b64('123456')}")
    assert asked == [("echo", "Username: "), ("hidden", "Password: "),
                     ("echo", "CHALLENGE: Enter Authenticator Code ")]


def test_with_the_password_in_a_file_only_the_response_is_asked_unechoed(monkeypatch):
    o = _opts('auth-user-pass creds.txt\nstatic-challenge "PIN" 0\n')
    asked = _terminal(monkeypatch, True, {"CHALLENGE: PIN ": "0042"})
    assert credentials.ask_credentials(o) == ("alice", f"SCRV1:{_b64('s3cret')}:{_b64('0042')}")
    assert asked == [("hidden", "CHALLENGE: PIN ")]


def test_a_password_not_in_utf8_is_packed_as_the_file_holds_it(monkeypatch):
    """A Latin-1 password file (read with surrogateescape) stopped the start with a traceback."""
    o = parse_config(BASE + 'auth-user-pass creds.txt\nstatic-challenge "PIN" 0\n', "/cfg/p.ovpn",
                     lambda p: b"alice\ns3cr\xe9t\n")
    _terminal(monkeypatch, True, {"CHALLENGE: PIN ": "0042"})
    pw = base64.b64encode(b"s3cr\xe9t").decode()
    assert credentials.ask_credentials(o) == ("alice", f"SCRV1:{pw}:{_b64('0042')}")


def test_the_challenge_text_cannot_drive_the_terminal(monkeypatch):
    """A profile's text went to the terminal as it was: ESC ] 52 wrote the clipboard (in the
    terminals that allow it), ESC [ 2 J cleared the screen."""
    o = _opts('auth-user-pass creds.txt\nstatic-challenge "\x1b]52;c;ZWNobyBwd25lZA==\x07PIN\x9b2J" 1\n')
    asked = _terminal(monkeypatch, True, {"CHALLENGE: ?]52;c;ZWNobyBwd25lZA==?PIN?2J ": "1"})
    assert credentials.ask_credentials(o)[1] == f"SCRV1:{_b64('s3cret')}:{_b64('1')}"
    assert asked == [("echo", "CHALLENGE: ?]52;c;ZWNobyBwd25lZA==?PIN?2J ")]


def test_without_a_terminal_the_run_stops_at_the_static_challenge_line(monkeypatch):
    o = _opts('auth-user-pass creds.txt\nstatic-challenge "PIN" 0\n')
    _terminal(monkeypatch, False, {})
    with pytest.raises(ConfigError) as ei:
        credentials.ask_credentials(o)
    assert str(ei.value).startswith("/cfg/p.ovpn:6: static-challenge: no terminal to ask for the static challenge")


def test_auth_nocache_beside_it_is_refused_without_a_management_client():
    with pytest.raises(ConfigError) as ei:
        _opts('auth-user-pass creds.txt\nauth-nocache\nstatic-challenge "PIN" 0\n')
    assert ":7: static-challenge: with auth-nocache" in str(ei.value)
