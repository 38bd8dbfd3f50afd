"""The TOML key table (appliance/config/keys.py): one declaration per key, and everything follows.

The README's key tables are generated from the table and must match it; a key or a whole section
added to the table loads, checks, errors and shows without any other edit."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from appliance.config import keys, schema
from appliance.config.keys import SECTIONS
from appliance.config.schema import ApplianceConfig, Lan, Vpn, Wan, parse_appliance_config, resolved_keys
from appliance.config.table import (BOOL, IPV4, IPV4_INTERFACE, Key, Section, integer, list_of,
                                    markdown_table, readme_tables, update_readme)
from appliance.openvpn.config import ConfigErrors
from appliance.openvpn.errors import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"
OVPN = "client\ndev tun\nremote 198.18.0.1 1194\n<ca>\nx\n</ca>\n"
BASE = '[wan]\nname = "eth0"\ndhcp = true\n\n[vpn]\nrole = "client"\nconfig = "client.ovpn"\n'


def _readme_rows() -> dict[str, list[str]]:
    """Every `| \\`key\\` |` row under each `### \\`[section]\\`` heading of README's Keys chapter,
    generated or not (so a hand-written row that is not in the table is caught too)."""
    text = README.read_text()
    keys_part = text[text.index("\n## Keys\n"):text.index("\n## Errors\n")]
    rows: dict[str, list[str]] = {}
    section = None
    for line in keys_part.splitlines():
        m = re.match(r"### `\[([a-z0-9_]+)\]`", line)
        if m:
            section = m.group(1)
            rows[section] = []
        m = re.match(r"\| `([^`]+)` \|", line)
        if m:
            assert section is not None, line
            rows[section].append(m.group(1))
    return rows


def test_every_key_in_the_table_is_in_the_readme_and_vice_versa():
    table = {s.name: [k.name for k in s.keys] for s in SECTIONS}
    assert _readme_rows() == table


def test_readme_key_tables_are_the_generated_ones():
    text = README.read_text()
    assert readme_tables(text) == {s.name: markdown_table(s) for s in SECTIONS}, \
        "README.md is out of date: run `python -m appliance.config.keys README.md`"
    assert update_readme(text, SECTIONS) == text


def test_update_readme_rewrites_only_the_marked_tables(tmp_path):
    p = tmp_path / "README.md"
    p.write_text("# x\n\n<!-- keys [wan]: generated -->\n| stale |\n<!-- /keys -->\n\nprose\n")
    assert keys.main([str(p)]) == 0
    assert p.read_text() == f"# x\n\n<!-- keys [wan]: generated -->\n{markdown_table(keys.WAN)}\n<!-- /keys -->\n\nprose\n"


def test_every_key_has_a_one_line_help_and_a_field():
    for s in SECTIONS:
        names = [f.name for f in dataclasses.fields(s.cls)]
        for k in s.keys:
            assert k.help and "\n" not in k.help and "|" not in (k.doc or k.help), (s.name, k.name)
            assert k.name in names
            assert dataclasses.fields(s.cls)[names.index(k.name)].default == k.default


def test_public_dataclasses_keep_their_names_and_fields():
    assert [f.name for f in dataclasses.fields(Wan)] == ["name", "mac", "address", "dhcp", "gateway", "dns",
                                                      "address6", "gateway6", "slaac"]
    assert [f.name for f in dataclasses.fields(Lan)][:4] == ["name", "mac", "address", "nat"]
    assert {"dns_forwarder", "address6", "ipv6"} <= {f.name for f in dataclasses.fields(Lan)}
    assert [f.name for f in dataclasses.fields(Vpn)] == ["role", "config", "inline", "ignore_scripts", "inline_line"]
    assert [f.name for f in dataclasses.fields(ApplianceConfig)][:6] == [
        "path", "appliance", "wan", "lan", "vpn", "vpn_options"]
    assert Wan().dns == () and Lan().nat is True and Vpn().role == "client"
    assert schema.ApplianceSection().hostname == "vpn-appliance"
    with pytest.raises(dataclasses.FrozenInstanceError):
        Wan().dhcp = True  # type: ignore[misc]


def _with(section: Section, *extra: Key, rules=()) -> Section:
    return dataclasses.replace(section, keys=section.keys + extra, rules=section.rules + tuple(rules))


def _errors(text: str, path: str, sections) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        parse_appliance_config(text, path, sections)
    e = ei.value
    return [str(x) for x in (e.errors if isinstance(e, ConfigErrors) else [e])]


def test_a_new_key_is_one_table_entry(tmp_path):
    """What issue 9 will do: [lan] status_interval and dns are each one Key(...) line."""
    (tmp_path / "client.ovpn").write_text(OVPN)
    p = str(tmp_path / "appliance.toml")
    lan = _with(keys.LAN,
                Key("status_interval", integer(1, 3600), "seconds between status lines", default=10),
                Key("dns", list_of(IPV4, "addresses", "address strings"), "name servers handed to LAN hosts",
                    default=(), example='["198.18.50.1"]'))
    table = (keys.APPLIANCE, keys.WAN, lan, keys.VPN)
    toml = BASE + '\n[lan]\nname = "eth1"\naddress = "198.18.50.1/24"\nstatus_interval = 30\ndns = ["198.18.50.1"]\n'
    cfg = parse_appliance_config(toml, p, table)
    assert cfg.lan.status_interval == 30 and [str(a) for a in cfg.lan.dns] == ["198.18.50.1"]
    assert cfg.lan.nat is True and cfg.wan.dhcp
    # shown by `check`
    assert f"lan.status_interval = 30   # {p}:12: seconds between status lines" in resolved_keys(cfg, table)
    # the default when left out
    assert parse_appliance_config(toml.replace("status_interval = 30\n", ""), p, table).lan.status_interval == 10
    # checked, with the key's line, and listed among the allowed keys
    bad = toml.replace("status_interval = 30", "status_interval = 0").replace('["198.18.50.1"]', '[1]') \
        + "colour = 1\n"
    assert _errors(bad, p, table) == [
        f"{p}:12: lan.status_interval: 0 is not in 1..3600",
        f"{p}:13: lan.dns: expected address strings, got integer 1",
        f"{p}:14: lan.colour: unknown key (allowed in [lan]: {', '.join(lan.key_names)})",
    ]
    assert _errors(toml.replace("= 30", '= "30"'), p, table) == [
        f"{p}:12: lan.status_interval: expected an integer, got string '30'"]
    # and documented
    assert "| `status_interval` | integer | `10` | seconds between status lines |" in markdown_table(lan)
    # the shipped table is untouched
    assert "status_interval" not in [f.name for f in dataclasses.fields(Lan)]


def test_a_new_section_is_one_table_entry(tmp_path):
    (tmp_path / "client.ovpn").write_text(OVPN)
    p = str(tmp_path / "appliance.toml")

    def v6_needs_v4(s):
        if s["address"] is not None and not s["enabled"]:
            s.err("address", "not used with `enabled = false`")

    extra = Section("ipv6", "Ipv6", "IPv6 on the LAN", absent="none", keys=(
        Key("enabled", BOOL, "route IPv6 too", default=True),
        Key("address", IPV4_INTERFACE, "a stand-in address kind", example='"198.18.60.1/24"'),
    ), rules=(v6_needs_v4,))
    table = SECTIONS + (extra,)
    cfg = parse_appliance_config(BASE + '[ipv6]\naddress = "198.18.60.1/24"\n', p, table)
    assert cfg.ipv6.enabled is True and str(cfg.ipv6.address) == "198.18.60.1/24"
    assert parse_appliance_config(BASE, p, table).ipv6 is None
    assert _errors(BASE + '[ipv6]\nenabled = false\naddress = "198.18.60.1/24"\n', p, table) == [
        f"{p}:10: ipv6.address: not used with `enabled = false`"]
    assert _errors(BASE + "[ipv7]\n", p, table) == [
        f"{p}:8: [ipv7]: unknown section (expected one of: appliance, wan, lan, vpn, ipv6)"]


def test_check_lists_every_key_with_its_line(tmp_path):
    (tmp_path / "client.ovpn").write_text(OVPN)
    p = str(tmp_path / "appliance.toml")
    cfg = parse_appliance_config(BASE + '\n[lan]\nmac = "52:54:00:AB:34:56"\naddress = "198.18.50.1/24"\n', p)
    lines = resolved_keys(cfg).splitlines()
    assert len(lines) == sum(len(s.keys) for s in SECTIONS)
    assert f"wan.name = eth0   # {p}:2: interface name" in lines
    assert f"wan.dhcp = true   # {p}:3: get address and gateway by DHCP" in lines
    assert "wan.gateway = -   # (not set): default gateway for a static address" in lines
    assert "appliance.log_level = info   # (default): how much is logged: error|warning|info|debug" in lines
    assert f"lan.mac = 52:54:00:ab:34:56   # {p}:10: MAC address the NIC is found by" in lines
    assert "lan.nat = true   # (default)" in "\n".join(lines)
    assert f"vpn.config = {tmp_path / 'client.ovpn'}   # {p}:7:" in "\n".join(lines)
    no_lan = resolved_keys(parse_appliance_config(BASE, p))
    assert "[lan]: not given (router mode off)" in no_lan


def test_required_key_and_enum_messages_come_from_the_entry(tmp_path):
    (tmp_path / "client.ovpn").write_text(OVPN)
    p = str(tmp_path / "appliance.toml")
    assert _errors(BASE + '[lan]\nname = "eth1"\n', p, SECTIONS) == [
        f"{p}:8: [lan]: needs `address = \"198.18.50.1/24\"` (the appliance's address on the LAN)"]
    assert _errors(BASE.replace('role = "client"', 'role = "peer"'), p, SECTIONS) == [
        f"{p}:6: vpn.role: 'peer' is not one of client|server"]


def test_readme_full_example_loads(tmp_path):
    """The README's example uses only keys of the table, with values the table accepts."""
    text = README.read_text()
    example = text[text.index("## Full example"):]
    example = example[example.index("```toml\n") + 8:]
    example = example[:example.index("```")]
    (tmp_path / "client.ovpn").write_text(OVPN)
    cfg = parse_appliance_config(example, str(tmp_path / "appliance.toml"))
    assert cfg.lan is not None and cfg.vpn.config == str(tmp_path / "client.ovpn")


def test_import_template_comments_name_only_known_keys():
    """`vpn-appliance import` writes commented-out alternatives (`# address = ...`): they must be
    keys of the section they are in, so uncommenting one never gives "unknown key"."""
    from appliance.config import ovpn_import
    known = {s.name: set(s.key_names) for s in SECTIONS}
    checked = 0
    for template in (ovpn_import._TEMPLATE, ovpn_import._LAN_CLIENT, ovpn_import._LAN_SERVER):
        section = None
        for line in template.splitlines():
            m = re.match(r"#?\s*\[([a-z]+)\]", line)
            if m:
                section = m.group(1)
                continue
            names = re.findall(r"^#?\s*([a-z_]+) = ", line) + re.findall(r"# or: ([a-z_]+) = ", line)
            for name in names:
                assert section is not None and name in known[section], (section, line)
                checked += 1
    assert checked >= 15
