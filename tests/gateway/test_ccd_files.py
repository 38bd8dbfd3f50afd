"""client-config-dir files the server cannot use (gateway/server_files.py, openvpn/clientpush.py):
a file that does not parse, is not UTF-8, or is a directory refuses that one client with the
file named in the log -- it was an internal error on every push request of that client, which
then hung in its handshake. Other clients get in."""
from __future__ import annotations

from appliance.gateway.server_files import ccd_loader
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up


def test_a_broken_ccd_file_refuses_its_client_and_no_other(pki, tmp_path, caplog):
    caplog.set_level("INFO")
    d = tmp_path / "ccd"
    d.mkdir()
    (d / "client0").mkdir()                               # a directory with the client's name
    (d / "client1").write_bytes(b"push \"route 10.9.0.0 255.255.0.0\"\n\xff\xfe\n")   # not UTF-8
    (d / "client2").write_text("push \"route 10.9.0.0 255.255.0.0\"\nfrobnicate 1\n")  # an error at line 2
    (d / "client3").write_text("push \"route 10.8.0.0 255.255.0.0\"\n")
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"client-config-dir {d}\n"))
    gw.st.ccd = ccd_loader(str(d))            # World reads no files; as server_files does at start
    for i in range(4):
        w.add_client(client_conf(pki, f"client{i}"))
    assert w.run(lambda: _up(w, 3), max_time=30)
    w.run_for(30)
    assert [_up(w, i) for i in range(4)] == [False, False, False, True]
    assert "internal error" not in gw.faults.counts
    assert "10.8.0.0" in [r[0] for r in w.client_nets[3].pushed.routes]
    for name, why in (("client0", "cannot read it"), ("client1", "cannot read it"),
                      ("client2", f"{d / 'client2'}:2: frobnicate")):
        assert f"client-config-dir file for '{name}': " in caplog.text and why in caplog.text, name
    assert sorted(r.common_name for r in gw.d.clients if r.session.established) == ["client3"]


def test_the_ccd_file_of_a_name_is_openvpns(tmp_path):
    """OpenVPN 2.6's file name for a client (platform_gen_path): `/` made `_`, `.` and `..`
    name no file, a leading dot is a file like any other."""
    for name, text in (("ops_dept", "push-reset\n"), (".hidden", "disable\n"), ("..x", "push-reset\n")):
        (tmp_path / name).write_text(text)
    load = ccd_loader(str(tmp_path))
    assert load("ops/dept").push_reset and load("..x").push_reset and load(".hidden").disable
    assert load("..") is None and load(".") is None and load("") is None and load("/") is None
