"""A server run from an appliance TOML, reloaded (SIGHUP) after an edit of the TOML.

- Key material that does not go together in the [vpn] profile: the start says where (the TOML's
  line, validate_runtime); the reload refused it without a file or line (check_key_material's
  bare message), so the operator had the whole TOML to search.
- An edit of [wan], [lan] or [appliance] (an address, the log level): applied once at start
  (addresses, firewall rules, hostname), a reload ignored it without a word, and the operator
  believed it in force. Now each changed key is a warning at its line, as a changed `port` is.
- A TOML whose role became client: refused at the role's line, the server runs on (held before too).
- Its inline [vpn] profile: the reload read the config's path, the TOML itself, and parsed it as an
  OpenVPN config, so no reload of such a server ever applied.
"""
from __future__ import annotations

import functools
import logging

from appliance.config.schema import load_appliance_config, server_reload, validate_runtime, vpn_options_again
from appliance.openvpn.errors import ConfigError
from tests.gateway.conftest import World, server_conf


def _toml(conf: str) -> str:
    return ('[wan]\nname = "eth0"\ndhcp = true\n\n[vpn]\nrole = "server"\nignore_scripts = true\n'
            f"inline = '''\n{conf}'''\n")


def _server(pki, tmp_path, conf: str | None = None):
    conf = conf or server_conf(pki)
    toml = tmp_path / "appliance.toml"
    toml.write_text(_toml(conf))
    cfg = load_appliance_config(str(toml))
    w = World()
    gw = w.add_server("", opts=vpn_options_again(str(toml)))
    gw.ops.reload_options = functools.partial(server_reload, str(toml), cfg)     # as run_toml sets it
    return gw, conf, toml


def _reload_log(gw, caplog) -> tuple[bool, list[str]]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vpn-appliance"):
        ok = gw.ops.reload()
    return ok, [r.getMessage() for r in caplog.records if "reload" in r.getMessage()]


def test_bad_key_material_at_a_reload_is_located_in_the_toml_as_at_start(pki, tmp_path, caplog):
    gw, conf, toml = _server(pki, tmp_path)
    toml.write_text(_toml(conf.replace(pki["server"][0], pki["clients"]["client1"][0])))
    try:
        validate_runtime(load_appliance_config(str(toml)))
        raise AssertionError("the start took a certificate that is not the key's")
    except ConfigError as e:
        at_start = str(e)
    # At the <key> block's line (inline line N is TOML line 8 + N): the key is not the certificate's.
    assert at_start.startswith(f"{toml}:{8 + conf.splitlines().index('<key>') + 1}: key: "), at_start
    ok, lines = _reload_log(gw, caplog)
    assert not ok
    assert any(at_start in line for line in lines), (at_start, lines)


def test_an_edit_of_the_other_sections_is_said_to_wait_for_a_restart(pki, tmp_path, caplog):
    gw, conf, toml = _server(pki, tmp_path)
    edited = _toml(conf.replace("client-to-client\n", "")).replace(
        'dhcp = true', 'address = "198.18.7.2/24"\ngateway = "198.18.7.1"').replace(
        "[vpn]", '[appliance]\nlog_level = "debug"\n\n[vpn]')
    toml.write_text(edited)
    ok, lines = _reload_log(gw, caplog)
    assert ok and not gw.opts.client_to_client          # the profile's edit applies
    said = "\n".join(lines)
    for key, line in (("wan.dhcp", None), ("wan.address", 3), ("wan.gateway", 4), ("appliance.log_level", 7)):
        assert f"{key}: changed; takes effect at restart" in said, (key, lines)
        if line is not None:
            assert f"{toml}:{line}: {key}:" in said, (key, lines)
    toml.write_text(_toml(conf))                        # as started: nothing to say
    ok, lines = _reload_log(gw, caplog)
    assert ok and not any("takes effect at restart" in line for line in lines), lines


def test_a_toml_turned_client_is_refused_at_its_role_line(pki, tmp_path, caplog):
    gw, conf, toml = _server(pki, tmp_path)
    toml.write_text(_toml(conf).replace('role = "server"', 'role = "client"'))
    ok, lines = _reload_log(gw, caplog)
    assert not ok and any(f"{toml}:6: vpn.role:" in line for line in lines), lines
    assert gw.opts.client_to_client


def test_a_reload_applies_the_edited_inline_profile_scripts_still_skipped(pki, tmp_path):
    conf = server_conf(pki, extra="up /etc/openvpn/up.sh\n")            # skipped: ignore_scripts = true
    gw, conf, toml = _server(pki, tmp_path, conf)
    tun = gw.opts.dev
    assert gw.opts.client_to_client
    toml.write_text(_toml(conf.replace("client-to-client\n", "")))
    assert gw.ops.reload(), "the reload of the TOML's inline profile was refused"
    assert not gw.opts.client_to_client, "the reload did not apply the edited profile"
    assert gw.opts.dev == tun
