"""A server pushing options OpenVPN 2.6 never takes from a push: none of them acts on our client.

Why: 2.6's client takes from a PUSH_REPLY only the option classes of init.c pull_permission_mask
(OPT_P_UP, ROUTE, DHCPDNS, TIMER, COMP, NCP, ...); `up`, `route-up`, `down`, `ipchange`,
`tls-verify`, `route-noexec` are OPT_P_SCRIPT, `plugin` OPT_P_PLUGIN, `config` OPT_P_CONFIG, and
`script-security`, `cd`, `management`, `log`, `status`, `writepid`, `daemon`, `dev`, `proto`,
`auth-user-pass`, `setenv`, `user`, `chroot`, `tls-exit` OPT_P_GENERAL: each is logged ("option
'up' cannot be used in this context ([PUSH-OPTIONS])") and never applied. Ours reads a push
through a list of the options it takes (openvpn/keymethod.py _take_option); everything else is
recorded as ignored. This drives a hostile server's push of all of them, with real commands and
paths, against a client whose own profile runs scripts: the profile's scripts run, as they are
written, and nothing of the push runs, writes, listens or changes the profile's settings."""
from __future__ import annotations

import logging

from appliance.openvpn.clientpush import ClientPush
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_client_mgmt import ROUTE
from tests.gateway.test_client_scripts import _records, _recorder, inline  # noqa: F401
from tests.gateway.test_tunnel import _up, ping_both_ways


def _evil(tmp_path, marker):
    s = tmp_path / "evil.sh"
    s.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {marker}\nexit 0\n")
    s.chmod(0o755)
    return s


def test_options_2_6_refuses_in_a_push_never_act(pki, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    marker, log = tmp_path / "evil-ran", tmp_path / "scripts.log"
    evil = _evil(tmp_path, marker)
    included = tmp_path / "included.conf"
    included.write_text(f"script-security 3\nup {evil}\n")
    written = {k: tmp_path / f"pushed.{k}" for k in ("log", "status", "pid", "pass")}
    written["pass"].write_text("user\npass\n")
    pushed = [
        f"up {evil}", f"route-up {evil}", f"down {evil}", f"route-pre-down {evil}", f"ipchange {evil}",
        f"tls-verify {evil}", f"learn-address {evil}", f"client-connect {evil}",
        "script-security 3", f"plugin /usr/lib/x86_64-linux-gnu/openvpn/plugins/openvpn-plugin-down-root.so {evil}",
        f"config {included}", "cd /", "management 127.0.0.1 7505", f"log {written['log']}",
        f"status {written['status']} 1", f"writepid {written['pid']}", "daemon", "dev tap", "dev-type tap",
        "proto tcp-client", "remote 198.18.9.9 1194", f"auth-user-pass {written['pass']}",
        "setenv PATH /nonexistent", "user nobody", "chroot /nonexistent", "route-noexec", "tls-exit",
        "pull-filter accept route", "route-nopull", "up-restart", "down-pre",
    ]
    real = ClientPush._push_for
    monkeypatch.setattr(ClientPush, "_push_for", lambda self, s: [*real(self, s), *pushed])
    w = World()
    w.add_server(server_conf(pki, extra=ROUTE))
    c = w.add_client(client_conf(pki, extra="script-security 2\n"
                                 f"up {_recorder(tmp_path, log, 'up')}\n"
                                 f"route-up {_recorder(tmp_path, log, 'route-up')}\n"
                                 f"down {_recorder(tmp_path, log, 'down')}\n"))
    assert w.run(lambda: _up(w), max_time=30)
    w.run_for(5)
    ping_both_ways(w)
    # The profile's scripts, as written: the tunnel device is the profile's tun, the PATH ours.
    runs = _records(log)
    assert [name for name, _a, _e in runs] == ["up", "route-up"]
    up_args, up_env = runs[0][1], runs[0][2]
    assert up_args[0] == up_env["dev"] and up_env["dev"].startswith("tun")
    assert up_env.get("PATH") != "/nonexistent"
    assert "198.18.100.0" in "".join(v for k, v in runs[1][2].items() if k.startswith("route_network_"))
    # Nothing of the push ran, was written, or was taken as a setting.
    assert not marker.exists(), marker.read_text()
    for k in ("log", "status", "pid"):
        assert not written[k].exists(), k
    assert c.connections == 1 and c.result is None
    p = w.client_nets[0].pushed
    assert [r[0] for r in p.routes] == ["198.18.100.0"]          # route-nopull pushed: not taken
    ignored = " | ".join(c.conn.session.pushed.ignored) if c.conn and c.conn.session.pushed else ""
    for word in ("up ", "script-security", "plugin", "config", "management", "setenv PATH", "route-nopull"):
        assert word in ignored, (word, ignored)
    assert "ignored:" in caplog.text
