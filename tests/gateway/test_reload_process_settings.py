"""A SIGHUP reload that changes the process settings (`user`, `group`, `mlock`, `nice`): they are
applied once at start, so the reload says they take a restart instead of dropping them silently."""
from __future__ import annotations

from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_ops import opki  # noqa: F401 - the module-scoped PKI fixture
from tests.gateway.test_tunnel import _up, ping_both_ways


def test_a_reload_adding_mlock_or_a_user_says_it_takes_a_restart(opki, caplog):  # noqa: F811
    w = World()
    conf = server_conf(opki)
    gw, holder = w.add_reloadable_server(conf)
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    holder["conf"] = conf + "mlock\nuser nobody\ngroup nogroup\nnice 3\n"
    assert gw.ops.reload()
    first = conf.count("\n") + 1          # the line of `mlock` in the edited file
    for n, d in enumerate(("mlock", "user", "group", "nice")):
        assert f"reload: /mem/server.conf:{first + n}: {d}: changed; takes effect at restart" in caplog.text, d
    assert (gw.opts.mlock, gw.opts.user, gw.opts.group, gw.opts.nice) == (False, None, None, 0)
    ping_both_ways(w, 0)
