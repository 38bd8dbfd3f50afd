"""The client's up/route-up/ipchange/route-pre-down/down scripts (gateway/client_scripts.py) on
in-memory ports: their arguments and environment as OpenVPN 2.6 gives them, the order they run
in, CONNECTED only once up and route-up ended, a failed `up` ending the run (status 1, no down),
up-restart, down-pre, and a hanging script killed at its limit without holding the tunnel.
tests/interop/test_client_scripts_vs_openvpn.py compares the same with Debian's client."""
from __future__ import annotations

import pytest

from appliance.gateway import client as client_mod
from appliance.gateway.client_scripts import ClientScripts
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_client_mgmt import ROUTE, Tap

BOX = {"limit": 5.0}


@pytest.fixture(autouse=True)
def inline(monkeypatch):
    """The scripts run in the caller, so the fake clock's steps see them (as tls-verify's tests)."""
    BOX["limit"] = 5.0
    monkeypatch.setattr(client_mod, "ClientScripts", lambda: ClientScripts(time_limit=BOX["limit"], inline=True))


def _recorder(tmp_path, log, name: str, status: int = 0, body: str = ""):
    """A script that appends `name`, its arguments and its environment to `log` (one record a run)."""
    s = tmp_path / f"{name}.sh"
    s.write_text("#!/bin/sh\n" + body +
                 f'{{ echo "== {name}"; for a in "$@"; do echo "arg=$a"; done; env | sort; }} >> {log}\n'
                 f"exit {status}\n")
    s.chmod(0o755)
    return s


def _records(log) -> list[tuple[str, list[str], dict[str, str]]]:
    out = []
    for block in log.read_text().split("== ")[1:]:
        lines = block.splitlines()
        args = [x[4:] for x in lines[1:] if x.startswith("arg=")]
        env = dict(x.split("=", 1) for x in lines[1:] if "=" in x and not x.startswith("arg="))
        out.append((lines[0], args, env))
    return out


def _client(pki, tmp_path, scripts: str, extra: str = ""):
    w = World()
    w.add_server(server_conf(pki, extra=ROUTE))
    c = w.add_client(client_conf(pki, extra=f"management {tmp_path}/c.sock unix\nscript-security 2\n"
                                 + scripts + extra))
    tap = Tap()
    c.mgmt.mgr.conns.append(tap)
    tap.state_on = True
    return w, c, tap


def _all(tmp_path, log, **status):
    return "".join(f"{d} {_recorder(tmp_path, log, d, status.get(d.replace('-', '_'), 0))}\n"
                   for d in ("up", "route-up", "ipchange", "route-pre-down", "down"))


def test_each_script_runs_as_openvpn_runs_it(pki, tmp_path):
    log = tmp_path / "log"
    w, c, tap = _client(pki, tmp_path, _all(tmp_path, log), "management-up-down\n")
    assert w.run(lambda: any(",CONNECTED," in x for x in tap.got), max_time=20)
    got = _records(log)
    assert [g[0] for g in got] == ["ipchange", "up", "route-up"]
    ipc, up, rup = got
    assert ipc[1] == ["[AF_INET]198.18.0.1 1194"] and ipc[2]["script_type"] == "ipchange"
    assert ipc[2]["trusted_ip"] == "198.18.0.1" and ipc[2]["X509_0_CN"] == "server" and "dev" not in ipc[2]
    local = w.client_addr()
    assert up[1] == [up[2]["dev"], up[2]["tun_mtu"], "0", local, up[2]["ifconfig_netmask"], "init"]
    assert up[2]["script_type"] == "up" and up[2]["script_context"] == "init" and "redirect_gateway" not in up[2]
    assert rup[1] == [] and rup[2]["script_type"] == "route-up" and rup[2]["redirect_gateway"] == "0"
    assert rup[2]["route_network_1"] and rup[2]["X509_0_CN"] == "server" and "PATH" in rup[2]
    ups = next(i for i, x in enumerate(tap.got) if x == ">UPDOWN:ENV,script_type=up")
    assert ups < next(i for i, x in enumerate(tap.got) if ",CONNECTED," in x)
    c._cleanup()
    pre, down = _records(log)[3:]
    assert pre[0] == "route-pre-down" and down[0] == "down"
    for name, args, env in (pre, down):
        assert args == up[1] and env["script_type"] == name and env["signal"] == "sigterm"
        assert env["ifconfig_local"] == local and env["redirect_gateway"] == "0"


def test_connected_comes_after_a_slow_up(pki, tmp_path):
    log = tmp_path / "log"
    up = _recorder(tmp_path, log, "up", body="sleep 1\n")
    w, c, tap = _client(pki, tmp_path, f"up {up}\n")
    assert w.run(lambda: any(",CONNECTED," in x for x in tap.got), max_time=20)
    assert _records(log)[0][0] == "up"


def test_a_failed_up_ends_the_run_without_down(pki, tmp_path, caplog):
    log = tmp_path / "log"
    w, c, tap = _client(pki, tmp_path, _all(tmp_path, log, up=3))
    assert w.run(lambda: c.result is not None, max_time=20)
    assert c.result == 1
    assert not any(",CONNECTED," in x for x in tap.got)
    c._cleanup()
    assert "Failed running command (--up/--down): external program exited with error status: 3" in caplog.text
    assert [g[0] for g in _records(log)] == ["ipchange", "up"]


def test_a_failed_route_up_is_only_logged(pki, tmp_path, caplog):
    log = tmp_path / "log"
    w, c, tap = _client(pki, tmp_path, _all(tmp_path, log, route_up=2))
    assert w.run(lambda: any(",CONNECTED," in x for x in tap.got), max_time=20)
    assert c.result is None
    c._cleanup()
    assert "Failed running command (--route-up)" in caplog.text


def test_a_hanging_up_is_killed_at_its_limit_and_ends_the_run(pki, tmp_path, caplog):
    BOX["limit"] = 0.5
    log = tmp_path / "log"
    up = _recorder(tmp_path, log, "up", body="sleep 30\n")
    w, c, tap = _client(pki, tmp_path, f"up {up}\n")
    assert w.run(lambda: c.result is not None, max_time=20)
    assert c.result == 1
    c._cleanup()
    assert "ran past its 0.5 s limit" in caplog.text


def test_up_restart_runs_down_and_up_again_at_a_reconnect(pki, tmp_path):
    log = tmp_path / "log"
    w, c, tap = _client(pki, tmp_path, _all(tmp_path, log), "up-restart\npersist-tun\n")
    assert w.run(lambda: any(",CONNECTED," in x for x in tap.got), max_time=20)
    tap.got.clear()
    c.user_restart()
    assert w.run(lambda: any(",CONNECTED," in x for x in tap.got), max_time=30)
    names = [(g[0], g[1][-1] if g[1] else None) for g in _records(log)]
    assert names[3:] == [("down", "restart"), ("ipchange", "[AF_INET]198.18.0.1 1194"), ("up", "restart")]
    # Each connection has its own set in 2.6: the reconnect's ipchange sees no tunnel variables,
    # its up (restart) the addresses and device but no routes (do_route does not run again).
    ipc2, up2 = _records(log)[4][2], _records(log)[5][2]
    assert "dev" not in ipc2 and "route_network_1" not in ipc2 and ipc2["trusted_ip"] == "198.18.0.1"
    assert up2["ifconfig_local"] == w.client_addr() and up2["script_context"] == "restart"
    assert "route_network_1" not in up2 and "redirect_gateway" not in up2
    c._cleanup()
    assert [g[0] for g in _records(log)][-2:] == ["route-pre-down", "down"]


def test_without_persist_tun_a_reconnect_runs_the_down_side_then_the_up_side_afresh(pki, tmp_path):
    """2.6 closes its device at a SIGUSR1 restart without persist-tun: route-pre-down and down
    (`init`, signal sigusr1) with the tunnel's set, then the next tunnel is a first one: up
    (`init`), route-up, with that connection's values (and its tls-verify starts afresh)."""
    log = tmp_path / "log"
    w, c, tap = _client(pki, tmp_path, _all(tmp_path, log))
    assert w.run(lambda: any(",CONNECTED," in x for x in tap.got), max_time=20)
    tap.got.clear()
    c.user_restart()
    assert w.run(lambda: any(",CONNECTED," in x for x in tap.got), max_time=30)
    recs = _records(log)
    assert [(g[0], g[1][-1] if g[1] else None) for g in recs][3:] == [
        ("route-pre-down", "init"), ("down", "init"), ("ipchange", "[AF_INET]198.18.0.1 1194"),
        ("up", "init"), ("route-up", None)]
    assert recs[3][2]["signal"] == recs[4][2]["signal"] == "sigusr1"
    assert recs[4][2]["route_network_1"] == recs[1][2]["route_network_1"]       # the closing tunnel's set
    assert recs[6][2]["route_network_1"] and recs[6][2]["script_context"] == "init"
    assert "signal" not in recs[6][2] and "signal" not in recs[7][2]            # a fresh set
    c._cleanup()
    assert [g[0] for g in _records(log)][-2:] == ["route-pre-down", "down"]
    assert _records(log)[-1][2]["signal"] == "sigterm"


def test_without_a_tunnel_no_down_runs(pki, tmp_path):
    log = tmp_path / "log"
    w = World()
    c = w.add_client(client_conf(pki, extra="script-security 2\n" + _all(tmp_path, log)))
    w.run_for(2)
    c._cleanup()
    assert not log.exists()


def test_a_failed_route_pre_down_ends_it_without_down(pki, tmp_path, caplog):
    log = tmp_path / "log"
    w, c, tap = _client(pki, tmp_path, _all(tmp_path, log, route_pre_down=1))
    assert w.run(lambda: any(",CONNECTED," in x for x in tap.got), max_time=20)
    c._cleanup()
    assert [g[0] for g in _records(log)][-1] == "route-pre-down"       # 2.6's M_FATAL: no down
    assert "Exiting due to fatal error" in caplog.text


def test_the_root_helper_runs_the_first_tunnels_scripts_then_ends(pki, tmp_path):
    """With `user`/`group` cli.py gives the runner the root helper (host/script_root.py): it runs
    ipchange, up and route-up of the first tunnel, then is closed where 2.6 drops its privileges;
    later scripts run in the process itself."""
    from appliance.host.script_root import RootScripts
    from appliance.openvpn.config.client_scripts import root_commands
    log = tmp_path / "log"
    w, c, tap = _client(pki, tmp_path, _all(tmp_path, log))
    helper = RootScripts(root_commands(c.opts))
    c.scripts.runner.root = helper
    assert w.run(lambda: any(",CONNECTED," in x for x in tap.got), max_time=20)
    assert c.scripts.runner.root is None and helper.sock is None          # closed after route-up
    assert [g[0] for g in _records(log)] == ["ipchange", "up", "route-up"]
    c._cleanup()
    assert [g[0] for g in _records(log)][3:] == ["route-pre-down", "down"]
