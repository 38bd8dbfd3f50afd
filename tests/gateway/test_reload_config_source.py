"""A reload reads the config file again the way the start read it. A server started with
`run --no-scripts` (its config holds an `up` script the appliance does not run) refused every
reload: the reload parsed without the flag, so the script line failed it and the server ran on
with its old settings, whatever the operator changed. A server run from an appliance TOML reads
the TOML again (test_reload_toml_sections.py; a config from a pipe: test_reload_directives.py)."""
from __future__ import annotations

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

