"""OpenVPN config parsing: real-world profiles parse to the settings a user expects, and every
problem is reported as `file:line: directive: why` (all of them at once)."""
from __future__ import annotations

import datetime
import os
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.openvpn import keyfiles
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.config import (DEFAULT_CIPHERS, ConfigErrors, Remote, load_config, parse_ccd,
                                       parse_config, render_options)

# The console script installed beside the interpreter running the tests (the project venv).
CLI = os.path.join(os.path.dirname(sys.executable), "vpn-appliance")
STATIC_KEY = keyfiles.generate_static_key()
FAKE_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"


def _errors(exc: ConfigError) -> list[ConfigError]:
    """One error is raised as itself, several as ConfigErrors: flatten both."""
    return list(getattr(exc, "errors", [exc]))


def _no_files(path: str) -> bytes:
    raise FileNotFoundError(2, "No such file or directory", path)


# ------------------------------------------------------------------ eduVPN-style client profile
EDUVPN = f"""\
# Produced by eduVPN server
dev tun
client
nobind
remote-cert-tls server
verb 3
server-poll-timeout 10
tls-version-min 1.3
data-ciphers AES-256-GCM:CHACHA20-POLY1305
remote vpn.example.org 1194 udp
remote vpn.example.org 1194 tcp-client
remote vpn6.example.org 1195 udp6
remote vpn.example.org
auth-user-pass creds.txt
<ca>
{FAKE_PEM}
</ca>
<cert>
-----BEGIN CERTIFICATE-----
MIIC
-----END CERTIFICATE-----
</cert>
<key>
-----BEGIN PRIVATE KEY-----
MIIE
-----END PRIVATE KEY-----
</key>
<tls-crypt>
{STATIC_KEY}</tls-crypt>
"""


def test_eduvpn_profile_parses_to_expected_settings():
    calls = []

    def read_file(p: str) -> bytes:
        calls.append(p)
        return b"alice\ns3cret\n"

    o = parse_config(EDUVPN, "/home/u/eduvpn.ovpn", read_file)
    assert o.role == "client" and o.client and o.pull and o.tls_client
    assert o.remotes == [Remote("vpn.example.org", 1194, "udp", ""), Remote("vpn.example.org", 1194, "tcp", ""),
                         Remote("vpn6.example.org", 1195, "udp", "6"), Remote("vpn.example.org", 1194, "udp")]
    assert o.remote_cert_tls == "server"
    assert o.verb == 3
    assert o.tls_version_min == "1.3"
    assert o.server_poll_timeout == 10.0
    assert o.data_ciphers == ["AES-256-GCM", "CHACHA20-POLY1305"]
    assert o.ca == (FAKE_PEM + "\n").encode()
    assert o.cert.startswith(b"-----BEGIN CERTIFICATE-----\nMIIC\n")
    assert o.key.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert keyfiles.parse_static_key(o.tls_crypt) == keyfiles.parse_static_key(STATIC_KEY)
    assert o.auth_user_pass == ("alice", "s3cret")
    assert o.auth_user_pass_required
    assert calls == ["/home/u/creds.txt"]
    assert o.source["verb"] == ("/home/u/eduvpn.ovpn", 6)
    assert o.source["remotes"] == ("/home/u/eduvpn.ovpn", 10)


# ------------------------------------------------------------------ OpenVPN 2.6 sample server.conf style
SERVER = """\
port 1194
proto udp
dev tun
ca ca.crt
cert server.crt
key server.key  # This file should be kept secret
dh none
topology subnet
server 198.19.0.0 255.255.255.0
ifconfig-pool-persist /var/log/openvpn/ipp.txt
push "route 198.19.1.0 255.255.255.0"
push "dhcp-option DNS 198.19.0.1"
client-to-client
keepalive 10 120
tls-crypt ta.key
data-ciphers AES-256-GCM:AES-128-GCM:?CHACHA20-POLY1305
max-clients 100
user nobody
group nogroup
persist-key
persist-tun
status /var/log/openvpn/openvpn-status.log
verb 3
explicit-exit-notify 1
"""


def _server_files(p: str) -> bytes:
    name = os.path.basename(p)
    return STATIC_KEY.encode() if name == "ta.key" else f"PEM of {name}".encode()


def test_sample_server_conf_parses():
    o = parse_config(SERVER, "/etc/openvpn/server/server.conf", _server_files)
    assert o.role == "server" and o.mode == "server" and o.tls_server
    assert o.port == 1194 and o.proto == "udp" and o.dev == "tun"
    assert o.server == ("198.19.0.0", "255.255.255.0")
    assert o.topology == "subnet"
    assert o.push == ["route 198.19.1.0 255.255.255.0", "dhcp-option DNS 198.19.0.1"]
    assert o.client_to_client
    assert o.keepalive == (10, 120)
    # A server applies keepalive as ping 10 / ping-restart 2*120 (OpenVPN doubles it on the server).
    assert (o.ping, o.ping_restart) == (10, 240)
    assert o.ca == b"PEM of ca.crt" and o.cert == b"PEM of server.crt" and o.key == b"PEM of server.key"
    assert o.tls_crypt == STATIC_KEY
    assert o.data_ciphers == ["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"]
    assert o.max_clients == 100
    # dh and persist-key have no effect here: each is a note saying why, not a field nobody
    # reads. persist-tun decides whether a reconnect runs the down/up side. `status` is applied
    # (issue 12): the pump writes the file.
    for d in ("dh", "persist-key"):
        assert any(f": {d}: accepted, has no effect here: " in n for n in o.notes), (d, o.notes)
    assert o.persist_tun
    assert o.status is not None and o.status[1] > 0


def test_relative_files_resolved_against_config_directory():
    seen = []

    def read_file(p: str) -> bytes:
        seen.append(p)
        return b"x"

    text = "client\ndev tun\nremote 198.18.0.1\nca sub/ca.crt\ncert /abs/c.crt\nkey ../k.key\n"
    parse_config(text, "/etc/openvpn/client/profile.conf", read_file)
    assert seen == ["/etc/openvpn/client/sub/ca.crt", "/abs/c.crt", "/etc/openvpn/client/../k.key"]


def test_unreadable_file_is_a_located_error():
    text = "client\ndev tun\nremote 198.18.0.1\nca missing.crt\n"
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "/cfg/p.ovpn", _no_files)
    msgs = [str(e) for e in _errors(ei.value)]
    assert any(m.startswith("/cfg/p.ovpn:4: ca: cannot read missing.crt") for m in msgs), msgs


# ------------------------------------------------------------------ errors
GOOD_CLIENT = "client\ndev tun\nremote 198.18.0.1 1194\n<ca>\n</ca>\n"  # 5 lines
GOOD_LINES = GOOD_CLIENT.count("\n")


@pytest.mark.parametrize("line, directive, why", [
    ("frobnicate 1", "frobnicate", "unknown"),
    ("dev null", "dev", "not supported"),
    ("dev-type foo", "dev-type", "only tun and tap"),
    ("comp-lzo maybe", "comp-lzo", "yes or adaptive"),
    ("compress snappy", "compress", "snappy"),
    ("allow-compression yes", "allow-compression", "VORACLE"),
    ("up script.sh", "up", "no such file"),
    ("secret static.key", "secret", "static-key"),
    ("verb", "verb", "argument"),
    ("verb 3 4", "verb", "argument"),
    ("port abc", "port", "number"),
    ("port 70000", "port", "range"),
    ("remote 198.18.0.2 https", "remote", "number"),
    ("verify-x509-name \"CN=x", "verify-x509-name", "quote"),
    ("verify-x509-name 'CN=x", "verify-x509-name", "quote"),
    ("cipher BF-ECB", "cipher", "cipher"),
    ("remote-cert-tls both", "remote-cert-tls", "server or client"),
    ("tls-version-min 0.9", "tls-version-min", "version"),
    ("auth MD5", "auth", "digest"),
    ("keepalive 10 5", "keepalive", "twice"),
    ("server-ipv6 not-a-network", "server-ipv6", "IPv6"),
    ("route 10.0.0.300", "route", "IPv4"),
    ("--plugin x.so", "plugin", "plugin"),
])
def test_each_error_names_file_line_directive_and_why(line, directive, why):
    text = GOOD_CLIENT + line + "\n"
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "/p/c.ovpn", _no_files)
    errs = _errors(ei.value)
    assert len(errs) == 1, [str(e) for e in errs]
    e = errs[0]
    prefix = f"/p/c.ovpn:{GOOD_LINES + 1}: {directive}: "
    assert str(e).startswith(prefix), str(e)
    assert why.lower() in str(e)[len(prefix):].lower(), str(e)
    assert (e.path, e.line, e.directive) == ("/p/c.ovpn", GOOD_LINES + 1, directive)


def test_good_client_base_is_valid():
    o = parse_config(GOOD_CLIENT, "/p/c.ovpn", _no_files)
    assert o.remotes == [Remote("198.18.0.1", 1194, "udp")] and o.ca == b"\n"


def test_connection_block_beside_a_remote_line_is_refused_at_that_line():
    """OpenVPN 2.6 would use the block and drop the remote line silently (test_connection_blocks.py)."""
    text = GOOD_CLIENT + "<connection>\nremote 198.18.0.9 1194\n</connection>\nverb 4\n"
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "/p/c.ovpn", _no_files)
    errs = _errors(ei.value)
    line = GOOD_CLIENT.splitlines().index("remote 198.18.0.1 1194") + 1
    assert [str(e) for e in errs][0].startswith(f"/p/c.ovpn:{line}: remote: beside <connection> blocks")
    assert len(errs) == 1


def test_unclosed_inline_block_reported_at_its_start():
    text = GOOD_CLIENT + "verb 3\n<cert>\n-----BEGIN CERTIFICATE-----\nabc\n"
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "/p/c.ovpn", _no_files)
    msgs = [str(e) for e in _errors(ei.value)]
    assert any(m.startswith(f"/p/c.ovpn:{GOOD_LINES + 2}: cert: ") and "not closed" in m for m in msgs), msgs


def test_tls_auth_and_tls_crypt_together():
    text = GOOD_CLIENT + f"<tls-auth>\n{STATIC_KEY}</tls-auth>\nkey-direction 1\n<tls-crypt>\n{STATIC_KEY}</tls-crypt>\n"
    crypt_line = text.splitlines().index("<tls-crypt>") + 1
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "/p/c.ovpn", _no_files)
    errs = _errors(ei.value)
    assert len(errs) == 1
    assert str(errs[0]).startswith(f"/p/c.ovpn:{crypt_line}: tls-crypt: cannot be combined with tls-auth")


@pytest.mark.parametrize("lines, remote_port, local_port", [
    ("", 1194, 1194), ("rport 1195", 1195, 1194), ("port 1195\nrport 1196", 1196, 1195),
    ("rport 1196\nport 1195", 1195, 1195), ("lport 1195\nport 1196", 1196, 1196),
    ("port 1196\nlport 1195", 1196, 1195), ("lport 1195\nrport 1196", 1196, 1195),
])
def test_the_local_port_is_the_last_port_or_lport_as_2_6_sets_it(lines, remote_port, local_port):
    """compat50: options.c sets ce.local_port from `port` and `lport`, ce.remote_port from `port`
    and `rport`, the last line winning; a <connection> block starts from the profile's and sets its
    own (tests/interop/test_client_local_bind_vs_openvpn.py: where Debian's and ours listen and send from)."""
    o = parse_config("dev tun\nserver 198.18.61.0 255.255.255.0\ndh none\nca c\ncert c\nkey k\n" + lines + "\n",
                     "/p/s.conf", lambda p: b"x")
    assert (o.port, o.local_port) == (remote_port, local_port)
    c = parse_config(f"client\ndev tun\nca c\ncert c\nkey k\n{lines}\n<connection>\nremote 198.18.60.9\n"
                     "lport 1197\n</connection>\n<connection>\nremote 198.18.60.10\n</connection>\n",
                     "/p/c.ovpn", lambda p: b"x")
    assert [(r.port, r.entry.local_port if r.entry else c.local_port) for r in c.remotes] == \
        [(remote_port, 1197), (remote_port, local_port)]


@pytest.mark.parametrize("before, after, named", [
    ("port 1195\nlport 1196", "lport 1196\nport 1195", ["port"]),      # the same lines, another order
    ("port 1195", "port 1196", ["port"]), ("lport 1195", "lport 1196", ["lport"]),
    # review50e: nothing listened on moves, nothing is said (each was "changed; takes effect at restart")
    ("port 1194", "port 1194\nrport 1200", []), ("", "lport 1194", []),
    ("lport 1195", "lport 1195\nport 1196\nlport 1195", []),
])
def test_a_reload_that_moves_the_listening_port_is_told_once_and_keeps_it(before, after, named):
    """compat50: the port listened on is the last port/lport line's; a reload cannot move the socket,
    so a change -- a reordering too -- is said once, at the line that sets it, and the old kept."""
    from appliance.gateway.ops import restart_only_changes
    base = "dev tun\nserver 198.18.61.0 255.255.255.0\ndh none\nca c\ncert c\nkey k\n"
    old, new = (parse_config(base + t + "\n", "/p/s.conf", lambda p: b"x") for t in (before, after))
    warnings = restart_only_changes(old, new)
    assert [w.split(": ")[1] for w in warnings] == named, warnings
    assert (new.port, new.local_port) == (old.port, old.local_port)


def test_a_servers_shared_key_beside_tls_crypt_v2_is_noted_at_its_line():
    """compat50: taken, as 2.6 takes it; the note says who gets in with the shared key and which of
    tls-crypt-v2's checks they skip (in a client the mix stays refused: test_directive_values_vs_openvpn)."""
    text = ("dev tun\nserver 198.18.61.0 255.255.255.0\ntls-auth ta.key 0\ndh none\nca ca.crt\n"
            "cert s.crt\nkey s.key\ntls-crypt-v2 v2.key force-cookie\n")
    o = parse_config(text, "/p/s.conf", lambda p: b"x")
    assert o.tls_auth and o.tls_crypt_v2 and o.tls_crypt_v2_force_cookie
    assert any(n.startswith("/p/s.conf:3: tls-auth: beside tls-crypt-v2: clients with this shared key get in "
                            "without a key of their own") for n in o.notes), o.notes


@pytest.mark.parametrize("text, directive", [
    ("client\ndev tun\n<ca>\nX\n</ca>\n", "remote"),
    ("client\ndev tun\nremote 198.18.0.1\nverb 3\n", "ca"),
    # (`mode server` without `server` or a pool is a server as 2.6's: addresses from ccd only;
    # `dev` is needed, as 2.6 needs it)
    ("tls-server\nmode server\ndev tun\ndh none\n<ca>\nX\n</ca>\n", "cert"),
])
def test_missing_directive_is_not_blamed_on_an_unrelated_line(text, directive):
    """Nothing to point at: the file is named, then the missing directive and the reason."""
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "/p/c.ovpn", _no_files)
    errs = _errors(ei.value)
    assert len(errs) == 1, [str(e) for e in errs]
    assert str(errs[0]).startswith(f"/p/c.ovpn: {directive}: "), str(errs[0])


@pytest.mark.parametrize("present, missing", [("cert", "key"), ("key", "cert")])
def test_cert_without_key_and_key_without_cert(present, missing):
    text = GOOD_CLIENT + f"verb 3\n<{present}>\nX\n</{present}>\n"
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "/p/c.ovpn", _no_files)
    errs = _errors(ei.value)
    assert len(errs) == 1
    assert str(errs[0]).startswith(f"/p/c.ovpn:{GOOD_LINES + 2}: {missing}: "), str(errs[0])
    assert "together" in str(errs[0])


def test_several_errors_reported_together_in_file_order():
    text = ("client\ndev tun\nremote 198.18.0.1\n<ca>\n</ca>\n"
            "dev null\n"         # 6
            "comp-lzo maybe\n"   # 7
            "verb 3\n"           # 8 ok
            "up ./up.sh\n"       # 9
            "port abc\n"         # 10
            "bogus-directive\n")  # 11
    with pytest.raises(ConfigErrors) as ei:
        parse_config(text, "/p/c.ovpn", _no_files)
    errs = ei.value.errors
    assert [(e.line, e.directive) for e in errs] == [
        (6, "dev"), (7, "comp-lzo"), (9, "up"), (10, "port"), (11, "bogus-directive")]
    lines = str(ei.value).splitlines()
    assert len(lines) == 5
    assert all(ln.startswith("/p/c.ovpn:") for ln in lines)
    # A ConfigErrors is a ConfigError, so callers catching one type see all of them.
    assert isinstance(ei.value, ConfigError)


def test_server_errors_cert_and_client_combined():
    text = "client\ndev tun\nserver 198.19.0.0 255.255.255.0\nca ca.crt\n"
    with pytest.raises(ConfigErrors) as ei:
        parse_config(text, "/p/s.conf", lambda p: b"x")
    dirs = {e.directive for e in ei.value.errors}
    assert {"client", "cert"} <= dirs


# ------------------------------------------------------------------ notes, quoting, prefixes
def test_ignore_unknown_option_applies_to_following_lines_only():
    text = GOOD_CLIENT + "ignore-unknown-option foo bar-baz\nfoo bar\nbar-baz\n"
    o = parse_config(text, "/p/c.ovpn", _no_files)
    assert any(n.startswith(f"/p/c.ovpn:{GOOD_LINES + 2}: foo: ") for n in o.notes), o.notes
    assert any(n.startswith(f"/p/c.ovpn:{GOOD_LINES + 3}: bar-baz: ") for n in o.notes), o.notes
    with pytest.raises(ConfigError) as ei:
        parse_config(GOOD_CLIENT + "foo bar\nignore-unknown-option foo\n", "/p/c.ovpn", _no_files)
    assert str(_errors(ei.value)[0]).startswith(f"/p/c.ovpn:{GOOD_LINES + 1}: foo: ")


def test_setenv_opt_marks_directive_optional():
    o = parse_config(GOOD_CLIENT + "setenv opt foo bar\nsetenv opt verb 5\nsetenv FOO bar\n", "/p/c.ovpn", _no_files)
    assert any(f":{GOOD_LINES + 1}: foo:" in n for n in o.notes), o.notes
    assert o.verb == 5  # a known directive behind `setenv opt` still applies


@pytest.mark.parametrize("arg, expect", [
    ('"CN=a b"', "CN=a b"),
    ("'CN=a b'", "CN=a b"),
    (r'"CN=a \"b\" c"', 'CN=a "b" c'),
    (r'"C:\\dir\\x"', r"C:\dir\x"),
    (r"CN=a\ b", "CN=a b"),
    (r"'CN=a\b'", r"CN=a\b"),   # single quotes take backslashes literally
    ('"CN=a;b#c"', "CN=a;b#c"),  # comment characters inside quotes are data
])
def test_quoting(arg, expect):
    o = parse_config(GOOD_CLIENT + f"verify-x509-name {arg} name\n", "/p/c.ovpn", _no_files)
    assert o.verify_x509_name == (expect, "name")


def test_comments_and_blank_lines_and_dash_prefix():
    text = "# comment\n; other comment\n\n   \n--client\n--remote 198.18.0.1 1195 --\n<ca>\n</ca>\n--dev tun\n  --verb 4\n"
    text = text.replace("1195 --", "1195")
    o = parse_config(text, "/p/c.ovpn", _no_files)
    assert o.client and o.verb == 4 and o.remotes == [Remote("198.18.0.1", 1195, "udp")]
    assert o.source["verb"] == ("/p/c.ovpn", 10)


def test_trailing_comment_after_arguments():
    o = parse_config(GOOD_CLIENT + "verb 4 # chatty\n", "/p/c.ovpn", _no_files)
    assert o.verb == 4


def test_cipher_is_not_appended_to_data_ciphers():
    # as 2.6.14 (test_parity32.py): a client's `cipher` is left out of negotiation
    o = parse_config(GOOD_CLIENT + "cipher AES-128-CBC\n", "/p/c.ovpn", _no_files)
    assert o.cipher == "AES-128-CBC"
    assert o.data_ciphers == DEFAULT_CIPHERS
    o2 = parse_config(GOOD_CLIENT + "cipher aes-256-gcm\n", "/p/c.ovpn", _no_files)
    assert o2.data_ciphers == DEFAULT_CIPHERS


def test_client_keepalive_expansion():
    o = parse_config(GOOD_CLIENT + "keepalive 10 60\n", "/p/c.ovpn", _no_files)
    assert (o.ping, o.ping_restart) == (10, 60)


def test_global_port_and_proto_apply_to_remotes_without_them():
    text = "client\ndev tun\nport 1195\nproto tcp-client\nremote 198.18.0.1\nremote 198.18.0.2 443 udp\n<ca>\nX\n</ca>\n"
    o = parse_config(text, "/p/c.ovpn", _no_files)
    assert o.remotes == [Remote("198.18.0.1", 1195, "tcp"), Remote("198.18.0.2", 443, "udp", "")]


def test_render_options_shows_source_and_defaults():
    text = GOOD_CLIENT + "verb 3\nremote-cert-tls server\n"
    o = parse_config(text, "/p/c.ovpn", _no_files)
    out = render_options(o).splitlines()
    assert f"verb = 3   # /p/c.ovpn:{GOOD_LINES + 1}" in out
    assert f"remote-cert-tls = server   # /p/c.ovpn:{GOOD_LINES + 2}" in out
    assert "tun-mtu = 1500   # (default)" in out
    assert "remotes = ['198.18.0.1 1194 udp']   # /p/c.ovpn:3" in out
    ca = [ln for ln in out if ln.startswith("ca = ")]
    assert ca == ["ca = <1 bytes>   # /p/c.ovpn:4"]  # secrets summarised, never printed


def test_render_never_prints_credentials():
    text = GOOD_CLIENT + "auth-user-pass up.txt\n"
    o = parse_config(text, "/p/c.ovpn", lambda p: b"bob\nhunter2\n")
    r = render_options(o)
    assert "hunter2" not in r and "'bob'" in r


def test_load_config_reads_file_and_reports_missing(tmp_path):
    p = tmp_path / "c.ovpn"
    p.write_text(GOOD_CLIENT + "verb 2\n")
    assert load_config(str(p)).verb == 2
    with pytest.raises(ConfigError) as ei:
        load_config(str(tmp_path / "nope.ovpn"))
    assert str(ei.value).startswith(f"{tmp_path / 'nope.ovpn'}: ")


# ------------------------------------------------------------------ client-config-dir files
def test_parse_ccd():
    c = parse_ccd("# ccd\nifconfig-push 198.19.0.10 255.255.255.0\niroute 198.19.5.0 255.255.255.0\n"
                  "iroute 198.19.6.1\npush-reset\npush \"route 198.19.7.0 255.255.255.0\"\n", "/ccd/alice")
    assert c.ifconfig_push == ("198.19.0.10", "255.255.255.0")
    assert c.iroutes == [("198.19.5.0", "255.255.255.0"), ("198.19.6.1", "255.255.255.255")]
    assert c.push == ["route 198.19.7.0 255.255.255.0"] and c.push_reset and not c.disable
    assert parse_ccd("disable\n").disable


def test_parse_ccd_errors_are_located():
    with pytest.raises(ConfigErrors) as ei:
        parse_ccd("ifconfig-push 198.19.0.10 255.255.255.0\ninactive 3\npush \"unterminated\n", "/ccd/bob")
    msgs = [str(e) for e in ei.value.errors]
    assert msgs[0].startswith("/ccd/bob:2: inactive: ")
    assert msgs[1].startswith("/ccd/bob:3: push: ") and "quote" in msgs[1]


# ------------------------------------------------------------------ CLI end to end
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_cert(c: x509.Certificate) -> str:
    return c.public_bytes(serialization.Encoding.PEM).decode()


def _pem_key(k) -> str:
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def pki():
    """An EC CA with a server and a client certificate (keyUsage/EKU as OpenVPN expects)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Test CA")).issuer_name(_name("Test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, eku):
        k = ec.generate_private_key(ec.SECP256R1())
        c = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
             .public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(True, False, False, False, True, False, False, False, False), critical=True)
             .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
             .sign(ca_key, hashes.SHA256()))
        return _pem_cert(c), _pem_key(k)

    scert, skey = leaf("server", ExtendedKeyUsageOID.SERVER_AUTH)
    ccert, ckey = leaf("client", ExtendedKeyUsageOID.CLIENT_AUTH)
    return {"ca": _pem_cert(ca), "server_cert": scert, "server_key": skey, "client_cert": ccert, "client_key": ckey}


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    assert os.path.exists(CLI), f"{CLI} is missing: install the project into the venv"
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=30)


def test_cli_check_good_client_profile(tmp_path, pki):
    (tmp_path / "ta.key").write_text(STATIC_KEY)
    prof = tmp_path / "client.ovpn"
    prof.write_text("client\ndev tun\nremote 198.18.0.1 1194 udp\nremote-cert-tls server\nverb 3\n"
                    "tls-crypt ta.key\n"
                    f"<ca>\n{pki['ca']}</ca>\n<cert>\n{pki['client_cert']}</cert>\n<key>\n{pki['client_key']}</key>\n")
    r = _run_cli("check", str(prof))
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert f"verb = 3   # {prof}:5" in out
    assert f"remotes = ['198.18.0.1 1194 udp']   # {prof}:3" in out
    assert "BEGIN" not in r.stdout  # key material is not echoed


def test_cli_check_good_server_config(tmp_path, pki):
    for n, v in (("ca.crt", pki["ca"]), ("server.crt", pki["server_cert"]), ("server.key", pki["server_key"]),
                 ("ta.key", STATIC_KEY)):
        (tmp_path / n).write_text(v)
    conf = tmp_path / "server.conf"
    conf.write_text(SERVER.replace("/var/log/openvpn/", ""))
    r = _run_cli("check", str(conf))
    assert r.returncode == 0, r.stderr
    assert "role = server" in r.stdout
    assert "server = ('198.19.0.0', '255.255.255.0')" in r.stdout


def test_cli_check_bad_config_exits_2_with_located_errors(tmp_path, pki):
    prof = tmp_path / "bad.ovpn"
    prof.write_text("client\nremote 198.18.0.1\ndev null\ncomp-lzo maybe\n"
                    f"<ca>\n{pki['ca']}</ca>\n")
    r = _run_cli("check", str(prof))
    assert r.returncode == 2
    errs = r.stderr.strip().splitlines()
    assert errs[0].startswith(f"{prof}:3: dev: "), r.stderr
    assert errs[1].startswith(f"{prof}:4: comp-lzo: "), r.stderr
    assert r.stdout == ""


def test_cli_check_bad_key_material_exits_2(tmp_path, pki):
    """Syntax is fine but the key does not match the certificate: `check` still catches it."""
    prof = tmp_path / "mismatch.ovpn"
    other_key = _pem_key(ec.generate_private_key(ec.SECP256R1()))
    prof.write_text("client\ndev tun\nremote 198.18.0.1\n"
                    f"<ca>\n{pki['ca']}</ca>\n<cert>\n{pki['client_cert']}</cert>\n<key>\n{other_key}</key>\n")
    r = _run_cli("check", str(prof))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.strip(), "a reason must be printed"
    assert "Traceback" not in r.stderr



def test_a_remote_lines_own_protocol_family_wins_over_the_profiles():
    """`remote h p udp6` only IPv6, `tcp4` only IPv4, a bare `udp` either family (as OpenVPN's
    per-remote proto replaces the profile-wide one); a remote without a protocol takes `proto`'s."""
    text = ("client\ndev tun\nproto udp4\nremote 198.18.0.1\nremote v6.test 443 udp6\nremote v4.test 443 tcp4\n"
            "remote any.test 1194 udp\n<ca>\nX\n</ca>\n")
    o = parse_config(text, "/p/c.ovpn", _no_files)
    assert [(r.host, r.proto, o.family_of(r)) for r in o.remotes] == [
        ("198.18.0.1", "udp", "4"), ("v6.test", "udp", "6"), ("v4.test", "tcp", "4"), ("any.test", "udp", None)]


@pytest.mark.parametrize("line, directive", [
    ('push "route 198.18.9.0 255.255.255.0"', "push"), ("client-to-client", "client-to-client"),
    ("max-clients 5", "max-clients"), ("duplicate-cn", "duplicate-cn"), ("connect-freq 5 10", "connect-freq"),
    ("connect-freq-initial 5 10", "connect-freq-initial"), ("ifconfig-pool 198.19.0.2 198.19.0.9", "ifconfig-pool"),
    ("ifconfig-pool-persist ipp.txt", "ifconfig-pool-persist"), ("management-client-auth", "management-client-auth"),
])
def test_server_directives_in_a_client_config_are_errors_at_their_line(line, directive):
    """Read and meaning nothing on a client (OpenVPN 2.6 refuses most: "requires --mode server"):
    refused at their line, never silently ignored."""
    with pytest.raises(ConfigError) as ei:
        parse_config(GOOD_CLIENT + line + "\n", "/p/c.ovpn", _no_files)
    errs = [str(e) for e in _errors(ei.value)]
    assert any(e.startswith(f"/p/c.ovpn:{GOOD_LINES + 1}: {directive}: ") for e in errs), errs


def test_auth_user_pass_file_lines_end_at_lf_only():
    """OpenVPN reads the username and password lines with fgets: a U+2028 (or VT, FF, U+0085) is
    part of the username, not the end of its line (str.splitlines made its tail the password)."""
    text = GOOD_CLIENT + "auth-user-pass up.txt\n"
    o = parse_config(text, "/p/c.ovpn", lambda p: "bob\u2028x\x0cy\r\nhunter2\r\n".encode())
    assert o.auth_user_pass == ("bob\u2028x\x0cy", "hunter2")
    o = parse_config(GOOD_CLIENT + "<auth-user-pass>\nann\x85e\npw\n</auth-user-pass>\n", "/p/c.ovpn", lambda p: b"")
    assert o.auth_user_pass == ("ann\x85e", "pw")


def test_auth_nocache_keeps_the_file_not_its_credentials():
    """auth-nocache: the file is read at parse time (a bad one is refused at its line) but its
    username/password are not kept; the gateway reads the file again at each use
    (gateway/credentials.py). Without it, or inline, the credentials stay in the options."""
    read = lambda p: b"bob\nhunter2\n"  # noqa: E731
    o = parse_config(GOOD_CLIENT + "auth-user-pass up.txt\nauth-nocache\n", "/p/c.ovpn", read)
    assert (o.auth_nocache, o.auth_user_pass, o.auth_user_pass_file) == (True, None, "/p/up.txt")
    assert o.auth_user_pass_required
    o = parse_config(GOOD_CLIENT + "auth-nocache\nauth-user-pass up.txt\n", "/p/c.ovpn", read)
    assert o.auth_user_pass is None, "the order of the two lines mattered"
    o = parse_config(GOOD_CLIENT + "auth-user-pass up.txt\n", "/p/c.ovpn", read)
    assert (o.auth_nocache, o.auth_user_pass, o.auth_user_pass_file) == (False, ("bob", "hunter2"), "/p/up.txt")
    o = parse_config(GOOD_CLIENT + "auth-nocache\n<auth-user-pass>\nann\npw\n</auth-user-pass>\n", "/p/c.ovpn", read)
    assert (o.auth_user_pass, o.auth_user_pass_file) == (("ann", "pw"), None)
    with pytest.raises(ConfigError) as ei:
        parse_config(GOOD_CLIENT + "auth-nocache\nauth-user-pass up.txt\n", "/p/c.ovpn", lambda p: b"\npw\n")
    assert f"/p/c.ovpn:{GOOD_LINES + 2}: auth-user-pass: the file must hold the username" in str(ei.value)


def test_log_log_append_and_writepid_are_kept_for_the_host_run():
    o = parse_config(GOOD_CLIENT + "log a.log\nlog-append b.log\nwritepid run/c.pid\n", "/p/c.ovpn", _no_files)
    assert o.log_file == ("/p/a.log", False), "not the first log file (OpenVPN 2.6 keeps the first)"
    assert o.writepid == "/p/run/c.pid"
    assert any("a log file was named before" in n for n in o.notes)
    o = parse_config(GOOD_CLIENT + "log-append /var/log/x.log\n", "/p/c.ovpn", _no_files)
    assert o.log_file == ("/var/log/x.log", True)


@pytest.mark.parametrize("line", ["remote 198.18.0.9", "nobind", "pull", "redirect-gateway def1", "route-delay 5",
                                  "auth-user-pass", "up-delay", "allow-recursive-routing"])
def test_client_directives_openvpn_refuses_in_a_server_config_fail_at_their_line(line):
    """Accepted, they did nothing in a server config (no remote dialled, no credentials sent, no
    gateway redirected); Debian's OpenVPN 2.6.14 refuses each of them there."""
    text = ("mode server\ntls-server\ndev tun\ntopology subnet\nserver 198.19.0.0 255.255.255.0\n<ca>\nX\n</ca>\n"
            "cert s.crt\nkey s.key\ndh none\n" + line + "\nverb 3\n")
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "/p/s.conf", _no_files)
    at = text.splitlines().index(line) + 1
    msgs = [str(e) for e in _errors(ei.value)]
    assert f"/p/s.conf:{at}: {line.split()[0]}: cannot be used in a server config" in "\n".join(msgs), msgs
