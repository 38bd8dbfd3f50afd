"""`push-remove` in client-config-dir files and client-connect output (OpenVPN 2.6's
push_remove_option): per client, every option pushed so far that begins with the given text is
taken out -- the server's `push` lines, and the topology/route-gateway/route OpenVPN keeps in the
same list -- while the client's own later `push` lines stay; `ifconfig` and `ifconfig-ipv6`, as
those words exactly, stop the address being pushed. The common use: a server pushing
redirect-gateway or routes to everyone, and a few clients that must not get them. Before, the
line refused that client (an unsupported per-client line, then); in the server's own
config it is refused at its line, as OpenVPN refuses it there."""
from __future__ import annotations

import pytest

from appliance.gateway import ops as ops_mod
from appliance.gateway.scripts import ScriptRunner
from appliance.gateway.server_files import ccd_loader
from appliance.openvpn.config import ConfigError, parse_ccd, parse_config
from appliance.openvpn.config.ccd import with_ccd_pushes, without_blocked
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up

SERVER_PUSH = ('push "route 198.18.77.0 255.255.255.0"\npush "route 198.18.78.0 255.255.255.0"\n'
               'push "dhcp-option DNS 198.18.0.53"\n')


def test_push_remove_takes_out_what_came_before_it_and_keeps_later_pushes():
    base = ["topology subnet", "route-gateway 198.19.0.1", "ifconfig 198.19.0.2 255.255.255.0",
            "ifconfig-ipv6 fd00::1000/64 fd00::1", "route 198.18.77.0 255.255.255.0",
            "route-ipv6 fd18::/48", "dhcp-option DNS 198.18.0.53"]
    ccd = parse_ccd('push "route 198.18.1.0 255.255.255.0"\npush-remove route\n'
                    'push "route 198.18.79.0 255.255.255.0"\npush-remove dhcp-option\npush-remove ifconfig\n')
    assert with_ccd_pushes(base, ccd.push, ccd.push_remove) == [
        "topology subnet", "ifconfig 198.19.0.2 255.255.255.0", "ifconfig-ipv6 fd00::1000/64 fd00::1",
        "route 198.18.79.0 255.255.255.0"]
    assert (ccd.block_ifconfig, ccd.block_ifconfig_ipv6) == (True, None)
    # A prefix never reaches the address lines (they are not in OpenVPN's push list) ...
    ccd = parse_ccd("push-remove if\npush-remove ifconfig-\n")
    assert with_ccd_pushes(base, ccd.push, ccd.push_remove) == base
    assert (ccd.block_ifconfig, ccd.block_ifconfig_ipv6) == (False, None)
    # ... only the exact words do; an ifconfig-ipv6-push after the IPv6 one lifts it (options.c).
    assert parse_ccd("push-remove ifconfig-ipv6\n").block_ifconfig_ipv6 is True
    assert parse_ccd("push-remove ifconfig-ipv6\nifconfig-ipv6-push fd00::5/64 fd00::1\n").block_ifconfig_ipv6 is False
    assert parse_ccd("ifconfig-ipv6-push fd00::5/64 fd00::1\npush-remove ifconfig-ipv6\n").block_ifconfig_ipv6 is True
    assert without_blocked(base, True, False) == [o for o in base if not o.startswith("ifconfig ")]


def test_push_remove_in_the_servers_own_config_is_refused_at_its_line(pki):
    with pytest.raises(ConfigError, match=r"srv\.conf:\d+: push-remove: .*client-config-dir"):
        parse_config(server_conf(pki, extra="push-remove route\n"), "/mem/srv.conf")
    for bad in ("push-remove", "push-remove route 198.18.1.0"):
        with pytest.raises(ConfigError, match=r"ccd:2: push-remove: .*one argument"):
            parse_ccd(f'push "route 198.18.1.0 255.255.255.0"\n{bad}\n', "ccd")


def test_a_ccd_push_remove_keeps_the_servers_routes_from_that_client_only(pki, tmp_path):
    d = tmp_path / "ccd"
    d.mkdir()
    (d / "client0").write_text('push-remove route\npush "route 198.18.79.0 255.255.255.0"\n'
                               'push-remove dhcp-option\n')
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"client-config-dir {d}\ntopology subnet\n" + SERVER_PUSH))
    gw.st.ccd = ccd_loader(str(d))
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    p0, p1 = w.client_nets[0].pushed, w.client_nets[1].pushed
    assert [r[0] for r in p0.routes] == ["198.18.79.0"], p0.routes
    assert p0.dhcp_options == [] and p0.route_gateway is None and p0.ifconfig is not None
    assert sorted(r[0] for r in p1.routes) == ["198.18.77.0", "198.18.78.0"], p1.routes
    assert p1.dhcp_options and p1.route_gateway is not None


def test_client_connect_output_may_push_remove(pki, tmp_path, monkeypatch):
    """The same line written by a client-connect script applies to what that client is pushed."""
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    cc = tmp_path / "cc.sh"
    cc.write_text("#!/bin/sh\necho 'push-remove \"route 198.18.77\"' > \"$1\"\n")
    cc.chmod(0o755)
    w = World()
    w.add_server(server_conf(pki, extra=f"topology subnet\nscript-security 2\nclient-connect {cc}\n" + SERVER_PUSH))
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    assert [r[0] for r in w.client_nets[0].pushed.routes] == ["198.18.78.0"]


def test_a_ccd_push_remove_ifconfig_holds_against_a_later_client_connect_ifconfig_push(pki, tmp_path, monkeypatch):
    """As OpenVPN 2.6 (push.c: `push-remove ifconfig` sets a flag on the client's options that no
    later ifconfig-push clears): the ccd file's block holds when the client-connect script then
    writes an ifconfig-push, so no IPv4 address is pushed. An ifconfig-ipv6-push after
    `push-remove ifconfig-ipv6` is pushed (options.c lifts that block), also from the script."""
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    d = tmp_path / "ccd"
    d.mkdir()
    (d / "client0").write_text("push-remove ifconfig\npush-remove ifconfig-ipv6\n")
    cc = tmp_path / "cc.sh"
    cc.write_text("#!/bin/sh\nprintf 'ifconfig-push 198.19.0.72 255.255.255.0\\n"
                  "ifconfig-ipv6-push fd00:198:19::72/64\\n' > \"$1\"\n")
    cc.chmod(0o755)
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"topology subnet\nserver-ipv6 fd00:198:19::/64\nclient-config-dir {d}\n"
                                             f"script-security 2\nclient-connect {cc}\n"))
    gw.st.ccd = ccd_loader(str(d))
    w.add_client(client_conf(pki, "client0"))
    done = lambda: [r for r in gw.d._records() if r.connect_state == "done"]     # noqa: E731
    assert w.run(lambda: bool(done()), max_time=30)
    opts = done()[0].connect_opts           # what it is pushed (our client wants an IPv4 address)
    assert not [o for o in opts if o.startswith("ifconfig ")], opts
    assert "ifconfig-ipv6 fd00:198:19::72/64 fd00:198:19::1" in opts, opts
