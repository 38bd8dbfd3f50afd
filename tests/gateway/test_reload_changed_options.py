"""A reload that would give a kept client other options (its ccd file, client-connect, push lines:
appliance/openvpn/given.py) restarts that client -- told RESTART, it reconnects and gets them, as
every client does at 2.6's SIGHUP -- and keeps the clients whose options stay the same (no needless
reconnect). The decision is the reload's pass's (gateway/ops.py _batch_verdicts / _verdicts_in)."""
from __future__ import annotations

import ipaddress

from appliance.gateway import ops as ops_mod
from appliance.gateway.scripts import ScriptRunner
from appliance.gateway.server_files import ccd_loader
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_ops import _script, opki  # noqa: F401 (fixture)
from tests.gateway.test_tunnel import _up


def _rec(gw, cn: str):
    recs = [r for r in gw.d.clients if r.common_name == cn and r.session.established]
    return recs[0] if recs else None


def _two(opki, tmp_path, extra: str = "", files: dict | None = None):
    """A server with a client-config-dir, client0 and client1 connected; (world, gw, holder, ccd, conf)."""
    ccd = tmp_path / "ccd"
    ccd.mkdir()
    for name, text in (files or {}).items():
        (ccd / name).write_text(text)
    conf = server_conf(opki, extra=f"client-config-dir {ccd}\n{extra}")
    w = World()
    gw, holder = w.add_reloadable_server(conf)
    gw.st.ccd = ccd_loader(str(ccd))            # World reads no files at start; as server_files does
    for i in range(2):
        w.add_client(client_conf(opki, f"client{i}"))
        assert w.run(lambda i=i: _up(w, i), max_time=30)
    return w, gw, holder, ccd, conf


def _reload_and_settle(w, gw, caplog) -> None:
    mark = len(caplog.text)
    assert gw.ops.reload()
    assert w.run(lambda: "clients kept" in caplog.text[mark:], max_time=10), caplog.text[-2000:]


def _reconnected(w, gw, i: int, old) -> bool:
    new = _rec(gw, f"client{i}")
    return new is not None and new is not old and _up(w, i)


def test_an_edited_ifconfig_push_restarts_that_client_only(opki, tmp_path, caplog):
    w, gw, holder, ccd, _ = _two(opki, tmp_path, files={"client0": "ifconfig-push 198.19.0.50 255.255.255.0\n",
                                                        "client1": "ifconfig-push 198.19.0.60 255.255.255.0\n"})
    assert w.client_addr(0) == "198.19.0.50"
    old0, old1 = _rec(gw, "client0"), _rec(gw, "client1")
    (ccd / "client0").write_text("ifconfig-push 198.19.0.70 255.255.255.0\n")
    (ccd / "client1").write_text("# a comment changes nothing\nifconfig-push 198.19.0.60 255.255.255.0\n\n")
    _reload_and_settle(w, gw, caplog)
    assert "client0/198.18.0.2:" in caplog.text and "its client-config-dir file changed: told RESTART" in caplog.text
    assert "1 clients kept, 0 revoked ones disconnected, 1 told RESTART for their new options" in caplog.text
    assert w.run(lambda: _reconnected(w, gw, 0, old0) and w.client_addr(0) == "198.19.0.70", max_time=30), \
        (w.client_addr(0), caplog.text[-2000:])
    assert "server sent RESTART" in caplog.text
    # client1's file says the same: the same session, never told anything.
    assert _rec(gw, "client1") is old1 and old1.alive and not old1.session.restart_sent
    assert w.client_addr(1) == "198.19.0.60"


def test_an_unchanged_reload_keeps_everyone_and_tells_nothing(opki, tmp_path, caplog):
    w, gw, holder, ccd, conf = _two(opki, tmp_path, files={"client0": 'push "route 198.18.80.0 255.255.255.0"\n'})
    old = [_rec(gw, "client0"), _rec(gw, "client1")]
    holder["conf"] = conf + "verb 3\n"          # a change that gives no client anything else
    _reload_and_settle(w, gw, caplog)
    w.run_for(2)
    assert [_rec(gw, "client0"), _rec(gw, "client1")] == old and all(r.alive for r in old)
    assert not any(r.session.restart_sent for r in old)
    assert "told RESTART" not in caplog.text and "2 clients kept" in caplog.text


def test_an_iroute_change_restarts_the_client_and_routes_the_new_network(opki, tmp_path, caplog):
    w, gw, holder, ccd, conf = _two(opki, tmp_path, extra="route 198.18.90.0 255.255.255.0\n"
                                    "route 198.18.91.0 255.255.255.0\n",
                                    files={"client0": "iroute 198.18.90.0 255.255.255.0\n"})
    old0 = _rec(gw, "client0")
    net_a, net_b = ipaddress.IPv4Network("198.18.90.0/24"), ipaddress.IPv4Network("198.18.91.0/24")
    assert old0.iroutes == [net_a]
    (ccd / "client0").write_text("iroute 198.18.91.0 255.255.255.0\n")
    _reload_and_settle(w, gw, caplog)
    assert w.run(lambda: _reconnected(w, gw, 0, old0), max_time=30), caplog.text[-2000:]
    assert _rec(gw, "client0").iroutes == [net_b]


def test_a_client_connect_added_by_a_reload_runs_for_the_clients_it_restarts(opki, tmp_path, caplog,
                                                                              monkeypatch):
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    cc = _script(tmp_path, "cc.sh", f"""echo ran > {tmp_path}/ran-$common_name
echo 'push "route 198.18.81.0 255.255.255.0"' > "$1"
exit 0
""")
    w, gw, holder, ccd, conf = _two(opki, tmp_path)
    old0, old1 = _rec(gw, "client0"), _rec(gw, "client1")
    holder["conf"] = conf + f"script-security 2\nclient-connect {cc}\n"
    _reload_and_settle(w, gw, caplog)
    assert "the client-connect line changed: told RESTART" in caplog.text
    assert w.run(lambda: _reconnected(w, gw, 0, old0) and _reconnected(w, gw, 1, old1), max_time=30), \
        caplog.text[-2000:]
    assert (tmp_path / "ran-client0").exists() and (tmp_path / "ran-client1").exists()
    assert "198.18.81.0" in [r[0] for r in w.client_nets[0].pushed.routes]


def test_a_deleted_file_under_ccd_exclusive_refuses_the_client(opki, tmp_path, caplog):
    w, gw, holder, ccd, conf = _two(opki, tmp_path, extra="ccd-exclusive\n",
                                    files={"client0": "\n", "client1": "\n"})
    old1 = _rec(gw, "client1")
    (ccd / "client0").unlink()
    _reload_and_settle(w, gw, caplog)
    assert "no client-config-dir file for 'client0' (ccd-exclusive): disconnected" in caplog.text
    w.run_for(10)
    assert _rec(gw, "client0") is None, "a client with no file under ccd-exclusive got back in"
    assert _rec(gw, "client1") is old1 and old1.alive


def test_a_sighup_storm_changing_the_file_restarts_a_client_at_most_once_per_holdoff(opki, tmp_path, caplog):
    """Each reload writes client0 another address: it is restarted at the first, reconnects, and
    the reloads after within RELOAD_RESTART_HOLDOFF hold its next restart until then -- when the
    last reload's address applies; no restart loop, and the loop goes on serving."""
    w, gw, holder, ccd, conf = _two(opki, tmp_path, files={"client0": "ifconfig-push 198.19.0.50 255.255.255.0\n"})
    old0 = _rec(gw, "client0")
    (ccd / "client0").write_text("ifconfig-push 198.19.0.51 255.255.255.0\n")
    _reload_and_settle(w, gw, caplog)
    assert w.run(lambda: _reconnected(w, gw, 0, old0) and w.client_addr(0) == "198.19.0.51", max_time=30)
    t_first = w.clock.t
    second = _rec(gw, "client0")
    for n in range(52, 60):                 # eight more reloads, each with another address
        (ccd / "client0").write_text(f"ifconfig-push 198.19.0.{n} 255.255.255.0\n")
        _reload_and_settle(w, gw, caplog)
        w.run_for(0.5)
    assert "restarted by a reload" in caplog.text and "restarts in" in caplog.text
    assert _rec(gw, "client0") is second and second.alive, "restarted again within the hold-off"
    assert caplog.text.count("client0/198.18.0.2") >= 1
    restarts = caplog.text.count("its client-config-dir file changed: told RESTART")
    assert restarts == 1, restarts
    # At the hold-off's end the restart held comes, and the last file's address applies.
    left = ops_mod.RELOAD_RESTART_HOLDOFF - (w.clock.t - t_first)
    assert left > 0
    assert w.run(lambda: _reconnected(w, gw, 0, second) and w.client_addr(0) == "198.19.0.59",
                 max_time=left + 30), (w.client_addr(0), caplog.text[-2000:])
    assert w.clock.t - t_first >= ops_mod.RELOAD_RESTART_HOLDOFF
    assert "(held off until now)" in caplog.text
    assert _up(w, 1) and _rec(gw, "client1") is not None


def test_a_client_restarted_from_the_same_address_and_port_gets_the_new_file(opki, tmp_path, caplog, monkeypatch):
    """A client with a fixed `lport` comes back from the address it had while its told session is
    still there (here: its acknowledgement not taken, so the session waits CLIENT_KILL_WAIT): that
    is a restart in place, which keeps the options of the connection it restarts (2.6's instance)
    -- but not for a restart the reload asked for, whose point is the new options."""
    end_kill = ops_mod.Operations._end_kill
    monkeypatch.setattr(ops_mod.Operations, "_end_kill",
                        lambda self, rec, wait_over=False: end_kill(self, rec, True) if wait_over else None)
    ccd = tmp_path / "ccd"
    ccd.mkdir()
    (ccd / "client0").write_text("ifconfig-push 198.19.0.50 255.255.255.0\n")
    w = World()
    gw, holder = w.add_reloadable_server(server_conf(opki, extra=f"client-config-dir {ccd}\n"))
    gw.st.ccd = ccd_loader(str(ccd))
    w.add_client(client_conf(opki, "client0").replace("nobind\n", "lport 40100\n"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    old0 = _rec(gw, "client0")
    assert old0.addr[1] == 40100 and w.client_addr(0) == "198.19.0.50"
    (ccd / "client0").write_text("ifconfig-push 198.19.0.70 255.255.255.0\n")
    _reload_and_settle(w, gw, caplog)
    assert w.run(lambda: _reconnected(w, gw, 0, old0) and w.client_addr(0) == "198.19.0.70", max_time=30), \
        (w.client_addr(0), caplog.text[-2000:])
    assert _rec(gw, "client0").addr == old0.addr, "not a reconnect from the same address and port"


def test_a_client_restarting_in_place_while_its_reload_restart_is_held_gets_the_new_file(opki, tmp_path, caplog):
    """soak42: a client a reload restarted less than RELOAD_RESTART_HOLDOFF ago, whose file a
    second reload changes again (its restart held off), restarts in place by itself meanwhile
    (its own SIGUSR1, a fixed `lport`). That new session is a new connection reading the file as
    it is now -- it took over the old session's options, and the held restart, due for a session
    no longer there, was dropped: the client kept the old options until some later reload."""
    ccd = tmp_path / "ccd"
    ccd.mkdir()
    (ccd / "client0").write_text("ifconfig-push 198.19.0.50 255.255.255.0\n")
    w = World()
    gw, holder = w.add_reloadable_server(server_conf(opki, extra=f"client-config-dir {ccd}\n"))
    gw.st.ccd = ccd_loader(str(ccd))
    c = w.add_client(client_conf(opki, "client0").replace("nobind\n", "lport 40100\n"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    old0 = _rec(gw, "client0")
    (ccd / "client0").write_text("ifconfig-push 198.19.0.51 255.255.255.0\n")
    _reload_and_settle(w, gw, caplog)
    assert w.run(lambda: _reconnected(w, gw, 0, old0) and w.client_addr(0) == "198.19.0.51", max_time=30)
    t_first = w.clock.t
    second = _rec(gw, "client0")
    (ccd / "client0").write_text("ifconfig-push 198.19.0.52 255.255.255.0\n")
    mark = len(caplog.text)
    _reload_and_settle(w, gw, caplog)
    assert "restarts in" in caplog.text[mark:], caplog.text[mark:]      # held off
    c.user_restart()
    assert w.run(lambda: _reconnected(w, gw, 0, second), max_time=20), caplog.text[-2000:]
    assert _rec(gw, "client0").addr == second.addr, "not a restart from the same address and port"
    assert w.clock.t - t_first < ops_mod.RELOAD_RESTART_HOLDOFF      # before the held restart was due
    assert w.run(lambda: w.client_addr(0) == "198.19.0.52", max_time=10), (w.client_addr(0), caplog.text[-2000:])
    # ... and the restart held for the session it replaced is not made on top (nor on the new one).
    third = _rec(gw, "client0")
    w.run_for(ops_mod.RELOAD_RESTART_HOLDOFF + 5)
    assert _rec(gw, "client0") is third and third.alive and not third.session.restart_sent
    assert w.client_addr(0) == "198.19.0.52"




def test_a_client_before_its_push_at_a_reload_is_not_looked_up_under_no_name(opki, tmp_path, caplog):
    """soak42: a reload's pass looked the ccd file of a client whose push had not come yet (its
    login's verdict awaited; its common name is set at its push) up under the name "": under
    `ccd-exclusive` no file, so a client logging in at a SIGHUP was told to go (in the soak,
    without ccd-exclusive, a restart in place carrying its connection's options was told RESTART
    for "its client-config-dir file is gone"). Such a client's push reads its file as the reload
    left it. (Here the state is made by hand: the World runs login scripts inline.)"""
    ccd = tmp_path / "ccd"
    ccd.mkdir()
    (ccd / "client0").write_text('push "route 198.18.77.0 255.255.255.0"\n')
    w = World()
    gw, holder = w.add_reloadable_server(server_conf(opki, extra=f"client-config-dir {ccd}\nccd-exclusive\n"))
    gw.st.ccd = ccd_loader(str(ccd))
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    rec = _rec(gw, "client0")
    rec.common_name = None          # as before its push: past the handshake, its name not yet set
    mark = len(caplog.text)
    _reload_and_settle(w, gw, caplog)
    assert "RESTART" not in caplog.text[mark:] and ": disconnected" not in caplog.text[mark:], caplog.text[mark:]
    assert rec.alive and not rec.session.restart_sent
