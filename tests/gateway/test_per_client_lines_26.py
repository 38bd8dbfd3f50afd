"""The per-client line classes (compat45) through the gateway's two other sources beside a ccd
file: management client-auth lines and a client-connect script's output file. As OpenVPN 2.6.14
imports them (multi.c multi_client_connect_mda / multi_client_connect_post, CLIENT_CONNECT_OPT_MASK
at D_IMPORT_ERRORS): an unknown or server-only line is skipped with a warning naming its source
and line and the client connects with the rest; `ping-restart` and `comp-lzo no` apply to that
client; a line we apply only server-wide (`session-timeout`) refuses it, naming the line. Before,
any such line refused the client (client-auth: "client-auth gave options we cannot use").
"""
from __future__ import annotations

import logging

from tests.gateway.conftest import World
from tests.gateway.test_mgmt_client_auth import _login, _server, _up

LOGGER = "appliance.openvpn.config.ccd"


def test_client_auth_lines_skip_what_26_skips_and_apply_the_rest(pki, tmp_path, caplog):
    w, _m, c, cid, kid = _login(pki, tmp_path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert w.server.ops.management_verdict(cid, kid, True, config=[
            "frobnicate 1", "route 198.18.9.0 255.255.255.0", "ping-restart 17", "comp-lzo no",
            'push "comp-lzo no"', "ifconfig-push 198.19.0.77 255.255.255.0"])
        assert w.run(lambda: _up(c), max_time=15)
    assert w.client_nets[0].pushed.ifconfig[0] == "198.19.0.77"
    s = w.server.d.clients[0].session
    assert (s.ping_restart, s.comp) == (17, "lzo-stub")
    said = caplog.text
    assert "<client-auth config>:1: frobnicate: skipped" in said, said
    assert "<client-auth config>:2: route: not a per-client option: skipped" in said, said


def test_client_auth_line_we_apply_only_server_wide_refuses_naming_it(pki, tmp_path, caplog):
    w, _m, c, cid, kid = _login(pki, tmp_path)
    with caplog.at_level(logging.INFO):
        assert w.server.ops.management_verdict(cid, kid, True, config=['push "route 198.18.7.0 255.255.255.0"',
                                                                      "session-timeout 60"])
        w.run_for(5)
    assert not _up(c)
    assert "<client-auth config>:2: session-timeout: a per-client session-timeout is not supported" in caplog.text


def test_client_connect_output_skips_an_unknown_line_and_applies_ping(pki, tmp_path, monkeypatch, caplog):
    from appliance.gateway import ops as ops_mod
    from appliance.gateway.scripts import ScriptRunner
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    cc = tmp_path / "cc.sh"
    cc.write_text("#!/bin/sh\nprintf 'ping 3\\nkeepalive 10 60\\nifconfig-push 198.19.0.50 255.255.255.0\\n' > \"$1\"\n")
    cc.chmod(0o755)
    w = World()
    m = _server(w, pki, tmp_path, f"script-security 2\nclient-connect {cc}\n")
    from tests.gateway.test_mgmt_client_auth import _asked, _client
    c = _client(w, pki)
    assert _asked(w, m)
    _mode, cid, kid, _env = m.asks()[0]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert w.server.ops.management_verdict(cid, kid, True)
        assert w.run(lambda: _up(c), max_time=20)
    assert w.client_nets[0].pushed.ifconfig[0] == "198.19.0.50"
    assert w.server.d.clients[0].session.ping_interval == 3
    assert "<client-connect output>:2: keepalive: not a per-client option: skipped" in caplog.text, caplog.text
