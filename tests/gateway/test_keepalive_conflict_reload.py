"""compat49 refuses `keepalive` beside ping/ping-restart/ping-exit at start, as OpenVPN 2.6.14
(helper_keepalive). Where that refusal must NOT reach (review49f): a PUSH is not the config (a
client with keepalive takes a pushed ping/ping-restart, as 2.6's client does), nor a ccd file's
ping lines beside the server's keepalive. Where it must: a reload of a config that became
invalid is refused at the line and the server runs on with the timers it had (no crash), and
OpenVPN's command line (`--keepalive` beside a profile's `ping`) is one config with the file."""
from __future__ import annotations

import logging

import pytest

from appliance.openvpn.config import ConfigError, load_command_line, parse_ccd, parse_config
from appliance.openvpn.keymethod import parse_push_reply_untrusted
from tests.gateway.conftest import World, server_conf

PEM = "<ca>\nx\n</ca>\n<cert>\nx\n</cert>\n<key>\nx\n</key>\n"


def test_a_pushed_ping_reaches_a_client_whose_profile_has_keepalive():
    opts = parse_config("client\ndev tun\nremote 198.18.60.9\nkeepalive 10 60\n" + PEM, "/mem/c.conf",
                        read_file=lambda p: b"x")
    assert (opts.ping, opts.ping_restart) == (10, 60)
    pushed = parse_push_reply_untrusted("PUSH_REPLY,ping 5,ping-restart 30,ifconfig 10.8.0.6 10.8.0.5")
    assert (pushed.ping, pushed.ping_restart) == (5, 30)


def test_ccd_ping_lines_are_taken_beside_the_servers_keepalive():
    c = parse_ccd("ping 5\nping-restart 30\n", "/mem/ccd/client0")
    assert (c.ping, c.ping_restart) == (5, 30)


def test_command_line_keepalive_beside_the_files_ping_is_refused_naming_the_file(tmp_path):
    conf = tmp_path / "p.conf"
    conf.write_text("client\ndev tun\nremote 198.18.60.9\nping 10\n" + PEM)
    with pytest.raises(ConfigError, match=r"keepalive: conflicts with ping \(.*p\.conf:4\)"):
        load_command_line(["--config", str(conf), "--keepalive", "10", "60"])


def test_a_reload_that_adds_ping_beside_keepalive_is_refused_and_the_server_runs_on(pki, caplog):
    w = World()
    conf = server_conf(pki, extra="keepalive 10 60\n")
    gw, holder = w.add_reloadable_server(conf)
    before = (gw.opts.ping, gw.opts.ping_restart)
    assert before == (10, 120)
    holder["conf"] = conf + "ping 5\n"
    with caplog.at_level(logging.ERROR, logger="vpn-appliance"):
        gw.ops.reload()
        assert w.run(lambda: "reload: the new config is not used" in caplog.text, max_time=10), caplog.text
    assert "keepalive: conflicts with ping" in caplog.text
    assert (gw.opts.ping, gw.opts.ping_restart) == before
