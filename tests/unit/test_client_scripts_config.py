"""The client's up/down/route-up/route-pre-down/ipchange lines (config/d_ops.py) and their checks
once the profile is read (config/client_scripts.py): one argument as OpenVPN 2.6 takes it (ipchange's
commas are spaces), script-security (up/down refused without 2, the others noted: 2.6 skips
them), with `user`/`group` the ones 2.6 runs as root go to the root helper (root_commands), a
server's refused, the appliance TOML's refused; the argv (gateway/client_scripts.py tunnel_words)."""
from __future__ import annotations

import pytest

from appliance.gateway.client_scripts import tunnel_words
from appliance.openvpn.config import ConfigError, parse_config

BASE = "client\ndev tun\nremote 198.18.0.1 1194\n<ca>\n</ca>\n"      # 5 lines


@pytest.fixture
def script(tmp_path):
    s = tmp_path / "s.sh"
    s.write_text("#!/bin/sh\n")
    s.chmod(0o755)
    return s


def _err(text: str) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(text, "/p/x.ovpn")
    return str(e.value)


def test_each_is_read_with_its_own_arguments(script):
    o = parse_config(BASE + f"script-security 2\nup \"{script} a 'b c'\"\ndown {script}\nroute-up {script}\n"
                     f"route-pre-down {script}\nipchange {script},--x\nup-restart\ndown-pre\n", "/p/x.ovpn")
    assert o.up_script == [str(script), "a", "b c"] and o.down_script == [str(script)]
    assert o.route_up_script == o.route_pre_down_script == [str(script)]
    assert o.ipchange_script == [str(script), "--x"]
    assert o.up_restart and o.down_pre


def test_more_than_one_argument_is_refused(script):
    assert _err(BASE + f"script-security 2\nup {script} x\n").startswith("/p/x.ovpn:7: up: takes one argument")


@pytest.mark.parametrize("d", ["up", "down"])
def test_up_and_down_need_script_security_2(script, d):
    msg = _err(BASE + f"{d} {script}\n")
    assert msg.startswith(f"/p/x.ovpn:6: {d}: needs `script-security 2`")


@pytest.mark.parametrize("d", ["route-up", "route-pre-down", "ipchange"])
def test_the_others_are_noted_and_not_run_without_it(script, d):
    o = parse_config(BASE + f"{d} {script}\n", "/p/x.ovpn")
    assert f"/p/x.ovpn:6: {d}: not run without `script-security 2` (as OpenVPN 2.6, which only warns)" in o.notes
    from appliance.gateway.client_scripts import ClientScriptPlan, ClientScripts
    plan = ClientScriptPlan(o, None, ClientScripts(inline=True))
    assert plan.route_up is plan.route_pre_down is plan.ipchange is None


def test_the_root_helper_runs_what_openvpn_runs_before_its_drop(script):
    from appliance.openvpn.config.client_scripts import root_commands
    o = parse_config(BASE + f"script-security 2\nuser nobody\ngroup nogroup\n" + "".join(
        f"{d} {script}\n" for d in ("up", "route-up", "ipchange", "route-pre-down", "down")), "/p/x.ovpn")
    assert root_commands(o) == {"up": [str(script)], "route-up": [str(script)], "ipchange": [str(script)]}
    o = parse_config(BASE + f"user nobody\nroute-up {script}\nipchange {script}\n", "/p/x.ovpn")
    assert root_commands(o) == {}           # script-security 1: 2.6 runs neither


def test_a_server_refuses_them(script):
    with pytest.raises(ConfigError) as e:
        parse_config(f"server 198.19.0.0 255.255.255.0\nscript-security 2\nup {script}\n", "/p/s.conf",
                     lambda p: b"x")
    assert "/p/s.conf:3: up: a server's up/down scripts are not run here" in str(e.value)


def test_the_appliance_toml_refuses_them(script):
    with pytest.raises(ConfigError) as e:
        parse_config(BASE + f"script-security 2\nup {script}\n", "/p/x.ovpn", no_scripts=True)
    assert str(e.value).startswith("/p/x.ovpn:7: up: the VM image runs no scripts")
    o = parse_config(BASE + f"script-security 2\nup {script}\n", "/p/x.ovpn", ignore_scripts=True, no_scripts=True)
    assert o.up_script is None


def test_tunnel_words_as_run_up_down_prints_them():
    assert tunnel_words({"dev": "tun0", "tun_mtu": "1500", "ifconfig_local": "10.8.0.2",
                         "ifconfig_netmask": "255.255.255.0"}, "init") == \
        ["tun0", "1500", "0", "10.8.0.2", "255.255.255.0", "init"]
    assert tunnel_words({"dev": "tun0", "tun_mtu": "1500", "ifconfig_local": "10.8.0.6",
                         "ifconfig_remote": "10.8.0.5"}, "restart")[4:] == ["10.8.0.5", "restart"]
    assert tunnel_words({"dev": "tun0", "tun_mtu": "1500"}, "init")[3:5] == ["", ""]     # IPv6 only
