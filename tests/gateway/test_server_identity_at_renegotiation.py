"""The server's certificate at a renegotiation, from the client's side.

OpenVPN 2.6's client verifies the server's chain at every handshake (ca, remote-cert-tls,
verify-x509-name, tls-verify) but locks nothing across them: its locks (locked_cn, the cert hash
set) are the server's (multi.c). Ours holds the server to its name (stricter: a renegotiation
must not carry the tunnel over to another server of the same CA, "TLS object CN attempted to
change") but not to its certificates: a server renews its own, and our server's reload takes a
new `cert` keeping its clients -- each of our clients was dropped at its next renegotiation
("certs unexpectedly changed during mid-session reauth"), where Debian's carried on."""
from __future__ import annotations

from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from tests.gateway.conftest import World, _kpem, _pem, client_conf, server_conf
from tests.gateway.test_ops import _cns, opki  # noqa: F401 - the fixture
from tests.gateway.test_tls_verify import _calls, _env, _verifier, inline  # noqa: F401
from tests.gateway.test_tunnel import _up, ping_both_ways


def _reload_with_server_cert(w: World, gw, holder: dict, opki, cn: str):  # noqa: F811
    cert, key = issue(cn, opki["ca_pair"], ExtendedKeyUsageOID.SERVER_AUTH)
    holder["conf"] = holder["conf"].replace(opki["server"][0], _pem(cert)).replace(opki["server"][1], _kpem(key))
    assert gw.ops.reload()
    gw.d.clients[0].session.renegotiate(w.clock())
    w.run_for(15)
    return cert


def test_a_renewed_server_certificate_keeps_the_tunnel_and_is_verified_again(opki, tmp_path, inline):  # noqa: F811
    tv, log = _verifier(tmp_path)
    w = World()
    gw, holder = w.add_reloadable_server(server_conf(opki))
    c = w.add_client(client_conf(opki, "client0", extra=f"script-security 2\ntls-verify {tv}\n"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    assert len(_calls(log)) == 2
    cert = _reload_with_server_cert(w, gw, holder, opki, "server")
    assert c.connections == 1, "the client dropped its tunnel for the server's renewed certificate"
    assert c.counters.renegotiations >= 1 and _cns(gw) == ["client0"]
    assert len(_calls(log)) == 4                          # the new chain checked by tls-verify too
    assert _env(tmp_path, 0)["tls_serial_0"] == str(cert.serial_number)
    ping_both_ways(w)


def test_a_server_certificate_of_another_name_at_a_renegotiation_is_refused(opki, caplog):  # noqa: F811
    w = World()
    gw, holder = w.add_reloadable_server(server_conf(opki))
    c = w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    _reload_with_server_cert(w, gw, holder, opki, "other-server")
    assert "TLS object CN attempted to change from 'server' to 'other-server'" in caplog.text
    # A new connection has no lock: it verifies the new certificate and comes up (as 2.6).
    assert w.run(lambda: c.connections >= 2 and _up(w, 0), max_time=30)
    ping_both_ways(w)
