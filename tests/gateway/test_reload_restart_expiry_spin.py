"""fuzz44 (reload-restart target): the reload restarts' hold-off memory is forgotten by a timer at
`t + RELOAD_RESTART_HOLDOFF`, but the forgetting compared `now - t >= RELOAD_RESTART_HOLDOFF`: for
a restart noted at t = 1008.1 the timer fires at 1038.1, where 1038.1 - 1008.1 is
29.999999999999773 in floating point -- nothing forgotten, the same timer armed again for the same
instant, and the loop spun on it (on the tests' fake clock for good; on the real clock until the
clock moved on). The expiry now uses the timer's own sum (ops.py _forget_old_restarts)."""
from __future__ import annotations

from appliance.gateway import ops as ops_mod
from appliance.gateway.server_files import ccd_loader
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_ops import opki  # noqa: F401 (fixture)
from tests.gateway.test_tunnel import _up

T_RESTART = 1008.1      # (T_RESTART + 30) - T_RESTART < 30 in floating point


def test_a_reload_restart_at_an_inexact_time_is_forgotten_without_spinning(opki, tmp_path, caplog):  # noqa: F811
    assert (T_RESTART + ops_mod.RELOAD_RESTART_HOLDOFF) - T_RESTART < ops_mod.RELOAD_RESTART_HOLDOFF
    ccd = tmp_path / "ccd"
    ccd.mkdir()
    w = World()
    gw, _holder = w.add_reloadable_server(server_conf(opki, extra=f"client-config-dir {ccd}\n"))
    gw.st.ccd = ccd_loader(str(ccd))
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    assert w.clock.t < T_RESTART
    w.clock.t = T_RESTART
    (ccd / "client0").write_text("ifconfig-push 198.19.0.50 255.255.255.0\n")
    assert gw.ops.reload()
    assert "told RESTART to reconnect for it" in caplog.text
    assert gw.ops._reload_restarted
    end = w.clock.t + ops_mod.RELOAD_RESTART_HOLDOFF + 5
    assert w.run(lambda: w.clock.t >= end, max_time=40, max_steps=20_000), \
        f"the loop spun at {w.clock.t} (the hold-off's expiry timer)"
    assert not gw.ops._reload_restarted, "the hold-off memory was not forgotten"
    assert _up(w, 0) and w.client_addr(0) == "198.19.0.50"
