"""`setenv NAME VALUE` and `setenv-safe NAME VALUE` reach every command's environment, as OpenVPN
2.6's global environment (gateway/script_env.py); before, both were accepted and did nothing, so
a server whose auth or connect script read a variable from its config got none. A setenv
variable never replaces the peer's or the process's own (a `setenv common_name` cannot stand in
for the certificate's). The names OpenVPN reads as settings are applied as it applies them."""
from __future__ import annotations

import pytest

from appliance.openvpn.config import ConfigError, parse_config
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up

SETENV = ('setenv APP_ZONE "blue zone"\nsetenv EMPTY\nsetenv common_name forged\nsetenv daemon_pid 1\n'
          "setenv-safe TAG green\nsetenv APP_ZONE red\n")


def test_setenv_variables_reach_the_commands_under_the_peers_and_the_processes(pki):
    w = World()
    gw = w.add_server(server_conf(pki, extra=SETENV))
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    rec = gw.d.clients[0]
    for env in (gw.ops.env(rec, gw.ops.info[id(rec)], "client-connect"), gw.ops.user_pass_env(rec),
                gw.ops.verify_env("198.18.0.9", 4000)):
        assert env["APP_ZONE"] == "red" and env["EMPTY"] == "" and env["OPENVPN_TAG"] == "green"
        assert env["daemon_pid"] != "1"
    assert gw.ops.env(rec, gw.ops.info[id(rec)], "client-connect")["common_name"] == "client0"
    assert any(x == ">CLIENT:ENV,OPENVPN_TAG=green" for x in gw.ops._env_lines(rec, gw.ops.info[id(rec)]))
    gw.ops.reload_source = lambda: server_conf(pki, extra="setenv APP_ZONE green\n")
    gw.ops.reload()
    env = gw.ops.env(rec, gw.ops.info[id(rec)], "client-connect")
    assert env["APP_ZONE"] == "green" and "OPENVPN_TAG" not in env


@pytest.mark.parametrize("line,field,value", [
    ("setenv SERVER_POLL_TIMEOUT 7", "server_poll_timeout", 7.0),
    ("setenv opt server-poll-timeout 9", "server_poll_timeout", 9.0),
    ("setenv-safe X", "setenv", {"OPENVPN_X": ""}),
])
def test_setenv_names_openvpn_reads_as_settings(pki, line, field, value):
    assert getattr(parse_config(client_conf(pki, extra=line + "\n"), "/mem/c.ovpn"), field) == value


@pytest.mark.parametrize("line,why", [
    ("setenv GENERIC_CONFIG 1", "generic configuration"),
    ("setenv A b c", "at most one value"),
    ("setenv-safe " + "N" * 56, "longer than 55 bytes"),
])
def test_setenv_lines_openvpn_refuses_or_would_ignore_fail_at_their_line(pki, line, why):
    text = client_conf(pki, extra=line + "\n")
    n = text.splitlines().index(line) + 1
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "/mem/c.ovpn")
    assert f"/mem/c.ovpn:{n}: {line.split()[0]}: " in str(ei.value) and why in str(ei.value)
