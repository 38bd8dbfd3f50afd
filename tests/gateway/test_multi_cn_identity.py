"""A client certificate whose subject has two CNs (`/O=x/CN=alice/CN=admin`) is `admin` on our
server, as on OpenVPN 2.6 (the last CN): the ccd file, the status file, the scripts' and the
management interface's environment all see the one name. A CA that lets a user append a CN
must not give them a name other than the one OpenVPN gives them."""
from __future__ import annotations

from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue, subject
from appliance.gateway.server_files import ccd_loader
from tests.gateway.conftest import World, _kpem, _pem, client_conf, server_conf
from tests.gateway.test_tunnel import _up


def test_the_last_cn_picks_the_ccd_file_and_is_the_name_everywhere(tmp_path):
    ca = issue("Multi-CN CA", None, None)
    srv = issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    two = issue("", ca, ExtendedKeyUsageOID.CLIENT_AUTH, subject("/O=x/CN=alice/CN=admin"))
    p = dict(ca=_pem(ca[0]), server=(_pem(srv[0]), _kpem(srv[1])), clients={"two": (_pem(two[0]), _kpem(two[1]))})
    d = tmp_path / "ccd"
    d.mkdir()
    (d / "alice").write_text("ifconfig-push 198.19.0.50 255.255.255.0\n")
    (d / "admin").write_text("ifconfig-push 198.19.0.60 255.255.255.0\n")
    w = World()
    gw = w.add_server(server_conf(p, extra=f"client-config-dir {d}\n"))
    gw.st.ccd = ccd_loader(str(d))            # World reads no files; as server_files does at start
    w.add_client(client_conf(p, "two"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    assert w.client_addr(0) == "198.19.0.60"
    rec = gw.d.clients[0]
    assert rec.common_name == "admin"
    assert any(line.startswith("CLIENT_LIST,admin,") for line in gw.ops.status_lines(2)), gw.ops.status_lines(2)
    env = gw.ops.env(rec, gw.ops.info[id(rec)], "client-connect")
    assert env["common_name"] == "admin"
    # OpenVPN's X509_0_<field> variables: every attribute, a repeated one numbered on; X509_1_*
    # are the CA's (depth 1 of the verified chain).
    assert {k: v for k, v in env.items() if k.startswith("X509_")} == {
        "X509_0_O": "x", "X509_0_CN": "alice", "X509_0_CN_1": "admin", "X509_1_CN": "Multi-CN CA"}
    assert env["tls_id_0"] == "O=x, CN=alice, CN=admin"
