"""tls-cert-profile across a reload: restart-only, so what runs after the reload is the level the
warning says is kept -- not the reloaded file's (a reload to `insecure` said "kept as it was"
while new handshakes took an RSA key the running `suiteb` refuses)."""
from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from tests.gateway.conftest import World, _kpem, _pem, client_conf, server_conf
from tests.gateway.test_tunnel import _up


@pytest.fixture(scope="module")
def rsa_pki() -> dict:
    """An EC CA and server (fine at every level), client0 with an RSA-2048 key (level 2, not 3),
    client1 with an EC P-256 key (level 3)."""
    ca = issue("Profile CA", None, None)
    srv = issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    cli = issue("client0", ca, ExtendedKeyUsageOID.CLIENT_AUTH, key=rsa.generate_private_key(65537, 2048))
    ec_cli = issue("client1", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    return {"ca": _pem(ca[0]), "server": (_pem(srv[0]), _kpem(srv[1])),
            "clients": {"client0": (_pem(cli[0]), _kpem(cli[1])), "client1": (_pem(ec_cli[0]), _kpem(ec_cli[1]))}}


def test_a_reload_changing_the_profile_keeps_the_running_level(rsa_pki, caplog):
    strict = server_conf(rsa_pki, extra="tls-cert-profile suiteb\n")
    w = World()
    gw, holder = w.add_reloadable_server(strict)
    w.add_client(client_conf(rsa_pki, extra="tls-cert-profile preferred\n"))
    assert not w.run(lambda: _up(w), max_time=6)            # RSA-2048 is under suiteb's level 3
    holder["conf"] = server_conf(rsa_pki, extra="tls-cert-profile insecure\n")
    with caplog.at_level(logging.WARNING):
        assert gw.ops.reload()
    assert "tls-cert-profile: changed; takes effect at restart" in caplog.text
    assert gw.opts.tls_cert_profile == "suiteb"
    w.add_client(client_conf(rsa_pki, extra="tls-cert-profile preferred\n"), ip="198.18.1.10")
    assert not w.run(lambda: _up(w, 1), max_time=8), "the reloaded file's level ran, not the one kept"
    # And the other way: a reload raising it is not applied either (an RSA client in before stays
    # welcome to its next handshake under the level that runs).
    w2 = World()
    gw2 = w2.add_server(server_conf(rsa_pki, extra="tls-cert-profile preferred\n"))
    gw2.ops.reload_source = lambda: server_conf(rsa_pki, extra="tls-cert-profile suiteb\n")
    assert gw2.ops.reload() and gw2.opts.tls_cert_profile == "preferred"
    w2.add_client(client_conf(rsa_pki, extra="tls-cert-profile preferred\n"))
    assert w2.run(lambda: _up(w2), max_time=30)


def test_a_reload_raising_the_security_level_ends_kept_clients_below_it(rsa_pki, caplog):
    """tls-cipher (reloadable) with @SECLEVEL=3: the kept RSA-2048 client is out at the reload,
    as OpenVPN's SIGHUP has it handshake anew under level 3 (it stayed until its next
    renegotiation: up to reneg-sec); the EC client, strong enough, stays."""
    base = server_conf(rsa_pki)
    w = World()
    gw, holder = w.add_reloadable_server(base)
    w.add_client(client_conf(rsa_pki, "client0"))
    w.add_client(client_conf(rsa_pki, "client1"), ip="198.18.1.10")
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    holder["conf"] = server_conf(rsa_pki, extra="tls-cipher DEFAULT:@SECLEVEL=3\n")
    with caplog.at_level(logging.WARNING):
        assert gw.ops.reload()
    assert [r.common_name for r in gw.ops.rows()] == ["client1"]
    assert "below the TLS security level" in caplog.text
