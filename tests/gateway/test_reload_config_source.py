"""A reload reads the config file again the way the start read it. A server started with
`run --no-scripts` (its config holds an `up` script the appliance does not run) refused every
reload: the reload parsed without the flag, so the script line failed it and the server ran on
with its old settings, whatever the operator changed. A server run from an appliance TOML reads
the TOML again (a config from a pipe: test_reload_directives.py)."""
from __future__ import annotations

import functools

from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up


def test_a_server_started_with_no_scripts_reloads_with_them_skipped(pki, tmp_path):
    conf = server_conf(pki, extra="up /etc/openvpn/up.sh\n")
    f = tmp_path / "server.conf"
    f.write_text(conf)
    w = World()
    gw = w.add_server(conf, path=str(f), ignore_scripts=True)
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    assert gw.opts.client_to_client
    f.write_text(conf.replace("client-to-client\n", ""))
    assert gw.ops.reload(), "the reload was refused for the up script that the start skipped"
    assert not gw.opts.client_to_client, "the reload did not apply the edited config"
    assert gw.d.clients[0].alive


def _toml(conf: str) -> str:
    return ('[wan]\nname = "eth0"\ndhcp = true\n\n[vpn]\nrole = "server"\nignore_scripts = true\n'
            f"inline = '''\n{conf}'''\n")


def test_a_server_run_from_an_appliance_toml_reloads_its_inline_profile(pki, tmp_path):
    """The reload read the config's path, which for an inline [vpn] profile is the TOML itself:
    parsed as an OpenVPN config it failed, and no reload of such a server ever applied."""
    from appliance.config.schema import load_appliance_config, server_reload, vpn_options_again
    conf = server_conf(pki, extra="up /etc/openvpn/up.sh\n")
    toml = tmp_path / "appliance.toml"
    toml.write_text(_toml(conf))
    cfg = load_appliance_config(str(toml))
    w = World()
    gw = w.add_server("", opts=vpn_options_again(str(toml)))
    gw.ops.reload_options = functools.partial(server_reload, str(toml), cfg)     # as run_toml sets it
    assert gw.opts.client_to_client and gw.opts.dev == cfg.tun_name
    toml.write_text(_toml(conf.replace("client-to-client\n", "")))
    assert gw.ops.reload(), "the reload of the TOML's inline profile was refused"
    assert not gw.opts.client_to_client, "the reload did not apply the edited profile"
    assert gw.opts.dev == cfg.tun_name
