"""fuzz44 (reload-restart target): a connected client whose ccd file no longer parses at a SIGHUP
must end where a fresh connect under the same files ends -- refused (clientpush.py _ccd_file). Found
by fuzz44 as a strict xfail while reload44 made the reload end such a client (its removed iroute had
stayed routed to it); merged together, this holds the two ways in agreement."""
from __future__ import annotations

from appliance.gateway.server_files import ccd_loader
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_ops import opki  # noqa: F401 (fixture)
from tests.gateway.test_tunnel import _up


def test_a_client_whose_ccd_file_breaks_at_a_reload_is_treated_as_a_fresh_connect(opki, tmp_path, caplog):  # noqa: F811
    ccd = tmp_path / "ccd"
    ccd.mkdir()
    (ccd / "client0").write_text("ifconfig-push 198.19.0.50 255.255.255.0\n")
    w = World()
    gw, _holder = w.add_reloadable_server(server_conf(opki, extra=f"client-config-dir {ccd}\nduplicate-cn\n"))
    gw.st.ccd = ccd_loader(str(ccd))
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    (ccd / "client0").write_text("ifconfig-push 198.19.0\n")        # does not parse
    mark = len(caplog.text)
    assert gw.ops.reload()
    assert w.run(lambda: "clients kept" in caplog.text[mark:], max_time=10)
    kept = [r for r in gw.d.clients if r.alive and r.session.established and r.common_name == "client0"]
    w.add_client(client_conf(opki, "client0"))          # a fresh connect with the same name (duplicate-cn)
    w.run_for(20)
    fresh_refused = "client-config-dir file for 'client0'" in caplog.text[mark:] and not _up(w, 1)
    connected = any(r.alive for r in kept)
    # The rule: either both ways let it in, or neither does.
    assert not (connected and fresh_refused), "kept, while a fresh connect is refused"
    assert connected or fresh_refused
