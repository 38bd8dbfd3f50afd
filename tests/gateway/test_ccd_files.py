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


def test_the_default_file_applies_to_clients_without_their_own(pki, tmp_path):
    """OpenVPN 2.6 reads client-config-dir/DEFAULT for a client without a file of its own; a
    DEFAULT saying `disable` lets only clients with their own file in (a common allow-list). Ours
    ignored DEFAULT: every client got in, with none of its options."""
    d = tmp_path / "ccd"
    d.mkdir()
    (d / "DEFAULT").write_text("disable\n")
    (d / "client0").write_text("push \"route 198.18.77.0 255.255.255.0\"\n")
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"client-config-dir {d}\n"))
    gw.st.ccd = ccd_loader(str(d))
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    w.run_for(20)
    assert [_up(w, i) for i in range(2)] == [True, False]
    assert sorted(r.common_name for r in gw.d.clients if r.session.established) == ["client0"]
    # Without `disable`, DEFAULT's options are the file-less client's.
    (d / "DEFAULT").write_text("push \"route 198.18.88.0 255.255.255.0\"\n")
    w.add_client(client_conf(pki, "client2"))
    assert w.run(lambda: _up(w, 2), max_time=30)
    assert "198.18.88.0" in [r[0] for r in w.client_nets[2].pushed.routes]
    assert "198.18.88.0" not in [r[0] for r in w.client_nets[0].pushed.routes]


def test_ccd_exclusive_counts_no_default_file(tmp_path):
    """ccd-exclusive wants a file of the client's own: DEFAULT does not count, and a client whose
    certificate says CN=DEFAULT is refused (OpenVPN 2.6: "--client-config-dir authentication
    failed"). It got in with the DEFAULT file as its own."""
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from appliance.certs import issue
    from tests.gateway.conftest import _kpem, _pem
    ca = issue("DEFAULT test CA", None, None)
    srv = issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    names = ["DEFAULT", "client1", "client2"]
    certs = {n: issue(n, ca, ExtendedKeyUsageOID.CLIENT_AUTH) for n in names}
    p = dict(ca=_pem(ca[0]), server=(_pem(srv[0]), _kpem(srv[1])),
             clients={n: (_pem(c), _kpem(k)) for n, (c, k) in certs.items()})
    d = tmp_path / "ccd"
    d.mkdir()
    (d / "DEFAULT").write_text("push \"route 198.18.88.0 255.255.255.0\"\n")
    (d / "client2").write_text("push \"route 198.18.77.0 255.255.255.0\"\n")
    w = World()
    gw = w.add_server(server_conf(p, extra=f"client-config-dir {d}\nccd-exclusive\n"))
    gw.st.ccd = ccd_loader(str(d))
    for n in names:
        w.add_client(client_conf(p, n))
    assert w.run(lambda: _up(w, 2), max_time=30)
    w.run_for(20)
    assert [_up(w, i) for i in range(3)] == [False, False, True]
