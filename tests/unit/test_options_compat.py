"""OpenVPN 2.6 compatibility of the config parser (issue 8): each test names the OpenVPN behaviour
it follows."""
from __future__ import annotations

import pytest

from appliance.openvpn import ciphers
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.config import parse_config, render_options
from appliance.openvpn.config.lexer import LexError, tokenize
from appliance.openvpn.session import Role
from appliance.openvpn.settings import client_session_config, session_config, tcp_mss
from appliance.openvpn.mss import mss_for

BASE = "client\ndev tun\nremote 198.18.0.1 1194\n<ca>\n</ca>\n"   # 5 lines
BASE_LINES = 5


def _no_files(path: str) -> bytes:
    raise FileNotFoundError(2, "No such file or directory", path)


def _errors(exc: ConfigError) -> list[ConfigError]:
    return list(getattr(exc, "errors", [exc]))


def _one_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "/p/c.ovpn", _no_files)
    errs = _errors(ei.value)
    assert len(errs) == 1, [str(e) for e in errs]
    return errs[0]


# ------------------------------------------------------------------ `X [inline]` + <X> block
KEY = "-----BEGIN OpenVPN Static key V1-----\n" + "\n".join(["0123456789abcdef" * 2] * 16) + \
      "\n-----END OpenVPN Static key V1-----\n"


@pytest.mark.parametrize("directive, field, body, expect", [
    ("ca", "ca", "CA PEM", b"CA PEM\n"),
    ("cert", "cert", "CERT PEM", b"CERT PEM\n"),
    ("key", "key", "KEY PEM", b"KEY PEM\n"),
    ("tls-crypt", "tls_crypt", KEY.strip(), KEY),
    ("tls-crypt-v2", "tls_crypt_v2", "V2 KEY", "V2 KEY\n"),
    ("auth-user-pass", "auth_user_pass", "alice\nsecret", ("alice", "secret")),
])
def test_inline_marker_then_block_is_accepted(directive, field, body, expect):
    """OpenVPN and MirageVPN accept `ca [inline]` with the <ca> block elsewhere in the file."""
    extra = "<cert>\nC\n</cert>\n<key>\nK\n</key>\n" if directive in ("ca",) else ""
    text = ("client\ndev tun\nremote 198.18.0.1\n" + f"{directive} [inline]\n" + extra
            + ("<ca>\nX\n</ca>\n" if directive != "ca" else "")
            + f"<{directive}>\n{body}\n</{directive}>\n")
    if directive in ("cert", "key"):
        other = "key" if directive == "cert" else "cert"
        text += f"<{other}>\nO\n</{other}>\n"
    o = parse_config(text, "/p/c.ovpn", _no_files)
    assert getattr(o, field) == expect


def test_tls_auth_inline_marker_keeps_its_direction():
    text = BASE + f"tls-auth [inline] 1\n<tls-auth>\n{KEY}</tls-auth>\n"
    o = parse_config(text, "/p/c.ovpn", _no_files)
    assert o.tls_auth == KEY and o.key_direction == 1


def test_block_before_marker_is_accepted_too():
    text = "client\ndev tun\nremote 198.18.0.1\n<ca>\nX\n</ca>\nca [inline]\n"
    assert parse_config(text, "/p/c.ovpn", _no_files).ca == b"X\n"


def test_inline_marker_without_block_is_an_error_at_its_line():
    e = _one_error(BASE + "verb 3\ntls-crypt [inline]\n")
    assert str(e).startswith(f"/p/c.ovpn:{BASE_LINES + 2}: tls-crypt: ") and "block" in str(e)


# ------------------------------------------------------------------ OpenVPN's parser limits
def test_parameter_of_256_characters_is_accepted_257_is_not():
    """options.h OPTION_PARM_SIZE 256; parse_line: "Parameter ... is too long (256 chars max)".
    In a file the line limit (255 bytes) comes first; a management command's line has none."""
    assert tokenize(f"verify-x509-name {'a' * 256} name") == ["verify-x509-name", "a" * 256, "name"]
    with pytest.raises(LexError, match="too long"):
        tokenize(f"verify-x509-name {'a' * 257} name")


def test_a_backslash_escapes_only_what_openvpn_lets_it():
    """parse_line (checked with Debian's 2.6.14 on its management socket, which reads a line the
    same way): a backslash escapes \\, " or a blank; before a word it escapes a blank away; any
    other escape, or one ending a word, refuses the line. We took `c:\\dir` as `c:dir`."""
    assert tokenize('\\ ca "c:\\\\dir\\"x" a\\ b') == ["ca", 'c:\\dir"x', "a b"]
    assert tokenize("ca 'c:\\dir' \\") == ["ca", "c:\\dir"]
    for bad, kind in (("ca c:\\dir", "bad-backslash"), ('ca "a\\nb"', "bad-backslash"), ("ca a\\", "residual")):
        with pytest.raises(LexError) as e:
            tokenize(bad)
        assert e.value.kind == kind, bad
    e = _one_error(BASE + "ca c:\\keys\\ca.crt\n")
    assert str(e).startswith(f"/p/c.ovpn:{BASE_LINES + 1}: ca: bad backslash"), str(e)


def test_more_than_16_parameters_is_an_error():
    """options.h MAX_PARMS 16 (the directive counts): OpenVPN drops the rest; we refuse the line."""
    ok = "remote-cert-ku " + " ".join(["80"] * 15) + "\n"      # 16 tokens
    assert parse_config(BASE + ok, "/p/c.ovpn", _no_files).remote_cert_ku == [0x80] * 15
    e = _one_error(BASE + "remote-cert-ku " + " ".join(["80"] * 16) + "\n")
    assert str(e).startswith(f"/p/c.ovpn:{BASE_LINES + 1}: remote-cert-ku: ") and "too many" in str(e)


def test_inline_blocks_are_not_subject_to_the_limits():
    long_line = "A" * 1000
    o = parse_config(f"client\ndev tun\nremote 198.18.0.1\n<ca>\n{long_line}\n</ca>\n", "/p/c.ovpn", _no_files)
    assert o.ca == (long_line + "\n").encode()


# ------------------------------------------------------------------ mssfix
@pytest.mark.parametrize("line, mssfix, mtu", [
    ("", None, True),                 # OpenVPN 2.6 default: 1492 mtu
    ("mssfix\n", None, True),         # `mssfix` alone: the default again
    ("mssfix 1400\n", 1400, False),   # a value without `mtu`: UDP payload bound
    ("mssfix 1400 mtu\n", 1400, True),
    ("mssfix 0\n", 0, False),         # off
])
def test_mssfix_forms(line, mssfix, mtu):
    o = parse_config(BASE + line, "/p/c.ovpn", _no_files)
    assert (o.mssfix, o.mssfix_mtu) == (mssfix, mtu)


def test_mssfix_value_without_mtu_gives_openvpns_mss():
    """OpenVPN 2.6 frame_calculate_mssfix: `mssfix 1400` over UDP with AES-256-GCM (P_DATA_V2)
    clamps to 1400 - 24 - 40 = 1336; the old reading (as `1400 mtu`) gave 1308."""
    o = parse_config(BASE + "mssfix 1400\n", "/p/c.ovpn", _no_files)
    oh = ciphers.overhead("AES-256-GCM", o.auth, True)
    assert tcp_mss(o, oh, tcp_transport=False) == 1400 - 24 - 40
    default = parse_config(BASE, "/p/c.ovpn", _no_files)
    assert tcp_mss(default, oh, tcp_transport=False) == 1492 - 28 - 24 - 40
    assert tcp_mss(parse_config(BASE + "mssfix 0\n", "/p/c.ovpn", _no_files), oh, False) is None
    # comp-lzo no adds OpenVPN's one framing byte to the payload overhead.
    lzo = parse_config(BASE + "comp-lzo no\n", "/p/c.ovpn", _no_files)
    assert tcp_mss(lzo, oh, False) == mss_for(1492, oh, False) - 1


@pytest.mark.parametrize("line, why", [("mssfix 1400 bogus", "unknown")])
def test_mssfix_bad_flags_are_located(line, why):
    e = _one_error(BASE + line + "\n")
    assert str(e).startswith(f"/p/c.ovpn:{BASE_LINES + 1}: mssfix: ") and why in str(e)


# ------------------------------------------------------------------ replay-window
def test_replay_window_reaches_the_session_config():
    o = parse_config(BASE + "replay-window 512 30\n", "/p/c.ovpn", _no_files)
    assert (o.replay_window, o.replay_time) == (512, 30.0)
    cfg = client_session_config(o, "udp")
    assert (cfg.replay_window, cfg.replay_time) == (512, 30.0)
    d = parse_config(BASE, "/p/c.ovpn", _no_files)
    assert (session_config(d, Role.CLIENT).replay_window, session_config(d, Role.CLIENT).replay_time) == (64, 15.0)
    zero = parse_config(BASE + "replay-window 64 0\n", "/p/c.ovpn", _no_files)
    assert session_config(zero, Role.CLIENT).replay_time is None      # OpenVPN: 0 disables the time check


@pytest.mark.parametrize("line", ["replay-window 70000", "replay-window 64 601", "replay-window x"])
def test_replay_window_bounds_are_openvpns(line):
    """packet_id.h: MAX_SEQ_BACKTRACK 65536, MAX_TIME_BACKTRACK 600."""
    e = _one_error(BASE + line + "\n")
    assert str(e).startswith(f"/p/c.ovpn:{BASE_LINES + 1}: replay-window: ")


# ------------------------------------------------------------------ remote-cert-eku / -ku, passtos, opt-verify
def test_remote_cert_eku_and_ku_are_parsed_and_shown():
    o = parse_config(BASE + 'remote-cert-eku "TLS Web Server Authentication"\nremote-cert-ku a0 88\n',
                     "/p/c.ovpn", _no_files)
    assert o.remote_cert_eku == "TLS Web Server Authentication"
    assert o.remote_cert_ku == [0xA0, 0x88]
    out = render_options(o)
    assert f"remote-cert-ku = ['a0', '88']   # /p/c.ovpn:{BASE_LINES + 2}" in out.splitlines()
    assert parse_config(BASE + "remote-cert-ku\n", "/p/c.ovpn", _no_files).remote_cert_ku == []
    e = _one_error(BASE + "remote-cert-ku zz\n")
    assert "hex" in str(e)


def test_passtos_is_accepted_with_a_reason():
    o = parse_config(BASE + "passtos\n", "/p/c.ovpn", _no_files)
    assert any(n.startswith(f"/p/c.ovpn:{BASE_LINES + 1}: passtos: accepted, has no effect here: ") for n in o.notes)


@pytest.mark.parametrize("line, directive", [
    ("opt-verify", "opt-verify"),
    ("ccd-exclusive", "ccd-exclusive"),
    ("username-as-common-name", "username-as-common-name"),
    ("crl-verify crl.pem", "crl-verify"),
])
def test_access_directives_are_never_silently_accepted_on_a_client(line, directive):
    e = _one_error(BASE + line + "\n")
    assert str(e).startswith(f"/p/c.ovpn:{BASE_LINES + 1}: {directive}: ")


# Measured against Debian's OpenVPN 2.6 (the `mss_fix:` figure its client logs at verb 4 once the
# cipher is negotiated; P_DATA_V2, IPv4 transport), for the profile lines given.
OPENVPN_MSS = [
    ("udp", "AES-256-GCM", "", 1400),
    ("udp", "AES-256-GCM", "mssfix 1400\n", 1336),
    ("udp", "AES-256-GCM", "mssfix 1400 mtu\n", 1308),
    ("tcp", "AES-256-GCM", "mssfix 1400\n", 1334),
    ("tcp", "AES-256-GCM", "", 1386),
    ("udp", "CHACHA20-POLY1305", "mssfix 1450\n", 1386),
    ("udp", "AES-256-GCM", "comp-lzo no\nmssfix 1400\n", 1335),
    ("udp", "AES-256-CBC", "", 1379),
    ("udp", "AES-128-CBC", "auth SHA256\nmssfix 1400\n", 1299),
    ("tcp", "AES-256-CBC", "auth SHA512\n", 1315),
    ("udp", "AES-192-CBC", "mssfix 1333\n", 1235),
    # tun-mtu-extra (commercial profiles): measured on Debian's 2.6.14 client, 2026-12-04.
    ("udp", "AES-256-GCM", "mssfix 1450\ntun-mtu-extra 32\n", 1354),
    ("udp", "AES-256-GCM", "tun-mtu-extra 32\n", 1368),
    ("tcp", "AES-256-GCM", "mssfix 1400\ntun-mtu-extra 32\n", 1302),
]


@pytest.mark.parametrize("proto, cipher, lines, openvpn_mss", OPENVPN_MSS)
def test_tcp_mss_equals_openvpn_26(proto, cipher, lines, openvpn_mss):
    o = parse_config(BASE + lines, "/p/c.ovpn", _no_files)
    assert tcp_mss(o, None, proto == "tcp", cipher=cipher) == openvpn_mss
    # From the overhead alone (what DataKey.overhead() gives a pump): exact for AEAD, and for CBC
    # never above OpenVPN's (worst-case padding), at most one block below.
    by_overhead = tcp_mss(o, ciphers.overhead(cipher, o.auth, True), proto == "tcp")
    if ciphers.spec(cipher).aead:
        assert by_overhead == openvpn_mss
    else:
        assert openvpn_mss - 16 < by_overhead <= openvpn_mss


@pytest.mark.parametrize("line, directive", [
    ("ignore-unknown-option verify-hash\nverify-hash AA:BB", "verify-hash"),
    ("setenv opt plugin /usr/lib/openvpn/plugin.so", "plugin"),
    ("setenv opt crl-verify crl.pem", "crl-verify"),
    ("ignore-unknown-option client-cert-not-required\nclient-cert-not-required", "client-cert-not-required"),
    ("ignore-unknown-option ns-cert-type\nns-cert-type peer", "ns-cert-type"),
    ("setenv opt tls-cert-profile strict", "tls-cert-profile"),
])
def test_access_directives_cannot_be_hidden_by_ignore_unknown_option(line, directive):
    """OpenVPN's ignore-unknown-option/setenv opt only skip directives the program does not know;
    ours knows these (as refused), so a profile cannot turn a check it relies on into a no-op."""
    e = _one_error(BASE + line + "\n")
    assert e.directive == directive


def test_setenv_opt_applies_a_known_access_directive():
    """`setenv opt X` is for directives a program does not know; one it knows is applied as if
    written alone (OpenVPN 2.6), so a profile's tls-cert-profile there still raises the level."""
    o = parse_config(BASE + "setenv opt tls-cert-profile suiteb\n", "/p/c.ovpn", _no_files)
    assert o.tls_cert_profile == "suiteb"


def test_check_shows_the_mss_openvpn_would_clamp_to():
    o = parse_config("client\ndev tun\nremote 198.18.0.1 1194 udp\nremote 198.18.0.2 443 tcp\nmssfix 1400\n"
                     "data-ciphers AES-256-GCM:AES-256-CBC\n<ca>\nX\n</ca>\n", "/p/c.ovpn", _no_files)
    line = [ln for ln in render_options(o).splitlines() if ln.startswith("tcp-mss = ")]
    # The CBC cipher has more overhead, so it decides: OpenVPN's figures for AES-256-CBC/SHA1.
    want = {p: tcp_mss(o, None, p == "tcp", cipher="AES-256-CBC") for p in ("tcp", "udp")}
    assert want["udp"] < tcp_mss(o, None, False, cipher="AES-256-GCM")
    assert line == [f"tcp-mss = {want}   # derived: mssfix, tun-mtu, proto, data-ciphers (OpenVPN 2.6 rules)"]
    off = parse_config(BASE + "mssfix 0\n", "/p/c.ovpn", _no_files)
    assert "tcp-mss = {'udp': None}" in render_options(off)


SERVER = ("mode server\ntls-server\nserver 198.19.0.0 255.255.255.0\ndev tun\ndh none\n"
          "<ca>\nX\n</ca>\n<cert>\nX\n</cert>\n<key>\nX\n</key>\n")


def test_access_directives_reach_the_server_settings(monkeypatch):
    """ccd-exclusive, force-cookie, username-as-common-name and connect-freq(-initial) are enforced
    by the dispatcher, so they must arrive there (tests/engine/test_server_security.py enforces)."""
    from appliance.openvpn import settings
    monkeypatch.setattr(settings, "tls_settings", lambda o, s: None)
    monkeypatch.setattr(settings.keyfiles, "parse_tls_crypt_v2_server_key", lambda k: b"k" * 128)
    o = parse_config(SERVER + "client-config-dir /ccd\nccd-exclusive\nusername-as-common-name\n"
                     "management 127.0.0.1 7505\nmanagement-client-auth\n"   # a user check (2.6 wants one)
                     "connect-freq 5 10\nconnect-freq-initial 50 20\n"
                     "<tls-crypt-v2>\nV2\n</tls-crypt-v2>\ntls-crypt-v2 [inline] force-cookie\n",
                     "/p/s.conf", _no_files)
    st = settings.server_settings(o)
    assert (st.ccd_exclusive, st.force_cookie, st.username_as_cn) == (True, True, True)
    assert st.connect_freq == (5, 10) and st.connect_freq_initial == (50, 20)
    st2 = settings.server_settings(parse_config(SERVER, "/p/s.conf", _no_files))
    assert (st2.ccd_exclusive, st2.force_cookie, st2.username_as_cn, st2.connect_freq) == (False, False, False, None)
    assert st2.connect_freq_initial == (100, 10)      # OpenVPN's default


@pytest.mark.parametrize("line", ["connect-freq 0 10", "connect-freq 5", "connect-freq-initial 5 x"])
def test_connect_freq_arguments_are_checked(line):
    e = _one_error(SERVER + line + "\n")
    assert e.directive.startswith("connect-freq")
