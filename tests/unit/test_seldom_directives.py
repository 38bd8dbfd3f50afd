"""OpenVPN 2.6 directives that were "unknown" here (config/d_seldom.py): each is now applied,
accepted with the reason it has no effect (where 2.6 only warns, or does nothing on a tun device),
or refused at its line with the reason -- as checked against Debian's 2.6.14."""
from __future__ import annotations

import pytest

from appliance.openvpn.config import parse_config
from appliance.openvpn.config.table import TABLE
from appliance.openvpn.config.directives import Kind
from appliance.openvpn.session import Role
from appliance.openvpn.settings import session_config
from tests.unit.test_options_compat import BASE, _no_files, _one_error
from tests.unit.test_profile_lines_accepted import SERVER


def _parse(text: str, path: str = "/p/c.ovpn"):
    return parse_config(text, path, _no_files)


def _note(o, name: str) -> str:
    notes = [n for n in o.notes if f": {name}: " in n]
    assert len(notes) == 1, o.notes
    return notes[0]


@pytest.mark.parametrize("line,why", [
    ("max-routes 100", "the number of routes is unlimited"),
    ("max-routes", "the number of routes is unlimited"),
    ("engine", "OpenSSL engines are not used"),
    ("engine dynamic", "OpenSSL engines are not used"),
    ("providers legacy default", "old PKCS#12"),
    ("route-ipv6-gateway 2001:db8::1", "on a tun device"),
    ("preresolve", "as each remote is tried"),
    ("ip-remote-hint 198.18.0.1", "as each remote is tried"),
])
def test_lines_2_6_only_warns_about_are_accepted_with_the_reason(line, why):
    o = _parse(BASE + line + "\n")
    note = _note(o, line.split()[0])
    assert note.startswith("/p/c.ovpn:6: ") and why in note


@pytest.mark.parametrize("line,why", [
    ("max-routes 5 6", "expects 0 to 1 argument(s), got 2"),
    ("compat-names", "--compat-names was removed in OpenVPN 2.5. Update your configuration."),
    ("no-name-remapping", "--no-name-remapping was removed in OpenVPN 2.5"),
    ("providers legacy fips", "OpenSSL provider 'fips' is not available here"),
    ("route-ipv6-gateway foo", "route-ipv6-gateway parm 'foo' must be a valid address"),
    ("route-ipv6-gateway 10.0.0.1", "must be a valid address"),
    ("redirect-private bogus", "unknown --redirect-private flag: bogus"),
    ("max-packet-size big", "expected a number, got 'big'"),
    ("no-replay", "replay protection cannot be turned off here"),
    ("replay-persist /var/lib/rp", "replay state"),
    ("single-session", "not supported"),
    ("capath /nonexistent/certs", "/nonexistent/certs is not a readable directory"),
    ("client-nat snat 198.18.1.0 255.255.255.0", "expects 4 argument(s)"),
    ("management-query-proxy", "needs `management`"),
    ("peer-id 5", "is set by the server's push"),
    ("key-derivation tls-ekm", "is set by the server's push"),
    ("protocol-flags cc-exit tls-ekm", "is set by the server's push"),
    ("auth-token SESS_ID_x", "is set by the server's push"),
    ("auth-token-user dXNlcg==", "is set by the server's push"),
    ("push-continuation 1", "option 'push-continuation' cannot be used in this context"),
])
def test_refused_at_their_line_with_the_reason(line, why):
    e = _one_error(BASE + line + "\n")
    assert e.line == 6 and why in str(e), str(e)


def test_security_refusals_cannot_be_ignored_by_ignore_unknown_option():
    # Declared (refused, access): `ignore-unknown-option` / `setenv opt` cannot make them a note.
    for name in ("no-replay", "replay-persist", "single-session", "auth-token"):
        assert TABLE[name].kind is Kind.REFUSE and TABLE[name].access, name
    e = _one_error(BASE + "ignore-unknown-option no-replay\nno-replay\n")
    assert e.line == 7 and "replay protection" in str(e)
    e = _one_error(BASE + "setenv opt single-session\n")
    assert "not supported" in str(e)


def test_redirect_private_keeps_its_flags_client_only():
    o = _parse(BASE + "redirect-private local block-local\n")
    assert o.redirect_private == ["local", "block-local"] and o.redirect_gateway is None
    assert _parse(BASE + "redirect-private\n").redirect_private == []
    o = _parse(BASE + "redirect-gateway def1\nredirect-private ipv6\n")
    assert "flags are merged into one set" in _note(o, "redirect-private")
    with pytest.raises(Exception) as ei:
        _parse(SERVER + "redirect-private\n", "/p/s.conf")
    assert "redirect-private: cannot be used in a server config" in str(ei.value)


def test_max_packet_size_sets_mssfix_mtu_and_the_control_packet_size():
    o = _parse(BASE + "max-packet-size 1300\n")
    assert (o.mssfix, o.mssfix_mtu, o.tls_mtu) == (1300, True, 1300)
    assert session_config(o, Role.CLIENT).tls_mtu == 1300
    o = _parse(BASE + "max-packet-size 100\n")
    assert (o.mssfix, o.tls_mtu) == (100, 154) and "154 is used" in _note(o, "max-packet-size")
    o = _parse(BASE + "max-packet-size 9000\n")
    assert (o.mssfix, o.tls_mtu) == (9000, 2048)
    # A later mssfix replaces its mssfix, as in OpenVPN 2.6; the control packets keep its size.
    o = _parse(BASE + "max-packet-size 1300\nmssfix 1400\n")
    assert (o.mssfix, o.mssfix_mtu, o.tls_mtu) == (1400, False, 1300)
    assert _parse(BASE).tls_mtu == 1250


def test_ifconfig_push_constraint_is_a_server_directive():
    o = _parse(SERVER + "ifconfig-push-constraint 198.19.0.0 255.255.255.0\n", "/p/s.conf")
    assert o.ifconfig_push_constraint == ("198.19.0.0", "255.255.255.0")
    e = _one_error(BASE + "ifconfig-push-constraint 198.19.0.0 255.255.255.0\n")
    assert e.line == 6 and "is a server directive" in str(e)
    with pytest.raises(Exception) as ei:
        _parse(SERVER + "ifconfig-push-constraint 198.19.0.0 255.0.255.0\n", "/p/s.conf")
    assert "not a netmask" in str(ei.value)


@pytest.mark.parametrize("name", ["management-query-remote", "management-query-proxy"])
def test_management_queries_are_our_clients(name):
    o = _parse(BASE + f"management 127.0.0.1 7505\n{name}\n")
    assert getattr(o, name.replace("-", "_"))
    with pytest.raises(Exception) as ei:
        _parse(SERVER + f"management 127.0.0.1 7505\n{name}\n", "/p/s.conf")
    assert f"{name}: is served by our client only" in str(ei.value)
