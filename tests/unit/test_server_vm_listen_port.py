"""The server VM's kill switch lets out the port its server listens on: the last `port` or `lport`
line's, as OpenVPN 2.6 (`rport` is a remote's). It opened `port`'s value -- what `rport` set -- so
`lport 1195`, or `port 1194` + `rport 1200`, had the server's own packets (a ping, a push after a
quiet spell whose conntrack entry lapsed) dropped at the WAN while it listened elsewhere (review50e)."""
from __future__ import annotations

import re

import pytest

from appliance.config.schema import parse_appliance_config, summary
from appliance.router.nics import Undo
from appliance.router import killswitch

SERVER = ("mode server\ntls-server\nserver 198.19.0.0 255.255.255.0\ndev tun\ndh none\n"
          "<ca>\nX\n</ca>\n<cert>\nX\n</cert>\n<key>\nX\n</key>\n")
TOML = ('[wan]\nname = "eth0"\naddress = "198.18.0.2/24"\ngateway = "198.18.0.1"\n\n'
        '[vpn]\nrole = "server"\ninline = """\n{profile}"""\n')


@pytest.mark.parametrize("lines, port", [
    ("port 1194\n", 1194),
    ("lport 1195\n", 1195),
    ("port 1194\nrport 1200\n", 1194),
    ("rport 1200\n", 1194),
    ("lport 1195\nport 1196\n", 1196),
    ("port 1196\nlport 1195\n", 1195),
])
def test_the_kill_switch_lets_out_the_port_the_server_listens_on(monkeypatch, lines, port):
    from appliance import run_toml
    applied = []
    monkeypatch.setattr(killswitch, "apply_ruleset", lambda text, netns=None: applied.append(text))
    cfg = parse_appliance_config(TOML.format(profile=SERVER + "proto udp\n" + lines), "/c/appliance.toml")
    assert cfg.vpn_options.local_port == port        # what ServerGateway.bind_addr binds
    run_toml.install_rules(cfg, "eth0", None, [], Undo())
    assert re.findall(r"udp sport (\d+) accept", applied[0]) == [str(port)]
    assert f"listen udp port {port}," in summary(cfg)
