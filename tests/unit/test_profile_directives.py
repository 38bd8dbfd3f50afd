"""Client-profile lines OpenVPN 2.6 takes that real profiles carry (eduVPN, providers, distro
examples): each is applied (as the same option pushed), accepted with the reason it changes
nothing here, or refused at its line naming what differs -- never "unknown directive"."""
from __future__ import annotations

import pytest

from appliance.openvpn.config import ConfigError, parse_config
from appliance.openvpn.keymethod import DnsServer, parse_push_reply_untrusted
from appliance.openvpn.profile_push import outside_ipv6_dropped, with_profile

BASE = "client\ndev tun\nremote 198.18.0.1\n<ca>\n</ca>\n"      # the lines below start at line 6


def _client(extra: str, path: str = "/etc/vpn/c.ovpn"):
    return parse_config(BASE + extra, path, read_file=lambda p: b"x")


def _error(extra: str, path: str = "/etc/vpn/c.ovpn") -> str:
    with pytest.raises(ConfigError) as e:
        _client(extra, path)
    return str(e.value)


# ------------------------------------------------------------------ accepted, no effect
@pytest.mark.parametrize("line", ["tun-ipv6", "disable-dco", "errors-to-stderr",
                                  "echo hello there", "route-gateway dhcp", "route-gateway 198.19.0.1",
                                  "compat-mode 2.6.0", "compat-mode 2.6.14", "compat-mode 2.7.0"])
def test_accepted_with_a_note_saying_why_it_changes_nothing(line):
    o = _client(line + "\n")
    name = line.split()[0]
    assert any(n.startswith(f"/etc/vpn/c.ovpn:6: {name}: accepted, has no effect here: ") for n in o.notes), o.notes


def test_daemon_and_syslog_name_the_log_as_the_first_of_them_does():
    """2.6 opens syslog under the name of the first daemon/syslog line; a second daemon line is
    ignored ("Multiple --daemon directives specified"); host/daemon.py applies them."""
    o = _client("syslog myvpn\ndaemon other\n")
    assert (o.syslog, o.daemon) == ("myvpn", "other")
    o = _client("daemon\n")
    assert (o.syslog, o.daemon) == ("openvpn", "openvpn")
    o = _client("daemon first\ndaemon second\nsyslog third\n")
    assert (o.syslog, o.daemon) == ("first", "first")
    assert any("daemon line came before" in n for n in o.notes), o.notes


@pytest.mark.parametrize("line, why", [
    ("tun-ipv6 yes", "/etc/vpn/c.ovpn:6: tun-ipv6: expects 0 argument(s), got 1"),
    ("route-gateway 198.19.0.1/24", "/etc/vpn/c.ovpn:6: route-gateway: gateway '198.19.0.1/24' must be an IPv4 address or dhcp"),
    ("compat-mode 2.6", "/etc/vpn/c.ovpn:6: compat-mode: cannot parse version number '2.6' (expects MAJOR.MINOR.PATCH)"),
    ("compat-mode 2.5.9", "/etc/vpn/c.ovpn:6: compat-mode: 2.5.9: below 2.6.0 OpenVPN allows and announces "
                          "compression, which this client does not; only compat-mode 2.6.0 or later is supported"),
    ("compat-mode 2.3.6", "/etc/vpn/c.ovpn:6: compat-mode: 2.3.6: below 2.3.7 OpenVPN allows TLS 1.0"),
    ("compat-mode 2.4.0 x", "/etc/vpn/c.ovpn:6: compat-mode: 2.4.0: below 2.6.0"),
    ("mark -1", "/etc/vpn/c.ovpn:6: mark: -1 out of range 0..4294967295"),
    ("mark 0x10", "/etc/vpn/c.ovpn:6: mark: expected a number, got '0x10'"),
    ("bind-dev a/b", "/etc/vpn/c.ovpn:6: bind-dev: 'a/b' is not a device name"),
    ("bind-dev sixteen-chars-xx", "/etc/vpn/c.ovpn:6: bind-dev: 'sixteen-chars-xx' is not a device name"),
])
def test_bad_arguments_and_unsupported_forms_fail_at_their_line(line, why):
    assert _error(line + "\n").startswith(why)


# ------------------------------------------------------------------ route-ipv6, route-metric, block-ipv6
def test_route_ipv6_lines_as_openvpn_reads_them():
    o = _client("route-ipv6 2001:db8:7::1/48\nroute-ipv6 2001:db8:8:: 2001:db8::1 20\n"
                "route-ipv6 2001:db8:9::/56 default default\nroute-ipv6 ::/0 net_gateway_ipv6\n")
    assert [tuple(r) for r in o.route_ipv6] == [("2001:db8:7::/48", None, None),          # host bits cleared
                                                 ("2001:db8:8::/64", "2001:db8::1", 20),    # a /64 without bits
                                                 ("2001:db8:9::/56", None, None), ("::/0", "net_gateway_ipv6", None)]


@pytest.mark.parametrize("args, why", [
    ("198.18.5.0/24", "network '198.18.5.0/24' must be an IPv6 address"),
    ("2001:db8::/129", "network '2001:db8::/129' must be an IPv6 address"),
    ("2001:db8::/+64", "network '2001:db8::/+64'"),
    ("2001:db8::/", "network '2001:db8::/'"),
    ("fe80::1%eth0/64", "network 'fe80::1%eth0/64'"),
    ("2001:db8::/32 gw", "the gateway is not an IPv6 address (nor net_gateway_ipv6): 'gw'"),
    ("2001:db8::/32 198.18.0.1", "the gateway is not an IPv6 address"),
    ("2001:db8::/32 default -1", "-1 out of range 0..4294967295"),
    ("2001:db8::/32 default 1 x", "expects 1 to 3 argument(s), got 4"),
])
def test_a_bad_route_ipv6_fails_at_its_line(args, why):
    err = _error(f"route-ipv6 {args}\n")
    assert err.startswith("/etc/vpn/c.ovpn:6: route-ipv6: ") and why in err, err


@pytest.mark.parametrize("line, why", [("route-metric", "expects 1 argument(s), got 0"),
                                       ("route-metric x", "expected a number, got 'x'"),
                                       ("route-metric -5", "-5 out of range"),
                                       ("block-ipv6 yes", "expects 0 argument(s), got 1")])
def test_bad_route_metric_and_block_ipv6_lines(line, why):
    assert _error(line + "\n").startswith(f"/etc/vpn/c.ovpn:6: {line.split()[0]}: {why}")


PUSH = "PUSH_REPLY,topology subnet,ifconfig 198.19.0.2 255.255.255.0,route 198.18.71.0 255.255.255.0"


def test_the_profiles_routes_go_with_the_pushed_ones_and_route_metric_fills_the_missing_metrics():
    o = _client("route-ipv6 2001:db8:7::/48\nroute-ipv6 2001:db8:8::/48 default 3\nroute-metric 50\n")
    pushed = parse_push_reply_untrusted(PUSH + ",route-ipv6 2001:db8:9::/48,route 198.18.72.0 255.255.255.0 "
                                        "vpn_gateway 9")
    p = with_profile(o, pushed)
    assert p.routes_ipv6 == [("2001:db8:7::/48", None, 50), ("2001:db8:8::/48", None, 3),   # the profile's first
                             ("2001:db8:9::/48", None, 50)]
    assert p.routes == [("198.18.71.0", "255.255.255.0", None, 50), ("198.18.72.0", "255.255.255.0", None, 9)]
    assert p.route_metric == 50
    assert pushed.routes_ipv6 == [("2001:db8:9::/48", None, None)]     # what the server said is kept as it said it


def test_a_pushed_route_metric_replaces_the_profiles():
    o = _client("route-ipv6 2001:db8:7::/48\nroute-metric 50\n")
    p = with_profile(o, parse_push_reply_untrusted(PUSH + ",route-metric 7"))
    assert p.route_metric == 7 and p.routes_ipv6 == [("2001:db8:7::/48", None, 7)]
    assert p.routes == [("198.18.71.0", "255.255.255.0", None, 7)]
    p0 = with_profile(o, parse_push_reply_untrusted(PUSH + ",route-metric 0"))      # 0: no default metric
    assert p0.route_metric is None and p0.routes_ipv6 == [("2001:db8:7::/48", None, None)]


def test_route_nopull_drops_the_servers_routes_not_the_profiles():
    o = _client("route-nopull\nroute-ipv6 2001:db8:7::/48\nblock-ipv6\nroute-metric 5\n")
    pushed = parse_push_reply_untrusted(PUSH + ",route-ipv6 2001:db8:9::/48,route-metric 99", route_nopull=True)
    p = with_profile(o, pushed)
    assert p.routes == [] and p.routes_ipv6 == [("2001:db8:7::/48", None, 5)] and p.block_ipv6


def test_block_ipv6_in_the_profile_holds_whatever_the_server_pushes():
    o = _client("block-ipv6\n")
    assert o.block_ipv6 and with_profile(o, parse_push_reply_untrusted(PUSH)).block_ipv6
    assert not with_profile(_client(""), parse_push_reply_untrusted(PUSH)).block_ipv6


def test_the_profiles_block_ipv6_is_not_lifted_by_a_pushed_net_gateway_ipv6_route():
    """A hostile server pushes `route-ipv6 2000::/3 net_gateway_ipv6`: more specific than the ::/1
    and 8000::/1 halves block-ipv6 puts into the TUN, it sent all global IPv6 out the pre-tunnel
    way, the leak the profile's block-ipv6 is there to prevent. Not installed (OpenVPN 2.6 takes
    no such gateway either); its routes into the tunnel and the profile's own lines stay."""
    o = _client("block-ipv6\nroute-ipv6 2001:db8:5::/48 net_gateway_ipv6\n")
    pushed = parse_push_reply_untrusted(PUSH + ",route-ipv6 2000::/3 net_gateway_ipv6,route-ipv6 2001:db8:9::/48")
    p = with_profile(o, pushed)
    assert p.block_ipv6
    assert p.routes_ipv6 == [("2001:db8:5::/48", "net_gateway_ipv6", None), ("2001:db8:9::/48", None, None)]
    assert any("2000::/3 net_gateway_ipv6" in i for i in p.ignored), p.ignored
    assert outside_ipv6_dropped(o, pushed) == ["2000::/3"]         # (the client's warning names it)
    # Without block-ipv6 the server's route is its call, as a pushed `route ... net_gateway` is.
    assert ("2000::/3", "net_gateway_ipv6", 5) in with_profile(_client("route-metric 5\n"), pushed).routes_ipv6


def test_a_profile_without_these_lines_passes_the_push_through_untouched():
    pushed = parse_push_reply_untrusted(PUSH)
    assert with_profile(_client(""), pushed) is pushed and with_profile(_client(""), None) is None


# ------------------------------------------------------------------ dns
def test_dns_lines_as_openvpn_26_reads_them():
    o = _client("dns server -1 address 198.18.0.53 [2001:db8::53]:5353\ndns server 1 address 198.18.1.53:54\n"
                "dns server 1 transport DoT\ndns server 1 sni dns.example\ndns server -1 dnssec optional\n"
                "dns server -1 resolve-domains corp.example\ndns search-domains a.example b.example\n"
                "dns search-domains a.example c.example\n")
    assert o.dns_servers == {-1: DnsServer([("198.18.0.53", 53), ("2001:db8::53", 5353)]),
                             1: DnsServer([("198.18.1.53", 54)], "DoT")}
    assert o.dns_search_domains == ["a.example", "b.example", "c.example"]
    assert any("server 1 uses DoT: only plain DNS servers are used here" in n for n in o.notes)


@pytest.mark.parametrize("line, why", [
    ("dns server 128 address 198.18.0.53", "dns: server priority '128' must be a number from -128 to 127"),
    ("dns server x address 198.18.0.53", "dns: server priority 'x' must be a number"),
    ("dns server 0 address 198.18.0", "dns: server 0: malformed address '198.18.0'"),
    ("dns server 0 address 198.18.0.53:0", "dns: server 0: malformed address '198.18.0.53:0'"),
    ("dns server 0 address fe80::1%eth0", "dns: server 0: malformed address 'fe80::1%eth0'"),
    ("dns server 0 address " + " ".join(f"198.18.0.{i}" for i in range(1, 10)), "dns: server 0: more than 8 addresses"),
    ("dns server 0 transport doh", "dns: server 0: malformed transport value 'doh' (expects plain or DoH or DoT)"),
    ("dns server 0 dnssec maybe", "dns: server 0: malformed dnssec value 'maybe'"),
    ("dns server 0 port 53", "dns: server 0: unknown option type 'port'"),
    ("dns servers 0 address 198.18.0.53", "dns: unknown option type 'servers'"),
    ("dns search-domains", "dns: expects at least 2 argument(s), got 1"),
])
def test_a_bad_dns_line_fails_at_its_line(line, why):
    assert _error(line + "\n").startswith(f"/etc/vpn/c.ovpn:6: {why}")


def test_a_dns_server_without_an_address_fails_at_its_first_line_as_openvpn():
    err = _error("dns search-domains a.example\ndns server 3 transport plain\n")
    assert err == "/etc/vpn/c.ovpn:7: dns: server 3 has no address (`dns server 3 address ADDR`)"


def test_a_pushed_dns_server_replaces_the_profiles_of_its_priority_and_the_rest_stay():
    o = _client("dns server 0 address 198.18.0.53\ndns server 5 address 198.18.5.53\ndns server -2 address "
                "198.18.2.53\ndns search-domains corp.example\n")
    pushed = parse_push_reply_untrusted(PUSH + ",dns server 0 address 198.19.0.53,dns server 9 address 198.19.9.53,"
                                        "dns search-domains vpn.example")
    p = with_profile(o, pushed)
    assert p.dns == ["198.18.2.53", "198.19.0.53", "198.18.5.53", "198.19.9.53"]     # by priority, lowest first
    assert p.search_domains == ["corp.example", "vpn.example"]
    assert pushed.dns == ["198.19.0.53", "198.19.9.53"] and o.dns_servers[0].addresses == [("198.18.0.53", 53)]


def test_the_profiles_dns_stays_under_route_nopull():
    o = _client("route-nopull\ndns server 0 address 198.18.0.53\n")
    p = with_profile(o, parse_push_reply_untrusted(PUSH + ",dns server 0 address 198.19.0.53", route_nopull=True))
    assert p.dns == ["198.18.0.53"]


# ------------------------------------------------------------------ session-timeout, cd
def test_session_timeout_line_and_push():
    assert _client("session-timeout 3600\n").session_timeout == 3600
    assert _error("session-timeout 1h\n") == "/etc/vpn/c.ovpn:6: session-timeout: expected a number, got '1h'"
    assert parse_push_reply_untrusted(PUSH + ",session-timeout 60").session_timeout == 60
    assert parse_push_reply_untrusted(PUSH).session_timeout is None


def test_pushed_route_ipv6_metric_and_route_metric():
    p = parse_push_reply_untrusted(PUSH + ",route-ipv6 2001:db8::/32 2001:db8::1 7,route-metric 12")
    assert p.routes_ipv6 == [("2001:db8::/32", "2001:db8::1", 7)] and p.route_metric == 12


@pytest.mark.parametrize("line", ["route-metric 5", "block-ipv6", "dns server 0 address 198.18.0.53"])
def test_client_only_lines_in_a_server_config_fail_at_their_line(line):
    conf = ("mode server\ntls-server\nserver 198.19.0.0 255.255.255.0\n<ca>\nx\n</ca>\ncert c\nkey k\n"
            f"{line}\n")
    with pytest.raises(ConfigError) as e:
        parse_config(conf, "/etc/vpn/s.conf", read_file=lambda p: b"x")
    assert f"/etc/vpn/s.conf:9: {line.split()[0]}: is applied by our client only" in str(e.value), str(e.value)


def test_cd_makes_later_relative_names_read_from_its_directory(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    read: list[str] = []
    o = parse_config(f"client\ndev tun\nremote 198.18.0.1\ncd {keys}\nca ca.crt\n", str(tmp_path / "c.ovpn"),
                     read_file=lambda p: read.append(p) or b"x")
    assert read == [str(keys / "ca.crt")] and o.ca == b"x"
    read.clear()
    parse_config("client\ndev tun\nremote 198.18.0.1\ncd keys\nca ca.crt\n", str(tmp_path / "c.ovpn"),   # relative: to the profile's
                 read_file=lambda p: read.append(p) or b"x")
    assert read == [str(keys / "ca.crt")]


def test_cd_is_where_the_scripts_start_as_under_openvpn(tmp_path, monkeypatch):
    """OpenVPN chdir()s to DIR and stays there, so a tls-verify or client-connect script's
    relative names (here its revoked/ list) are DIR's. Before, the scripts started in the
    directory the appliance was started from: such a check found no revoked/alice there and
    let a revoked alice in."""
    from appliance import cli
    from appliance.gateway.scripts import run_limited
    (tmp_path / "etc" / "revoked").mkdir(parents=True)
    (tmp_path / "etc" / "revoked" / "alice").write_text("")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")              # where the appliance was started (restored after)
    (tmp_path / "elsewhere" / "c.ovpn").write_text("client\ndev tun\nremote 198.18.0.1\ncd ../etc\nca ca.crt\n")
    o = parse_config((tmp_path / "elsewhere" / "c.ovpn").read_text(), "c.ovpn", read_file=lambda p: b"x")
    assert o.cd_dir == str(tmp_path / "etc")
    assert cli.enter_cd_dir(o) is None
    assert o.path == str(tmp_path / "elsewhere" / "c.ovpn"), "a reload would read another file"
    check = ["/bin/sh", "-c", "test ! -e revoked/alice"]   # a revocation check: exit 0 lets alice in
    assert run_limited(check, {}, 5.0) == 1, "the script did not run in cd's directory"
    (tmp_path / "etc").rename(tmp_path / "gone")
    assert "cd " in (cli.enter_cd_dir(o) or ""), "a vanished cd directory must fail the start"


def test_cd_through_a_symlink_and_dotdot_goes_where_chdir_goes(tmp_path):
    """`cd keys/..` with keys a symlink to /srv/pki/client1: chdir() (OpenVPN's) lands in
    /srv/pki, and `ca ca.crt` is read there. Before, the path was shortened as text to the
    profile's own directory, and another ca.crt was read than OpenVPN reads."""
    (tmp_path / "prof").mkdir()
    (tmp_path / "pki" / "client1").mkdir(parents=True)
    (tmp_path / "prof" / "keys").symlink_to(tmp_path / "pki" / "client1")
    read: list[str] = []
    o = parse_config("client\ndev tun\nremote 198.18.0.1\ncd keys/..\nca ca.crt\n", str(tmp_path / "prof" / "c.ovpn"),
                     read_file=lambda p: read.append(p) or b"x")
    assert read == [str(tmp_path / "pki" / "ca.crt")] and o.cd_dir == str(tmp_path / "pki")


def test_cd_after_a_relative_name_or_to_no_directory_is_refused(tmp_path):
    with pytest.raises(ConfigError) as e:
        parse_config(f"client\ndev tun\nremote 198.18.0.1\nca ca.crt\ncd {tmp_path}\n", str(tmp_path / "c.ovpn"),
                     read_file=lambda p: b"x")
    assert str(e.value).startswith(f"{tmp_path}/c.ovpn:5: cd: line 4 named a file relative to the profile's "
                                   "directory before this `cd`")
    with pytest.raises(ConfigError) as e:
        parse_config(f"client\ndev tun\nremote 198.18.0.1\ncd {tmp_path}/none\n<ca>\nx\n</ca>\n", str(tmp_path / "c.ovpn"),
                     read_file=lambda p: b"x")
    assert str(e.value) == f"{tmp_path}/c.ovpn:4: cd: cd to '{tmp_path}/none' failed: not a directory"



def test_mark_and_bind_dev_lines():
    o = _client("mark 4096\nbind-dev vrf-blue\n")
    assert (o.mark, o.bind_dev) == (4096, "vrf-blue")
    assert (_client("").mark, _client("").bind_dev) == (0, None)


# ------------------------------------------------------------------ route remote_host (Sophos UTM)
def test_route_remote_host_is_the_connected_servers_address():
    """`route remote_host 255.255.255.255 net_gateway` (Sophos UTM's profiles): kept as the keyword
    and made the server's address as connected, as OpenVPN 2.6's route.c does; an IPv6 server
    has no IPv4 remote_host (None: the tunnel skips it with a warning)."""
    o = _client("route remote_host 255.255.255.255 net_gateway\nroute 198.18.9.0 255.255.255.0\n")
    rh, other = o.route
    assert tuple(rh) == ("remote_host", "255.255.255.255", "net_gateway", None)
    assert tuple(rh.resolved("198.18.0.7")) == ("198.18.0.7", "255.255.255.255", "net_gateway", None)
    assert rh.resolved("2001:db8::7") is None
    assert other.resolved("198.18.0.7") is other


def test_route_remote_host_in_a_servers_config_is_refused_at_its_line():
    text = ("mode server\ntls-server\ndev tun\nport 1194\nserver 198.19.0.0 255.255.255.0\n<ca>\n</ca>\n"
            "route 198.18.8.0 255.255.255.0\nroute remote_host 255.255.255.255\n")
    with pytest.raises(ConfigError) as e:
        parse_config(text, "/etc/vpn/s.conf", read_file=lambda p: b"x")
    errs = getattr(e.value, "errors", [e.value])
    assert [(x.line, x.directive) for x in errs if "remote_host" in x.message] == [(9, "route")], errs


def test_a_pushed_remote_host_routes_script_variables_name_the_servers_address():
    """The up/route-up scripts' route_network_N for `route remote_host ...` is the server's
    address, as 2.6's setenv_routes prints the resolved network -- not the keyword."""
    from appliance.gateway.updown_env import route_env
    e = route_env([("remote_host", "255.255.255.255", "net_gateway", None)], [], "198.19.1.1", "198.18.0.254",
                  "198.18.0.7", None, None)
    assert (e["route_network_1"], e["route_gateway_1"]) == ("198.18.0.7", "198.18.0.254")


def test_a_pushed_route_metric_without_one_in_the_profile_is_the_pushed_routes_metric():
    """2.6 gives a pulled route-metric to the pushed routes without a metric whatever the profile
    says; ours left them at the kernel's default when the profile had no route-metric."""
    o = _client("")
    p = with_profile(o, parse_push_reply_untrusted(PUSH + ",route 198.18.72.0 255.255.255.0 vpn_gateway 9,"
                                                   "route-metric 77"))
    assert p.route_metric == 77
    assert p.routes == [("198.18.71.0", "255.255.255.0", None, 77), ("198.18.72.0", "255.255.255.0", None, 9)]
    plain = parse_push_reply_untrusted(PUSH)
    assert with_profile(o, plain) is plain and plain.routes[0][3] is None       # none pushed: the kernel's
