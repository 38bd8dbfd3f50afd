"""crl-verify against the chain the server verified, not the one the client chose to send
(openvpn/tls.py, openvpn/crl.py): with a sub-CA in the server's `ca`, a client may send its leaf
alone; the server builds the chain from its store, and a sub-CA the root's CRL revokes must refuse
every certificate under it, as OpenVPN (CRL_CHECK_ALL on the verified chain) does."""
from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.certs import issue
from appliance.openvpn.crl import make_crl
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up


def _pem(c) -> str:
    return c.public_bytes(serialization.Encoding.PEM).decode()


def _kpem(k) -> str:
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()).decode()


def _sub_ca(name: str, root) -> tuple:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(root[0].subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(True, 0), True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
            .sign(root[1], hashes.SHA256()))
    return cert, key


@pytest.fixture(scope="module")
def chain_pki() -> dict:
    root = issue("Chain root CA", None, None)
    sub = _sub_ca("Chain sub CA", root)
    srv = issue("server", root, ExtendedKeyUsageOID.SERVER_AUTH)
    leaf = issue("client0", sub, ExtendedKeyUsageOID.CLIENT_AUTH)
    direct = issue("client1", root, ExtendedKeyUsageOID.CLIENT_AUTH)
    return {"ca": _pem(root[0]) + _pem(sub[0]), "server": (_pem(srv[0]), _kpem(srv[1])), "root": root, "sub": sub,
            "clients": {"client0": (_pem(leaf[0]), _kpem(leaf[1])),        # the leaf alone, no chain
                        "client1": (_pem(direct[0]), _kpem(direct[1]))}}


@pytest.mark.parametrize("revoke_sub", [False, True])
def test_a_revoked_sub_ca_refuses_a_client_that_sends_only_its_leaf(chain_pki, tmp_path, revoke_sub, caplog):
    caplog.set_level("INFO")
    root, sub = chain_pki["root"], chain_pki["sub"]
    crl = tmp_path / "crl.pem"
    # The root's CRL (revoking the sub-CA or nothing) and the sub-CA's own (empty) CRL.
    crl.write_bytes(make_crl(root[0], root[1], [sub[0].serial_number] if revoke_sub else [])
                    + make_crl(sub[0], sub[1], []))
    w = World()
    gw = w.add_server(server_conf(chain_pki, extra=f"crl-verify {crl}\n"))
    # The client's `ca` is the root alone, so OpenSSL cannot add the sub-CA to what it sends.
    w.add_client(client_conf(chain_pki, "client0").replace(chain_pki["ca"], _pem(root[0])))
    w.add_client(client_conf(chain_pki, "client1"))
    assert w.run(lambda: _up(w, 1), max_time=30), "a client of the root (not revoked) got no tunnel"
    w.run_for(20)
    assert _up(w, 0) is not revoke_sub, "a client under a revoked sub-CA got a tunnel" if revoke_sub else \
        "a client under a sub-CA got no tunnel"
    if revoke_sub:
        assert f"certificate serial {sub[0].serial_number} (CN=Chain sub CA) is revoked by the CRL" in caplog.text
    assert "internal error" not in gw.faults.counts


def _both_connected_under_reloadable_crl(chain_pki, tmp_path):
    """A server whose crl-verify file (root's and sub-CA's CRLs, nobody revoked) a reload reads
    again, with client0 (its certificate under the sub-CA, its CA file the root's only) and
    client1 (the root's directly) connected: (the world, the CRL file, the server, the server's
    records by common name)."""
    root, sub = chain_pki["root"], chain_pki["sub"]
    crl = tmp_path / "crl.pem"
    crl.write_bytes(make_crl(root[0], root[1], []) + make_crl(sub[0], sub[1], []))
    w = World()
    conf = server_conf(chain_pki, extra=f"crl-verify {crl}\n")
    gw = w.add_server(conf)
    gw.ops.reload_source = lambda: conf
    w.add_client(client_conf(chain_pki, "client0").replace(chain_pki["ca"], _pem(root[0])))
    w.add_client(client_conf(chain_pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    return w, crl, gw, {r.common_name: r for r in gw.d.clients}


def test_a_reload_revoking_a_sub_ca_disconnects_the_clients_under_it(chain_pki, tmp_path):
    root, sub = chain_pki["root"], chain_pki["sub"]
    _w, crl, gw, recs = _both_connected_under_reloadable_crl(chain_pki, tmp_path)
    crl.write_bytes(make_crl(root[0], root[1], [sub[0].serial_number]) + make_crl(sub[0], sub[1], []))
    assert gw.ops.reload()
    assert not recs["client0"].alive, "a client under the revoked sub-CA kept its tunnel after the reload"
    assert recs["client1"].alive


def test_a_reload_that_adds_crl_verify_revoking_a_sub_ca_disconnects_the_clients_under_it(chain_pki, tmp_path):
    """crl-verify added by a reload (not there at start): the clients' chains had not been kept
    (only with crl-verify), so their leaves alone met the new CRL and a revoked sub-CA's clients
    kept their tunnels; OpenVPN's SIGHUP restarts every client, which meets the CRL."""
    root, sub = chain_pki["root"], chain_pki["sub"]
    crl = tmp_path / "crl.pem"
    crl.write_bytes(make_crl(root[0], root[1], [sub[0].serial_number]) + make_crl(sub[0], sub[1], []))
    w = World()
    gw = w.add_server(server_conf(chain_pki))
    gw.ops.reload_source = lambda: server_conf(chain_pki, extra=f"crl-verify {crl}\n")
    w.add_client(client_conf(chain_pki, "client0").replace(chain_pki["ca"], _pem(root[0])))
    w.add_client(client_conf(chain_pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    recs = {r.common_name: r for r in gw.d.clients}
    assert gw.ops.reload()
    assert not recs["client0"].alive, "a client under the revoked sub-CA kept its tunnel after the reload"
    assert recs["client1"].alive


def test_a_crl_naming_its_sub_ca_another_way_refuses_the_revoked_leaf(chain_pki, tmp_path, caplog):
    """The sub-CA's CRL gives its issuer as `CHAIN   SUB ca` in PrintableString (the sub-CA is
    `Chain sub CA` in UTF8String): one name to OpenSSL and OpenVPN, so the CRL revokes client0.
    It revoked nobody here (exact name match), and client0 got its tunnel."""
    from cryptography.x509.name import _ASN1Type
    caplog.set_level("INFO")
    root, sub = chain_pki["root"], chain_pki["sub"]
    leaf = x509.load_pem_x509_certificate(chain_pki["clients"]["client0"][0].encode())
    same = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CHAIN   SUB ca", _ASN1Type.PrintableString)])
    crl = tmp_path / "crl.pem"
    crl.write_bytes(make_crl(root[0], root[1], []) + make_crl(sub[0], sub[1], [leaf.serial_number], issuer=same))
    w = World()
    conf = server_conf(chain_pki, extra=f"crl-verify {crl}\n")
    gw = w.add_server(conf)
    w.add_client(client_conf(chain_pki, "client0").replace(chain_pki["ca"], _pem(root[0])))
    w.add_client(client_conf(chain_pki, "client1"))
    assert w.run(lambda: _up(w, 1), max_time=30)
    w.run_for(20)
    assert not _up(w, 0), "a revoked client got a tunnel"
    assert f"certificate serial {leaf.serial_number} (CN=client0) is revoked by the CRL" in caplog.text
    # A reload whose CRL is another CA's (it names neither CA in `ca`) is refused; client1 stays.
    other = issue("Other CA", None, None)
    crl.write_bytes(make_crl(*other, [leaf.serial_number]))
    gw.ops.reload_source = lambda: conf
    assert not gw.ops.reload()
    assert "names no certificate in `ca`" in caplog.text
    assert _up(w, 1) and all(r.alive for r in gw.d.clients)


class _Unreadable:
    """A chain certificate OpenSSL kept that cryptography cannot read (tests/engine/der_edit.py)."""

    def to_cryptography(self):
        raise ValueError("error parsing asn1 value: ParseError { kind: InvalidValue }")


def test_a_chain_that_cannot_be_read_at_a_reload_does_not_keep_revoked_clients_connected(chain_pki, tmp_path):
    """The reload checks every connected client against the new CRL; one whose kept chain
    cannot be read raised out of that loop, and the clients after it -- one the new CRL revokes
    -- kept their tunnels. Now that client is disconnected (its chain cannot be checked) and the
    loop goes on."""
    root, sub = chain_pki["root"], chain_pki["sub"]
    _w, crl, gw, recs = _both_connected_under_reloadable_crl(chain_pki, tmp_path)
    assert [r.common_name for r in gw.d.clients][0] == "client0"      # checked first
    for ks in recs["client0"].session.keys.values():
        if ks.tls is not None and ks.tls.peer_cert is not None:
            ks.tls._chain_x509, ks.tls._chain = [_Unreadable()], None   # noqa: SLF001
    direct_serial = x509.load_pem_x509_certificate(chain_pki["clients"]["client1"][0].encode()).serial_number
    crl.write_bytes(make_crl(root[0], root[1], [direct_serial]) + make_crl(sub[0], sub[1], []))
    gw.ops.reload()
    assert not recs["client1"].alive, "a client the reloaded CRL revokes kept its tunnel"
    assert not recs["client0"].alive, "a client whose chain could not be checked kept its tunnel"


def test_a_chain_certificate_that_cannot_be_read_gives_the_scripts_depth_0_and_ends_cleanly(chain_pki):
    """The scripts' environment lists every certificate of the chain (X509_1_*, tls_id_1, ...);
    one cryptography cannot read (a fingerprint-pinned peer sends what it likes above its own)
    leaves the chain's variables out instead of raising out of the connect or the end."""
    w = World()
    gw = w.add_server(server_conf(chain_pki))
    w.add_client(client_conf(chain_pki, "client1"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    rec = gw.d.clients[0]
    for ks in rec.session.keys.values():
        if ks.tls is not None and ks.tls.peer_cert is not None:
            ks.tls._chain_x509, ks.tls._chain = [_Unreadable()], None   # noqa: SLF001
    env = gw.ops.env(rec, gw.ops.info[id(rec)], "client-connect")
    assert env["X509_0_CN"] == "client1" and not any(k.startswith("X509_1_") for k in env), env
    gw.d.kick(rec, w.clock(), "test")
    assert not rec.alive
    assert rec.session.peer_chain == [] and rec.session.peer_certificate is not None
