"""Profiles as server install scripts write them for Linux clients: `script-security 2` with
`up`/`down` running update-resolv-conf or update-systemd-resolved. Those turn on the built-in host
DNS; any other script is run (config/client_scripts.py; its checks: tests/unit/test_client_scripts_config.py),
skipped with --no-scripts, refused in the appliance TOML (the VM image runs none)."""
from __future__ import annotations

import argparse

import pytest

from appliance import cli
from appliance.gateway.client_status import ClientStatusFile
from appliance.host.resolver import HostDns
from appliance.lan.status_line import StatusLine
from appliance.openvpn.config import ConfigError, parse_config

BASE = "client\ndev tun\nremote 198.18.0.1 1194\n<ca>\n</ca>\n"      # 5 lines


@pytest.mark.parametrize("lines, helper", [
    ("script-security 2\nup /etc/openvpn/update-resolv-conf\ndown /etc/openvpn/update-resolv-conf\n",
     "update-resolv-conf"),
    ("script-security 2\nup /etc/openvpn/scripts/update-systemd-resolved\nup-restart\n"
     "down /etc/openvpn/scripts/update-systemd-resolved\ndown-pre\n", "update-systemd-resolved"),
    ("script-security 2\nup \"/usr/local/libexec/openvpn/update-systemd-resolved --dns-fallback\"\n",
     "update-systemd-resolved"),
    ("--script-security 2\n--up update-resolv-conf.sh --verbose\n", "update-resolv-conf"),
])
def test_well_known_dns_helpers_ask_for_the_built_in_dns(lines, helper):
    o = parse_config(BASE + lines, "/p/x.ovpn")
    assert o.dns_helper == helper
    notes = [n for n in o.notes if helper in n]
    assert notes and notes[0].startswith("/p/x.ovpn:7: up: ") and "built-in DNS" in notes[0]


@pytest.mark.parametrize("name, directive", [
    ("custom-up.sh", "up"), ("update-resolv-conf-local", "down"), ("update-resolv-conf-not", "route-up"),
    ("update-resolv-conf", "ipchange")])
def test_other_scripts_are_scripts_to_run(tmp_path, name, directive):
    s = tmp_path / name
    s.write_text("#!/bin/sh\n")
    s.chmod(0o755)
    o = parse_config(BASE + f"script-security 2\n{directive} {s}\n", "/p/x.ovpn")
    assert o.dns_helper is None and getattr(o, directive.replace("-", "_") + "_script") == [str(s)]
    with pytest.raises(ConfigError) as e:       # checked at its line as OpenVPN checks it
        parse_config(BASE + f"script-security 2\n{directive} {tmp_path}/missing\n", "/p/x.ovpn")
    assert str(e.value).startswith(f"/p/x.ovpn:7: {directive}: ") and "no such file" in str(e.value)


def test_no_scripts_skips_them_with_a_note():
    o = parse_config(BASE + "script-security 2\nup /etc/openvpn/custom-up.sh\n", "/p/x.ovpn", ignore_scripts=True)
    assert o.dns_helper is None
    assert "/p/x.ovpn:7: up: script skipped (--no-scripts)" in o.notes


def test_check_says_so(tmp_path, capsys):
    from cryptography.hazmat.primitives.serialization import Encoding
    from appliance.certs import issue
    ca = issue("test CA", None, None)[0].public_bytes(Encoding.PEM).decode()
    f = tmp_path / "p.ovpn"
    body = BASE.replace("<ca>\n", "<ca>\n" + ca) + "script-security 2\n"
    n = body.count("\n")
    f.write_text(body + "up /etc/openvpn/update-resolv-conf\nup /etc/openvpn/x.sh\n")
    assert cli.main(["check", str(f)]) == 2
    assert f"{f}:{n + 2}: up: " in capsys.readouterr().err
    assert cli.main(["check", "--no-scripts", str(f)]) == 0
    out = capsys.readouterr().out
    assert f"# note: {f}:{n + 1}: up: update-resolv-conf is not run: the built-in DNS handling" in out
    assert f"# note: {f}:{n + 2}: up: script skipped (--no-scripts)" in out


def _args(**kw) -> argparse.Namespace:
    base = dict(dns=False, no_dns=False, status_interval=None)
    return argparse.Namespace(**{**base, **kw})


def _kinds(opts, **kw) -> list[type]:
    return [type(o) for o in cli._host_observers(opts, _args(**kw))]


def test_which_observers_a_host_run_gets(tmp_path):
    plain = parse_config(BASE)
    helper = parse_config(BASE + "up /etc/openvpn/update-resolv-conf\n")
    assert _kinds(plain) == []                                   # never touch the resolver unasked
    assert _kinds(plain, dns=True) == [HostDns]
    assert _kinds(helper) == [HostDns]
    assert _kinds(helper, no_dns=True) == []
    st = parse_config(BASE + f"status {tmp_path}/st 5\nstatus-version 2\n")
    assert _kinds(st, status_interval=0) == [ClientStatusFile, StatusLine]


TOML = """\
[wan]
name = "eth0"
dhcp = true

[vpn]
role = "client"
config = "client.ovpn"
"""


def test_the_appliance_toml_refuses_scripts_unless_ignore_scripts(tmp_path):
    from appliance.config.schema import load_appliance_config
    (tmp_path / "client.ovpn").write_text(BASE + "script-security 2\nup /etc/openvpn/update-resolv-conf\n"
                                          "route-up /etc/openvpn/custom.sh\n")
    p = tmp_path / "appliance.toml"
    p.write_text(TOML)
    with pytest.raises(ConfigError) as e:
        load_appliance_config(str(p))
    assert f"{tmp_path}/client.ovpn:8: route-up: " in str(e.value) and "ignore_scripts = true" in str(e.value)
    p.write_text(TOML + "ignore_scripts = true\n")
    cfg = load_appliance_config(str(p))
    assert cfg.vpn_options.dns_helper == "update-resolv-conf"
    assert any(n.endswith("route-up: script skipped (--no-scripts)") for n in cfg.vpn_options.notes)


def test_host_switches_on_a_toml_say_where_the_toml_keeps_them(capsys):
    assert cli.main(["run", "--no-scripts", "/nonexistent/appliance.toml"]) == 2
    assert "[vpn] ignore_scripts" in capsys.readouterr().err
