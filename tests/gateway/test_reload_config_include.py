"""A reload of a split config (`config FILE`) reads the included file again: an edit there takes
effect, and a mistake there refuses the reload (the server runs on with its settings) rather than
applying half a config."""
from __future__ import annotations

from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up


def test_a_reload_reads_the_included_file_again(pki, tmp_path, caplog):
    common = tmp_path / "common.conf"
    common.write_text(server_conf(pki).replace("port 1194\n", ""))
    top = tmp_path / "server.conf"
    top.write_text("port 1194\nconfig common.conf\n")
    w = World()
    gw = w.add_server(top.read_text(), path=str(top))
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    assert gw.opts.client_to_client
    common.write_text("bogus-directive\n" + common.read_text())
    assert not gw.ops.reload(), "a mistake in the included file did not refuse the reload"
    assert f"{common}:1: bogus-directive" in caplog.text, "the refusal did not name the included file's line"
    assert gw.opts.client_to_client and gw.d.clients[0].alive
    common.write_text(common.read_text().replace("bogus-directive\n", "").replace("client-to-client\n", ""))
    assert gw.ops.reload(), "the reload was refused"
    assert not gw.opts.client_to_client, "the reload did not read the edited included file"
    assert gw.d.clients[0].alive
