"""A hostile server's push and the client's log: the one "server pushed:" line must stay short.

Why: the line listed every pushed route and every ignored or filtered option (up to the 1024
options a push may hold, each ignored one kept up to 256 characters), so one push wrote a
~250 KB line, again at each reconnect the server asks for (RESTART), to the VM's serial console
too, where the write holds the client's one loop."""
from __future__ import annotations

import logging

from appliance.gateway.eventlog import MAX_SUMMARY_ITEMS
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up


def test_the_push_summary_line_is_bounded_whatever_the_server_pushes(pki, caplog):
    junk = "x" * 220
    pushes = "".join(f'push "route 10.{i // 250}.{i % 250}.0 255.255.255.0"\n' for i in range(500))
    pushes += "".join(f'push "unknown-{i} {junk}"\n' for i in range(450))
    w = World()
    w.add_server(server_conf(pki, extra=pushes))
    w.add_client(client_conf(pki, extra='pull-filter ignore "unknown-1"'))
    with caplog.at_level(logging.INFO, logger="vpn-appliance"):
        assert w.run(lambda: _up(w, 0), max_time=30)
        w.run_for(1)                    # the held log lines (LogHold)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("server pushed:"))
    assert len(line) < 8000, len(line)
    assert "route 10.0.0.0 255.255.255.0" in line and "500 routes" in line, line[:300]
    assert "unknown-0" in line and line.count("unknown-") <= 2 * MAX_SUMMARY_ITEMS + 2, line[-600:]
