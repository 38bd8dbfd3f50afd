"""Every kind of per-client line (a client-config-dir file, a client-connect output, management
client-auth lines: one reader, openvpn/config/ccd.py parse_ccd) read as OpenVPN 2.6.14 reads it
(compat45). 2.6 imports them with multi.c's CLIENT_CONNECT_OPT_MASK at D_IMPORT_ERRORS: a line
it cannot take -- unknown, the wrong argument count, an option not allowed per client -- is
logged and skipped, the client connected. Before, every line but nine refused the client.
Kept stricter, on purpose: a malformed security line (the nine) and a who-may-connect
directive 2.6 would skip refuse the client; per-client lines 2.6 applies that we apply only
server-wide (inactive, session-timeout, ...) refuse it, naming the line.
"""
from __future__ import annotations

import logging

import pytest

from appliance.openvpn.config import ConfigError, parse_ccd
from appliance.openvpn.config.ccd import note_skipped
from appliance.openvpn.config.model import CcdOptions

PATH = "/etc/openvpn/ccd/alice"


def _refused(line: str) -> str:
    with pytest.raises(ConfigError) as ei:
        parse_ccd("# alice\n" + line + "\n", PATH)
    text = str(ei.value)
    assert text.startswith(f"{PATH}:2: "), text
    return text


@pytest.mark.parametrize("line", [
    "frobnicate yes",                       # unknown to 2.6
    "Iroute-ipv7 x",                        # unknown, whatever its case
    "route 198.18.9.0 255.255.255.0",       # 2.6: "option 'route' cannot be used in this context"
    "keepalive 10 60", "verb 4", "topology subnet", "setenv FOO bar", "dhcp-option DNS 198.18.0.53",
    "ping 10 20", "comp-lzo no extra", "cipher", "ping-timer-rem now",     # the wrong argument count
    "comp-lzo maybe", "compress zstd",      # 2.6: "bad comp-lzo option", skipped
    "<route>\n198.18.9.0 255.255.255.0\n</route>",
])
def test_lines_26_skips_are_skipped_and_the_rest_applies(line, caplog):
    with caplog.at_level(logging.WARNING, logger="appliance.openvpn.config.ccd"):
        c = parse_ccd(f"iroute 198.18.5.0 255.255.255.0\n{line}\npush \"route 198.18.7.0 255.255.255.0\"\n",
                      PATH + "-" + line.split()[0])
    assert c.iroutes == [("198.18.5.0", "255.255.255.0")] and c.push == ["route 198.18.7.0 255.255.255.0"]
    assert [(n, d) for n, d, _why in c.skipped] == [(2, line.split()[0].strip("<>"))], c.skipped
    said = caplog.text
    assert f"{PATH}-{line.split()[0]}:2: " in said and "skipped" in said and "OpenVPN 2.6" in said, said


@pytest.mark.parametrize("line,why", [
    ("disable now", "takes 0 arguments, not 1"),                  # 2.6 skips it: the client gets in
    ("push-reset all", "takes 0 arguments, not 1"),
    ("iroute 198.18.5.0 255.255.255.0 x", "takes 1 to 2 arguments, not 3"),
    ("ifconfig-push 198.19.0.5 255.255.255.0 a b", "takes 2 to 3 arguments, not 4"),
    ("ifconfig-push 198.19.0.5", "takes 2 to 3 arguments, not 1"),
    ("vlan-pvid", "takes 1 argument, not 0"),
    ("iroute 198.18.5.x 255.255.255.0", "not an IPv4 address"),
    ("<iroute>\n198.18.5.0\n</iroute>", "inline blocks are not supported"),
])
def test_a_malformed_security_line_refuses_the_client(line, why):
    assert why in _refused(line)


@pytest.mark.parametrize("line", ["tls-version-min 1.3", "client-config-dir /tmp", "ccd-exclusive",
                                  "auth-user-pass-verify /bin/true via-env", "verify-client-cert none",
                                  "duplicate-cn", "crl-verify /tmp/crl.pem"])
def test_a_who_may_connect_directive_26_would_skip_is_refused(line):
    assert "decides who may connect" in _refused(line)


@pytest.mark.parametrize("line,why", [
    ("inactive 30", "per-client inactivity"), ("inactive 30 1000", "per-client inactivity"),
    ("session-timeout 3600", "per-client session-timeout"), ("max-routes-per-client 5", "route limit"),
    ("config /etc/openvpn/more.conf", "not read from another file"), ("auth-token abc", "credential"),
    ("compress migrate", "server-wide"), ("ping ten", "number of seconds"), ("ping-restart -1", "number of seconds"),
])
def test_lines_26_applies_that_we_apply_only_server_wide_refuse_naming_the_line(line, why):
    assert why in _refused(line)


@pytest.mark.parametrize("line", ["ping-timer-rem", "comp-noadapt", "echo msg hello", "parameter x y",
                                  "socket-flags TCP_NODELAY", "bind-dev eth0"])
def test_lines_without_effect_on_a_servers_client_are_taken_silently(line):
    c = parse_ccd(line + "\n", PATH)
    assert c == CcdOptions() and c.skipped == []


@pytest.mark.parametrize("text,field,value", [
    ("ping 7\n", "ping", 7), ("ping-restart 0\n", "ping_restart", 0), ("ping-exit 45\n", "ping_restart", 45),
    # 2.6's ping-exit and ping-restart set one timer: the later line wins (review46c: ours kept the
    # earlier of the two, cutting a client 2.6 gives 300 s off at 30)
    ("ping-exit 30\nping-restart 300\n", "ping_restart", 300), ("ping-restart 300\nping-exit 0\n", "ping_restart", 0),
    ("comp-lzo no\n", "comp", "lzo-stub"), ("comp-lzo\n", "comp", "lzo"), ("compress\n", "comp", "stub"),
    ("compress stub-v2\n", "comp", "stub-v2"), ("compress lz4-v2\n", "comp", "lz4-v2"),
    ("compress stub\ncomp-lzo no\n", "comp", "lzo-stub"),                    # the later line wins
    # as written: 2.6 compares a per-client list's names with strcmp, never canonicalised (compat48)
    ("data-ciphers AES-256-GCM:chacha20-poly1305\n", "data_ciphers", ("AES-256-GCM", "chacha20-poly1305")),
    ("cipher aes-128-cbc\n", "fallback", ("aes-128-cbc", False)),
    ("data-ciphers-fallback AES-128-CBC\ncipher AES-256-CBC\n", "fallback", ("AES-256-CBC", True)),
    ("setenv opt ping 9\n", "ping", 9),                                      # 2.6 reads it as `ping 9`
    ("setenv opt disable\n", "disable", True),
])
def test_session_lines_are_read(text, field, value):
    assert getattr(parse_ccd(text, PATH), field) == value


def test_where_and_skipped_lines_do_not_count_in_what_a_client_is_given():
    """A reload compares a kept client's file's options (given.py): a comment or an unknown
    line added above must not change them (it would tell the client RESTART)."""
    assert parse_ccd("comp-lzo no\n", PATH) == parse_ccd("# x\nfoo\ncomp-lzo no\n", PATH)


def test_skipped_lines_are_said_at_a_limited_rate_per_source(caplog):
    c = parse_ccd("foo 1\n", "/ccd/rate-test")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="appliance.openvpn.config.ccd"):
        for i in range(50):
            note_skipped(c, "/ccd/rate-test2", now=1000.0 + i * 0.01)
        note_skipped(c, "/ccd/rate-test2", now=1000.0 + 31.0)
        note_skipped(c, "/ccd/other", now=1000.0)
    lines = [r.getMessage() for r in caplog.records]
    mine = [m for m in lines if m.startswith("/ccd/rate-test2:1: foo:")]
    assert len(mine) == 4, lines                        # a burst of 3, then one after 30 s ...
    assert "(47 more times since the last such line)" in mine[-1], mine[-1]     # ... counting the held
    assert any(m.startswith("/ccd/other:1: foo:") for m in lines), "another file has its own limit"


@pytest.mark.parametrize("text,directive", [
    ("disable\0 junk\n", "disable"), ("push-reset\0\n", "push-reset"), ("frobnicate 1\0\n", "frobnicate"),
    ("iroute 198.18.4.0 255.255.255.0\0x\n", "iroute"), ("setenv opt disable\0\n", "setenv"), ("\0disable\n", "(NUL)"),
])
def test_a_line_holding_a_nul_refuses_the_client(text, directive):
    """review46c: 2.6 reads a line only up to a NUL (`disable<NUL> junk` disables the client
    there); ours skipped `disable<NUL>` as an unknown directive and let the client in."""
    with pytest.raises(ConfigError) as e:
        parse_ccd(text, PATH)
    assert f"{PATH}:1: {directive}: a NUL byte in the line" in str(e.value), str(e.value)


def test_a_nul_in_a_comment_changes_nothing():
    assert parse_ccd("# a \0 b\npush-reset ; \0\n", PATH).push_reset


def test_ifconfig_push_with_an_alias_refuses_the_client():
    """review46c: 2.6 tells the client the third address (`ifconfig ALIAS MASK`, NAT between);
    ours dropped it and pushed the first."""
    with pytest.raises(ConfigError) as e:
        parse_ccd("ifconfig-push 198.19.0.5 255.255.255.0 198.19.0.99\n", PATH)
    assert f"{PATH}:1: ifconfig-push: the third argument" in str(e.value), str(e.value)


@pytest.mark.parametrize("line,meant", [
    ("IROUTE 198.18.9.0 255.255.255.0", "iroute"), ("Disable", "disable"), ("PUSH-RESET", "push-reset"),
    ("Ifconfig-Push 198.19.0.5 255.255.255.0", "ifconfig-push"), ("setenv opt DISABLE", "disable"),
    ("VERIFY-CLIENT-CERT none", "verify-client-cert"),
])
def test_a_security_line_spelt_in_another_case_refuses_the_client(line, meant):
    """compat47: names are matched exactly, as 2.6 (streq): `IROUTE` was applied here and is
    unknown to 2.6, which skips it and lets the client in -- a `DISABLE` too. Refused, naming
    the line and the spelling 2.6 takes."""
    text = _refused(line)
    assert f": OpenVPN 2.6 matches directive names exactly" in text and f"write `{meant}`" in text, text


@pytest.mark.parametrize("line", ["PING 10", "Comp-Lzo no", "ROUTE 198.18.9.0 255.255.255.0", "SETENV opt disable",
                                  "setenv OPT disable"])
def test_another_line_spelt_in_another_case_is_skipped_as_26_skips_it(line, caplog):
    """compat47: `PING 10` is unknown to 2.6 (skipped, the client connected); ours applied it."""
    c = parse_ccd("# alice\n" + line + "\n", PATH)
    assert [n for n, _, _ in c.skipped] == [2] and c.ping is None and c.comp is None and not c.disable


@pytest.mark.parametrize("line,meant,odd", [
    ("disable\xa0", "disable", "U+00A0"), ("\xa0disable", "disable", "U+00A0"),
    ("DISABLE\u2028", "disable", "U+2028"), ("iroute\xa0 198.18.9.0 255.255.255.0", "iroute", "U+00A0"),
    ("push-reset\ufeff", "push-reset", "U+FEFF"), ("setenv opt disable\xa0", "disable", "U+00A0"),
])
def test_a_security_line_with_a_look_alike_blank_refuses_the_client(line, meant, odd):
    """review49d: since lexdiff49 a U+00A0 is text, as 2.6 reads it, so `disable<U+00A0>` (Notepad,
    a web page) is an unknown name that 2.6 skips, letting the client in; the old lexer stripped it
    and disabled the client. Refused, naming the line, the spelling 2.6 takes and the character."""
    text = _refused(line)
    assert f"write `{meant}`" in text and odd in text, text


@pytest.mark.parametrize("line", ["echo\xa0 x", "dis\xa0able", "ping\xa0 10"])
def test_another_line_with_a_look_alike_blank_is_skipped_as_26_skips_it(line):
    c = parse_ccd("# alice\n" + line + "\n", PATH)
    assert [n for n, _, _ in c.skipped] == [2] and c.ping is None and not c.disable
