"""OpenVPN 2.6's start-up warning for a client config that takes any certificate its CA signed
as the server's (no remote-cert-tls, remote-cert-eku, verify-x509-name or peer-fingerprint):
another client's certificate then passes, so that client can play the server. The same words,
once per run: not again at each reconnection, and never when a check is configured."""
from __future__ import annotations

import logging

import pytest

from appliance.openvpn.settings import NO_SERVER_CERT_CHECK
from tests.gateway.conftest import World, client_conf, server_conf


def _up(w: World) -> bool:
    return w.clients[0].conn is not None and w.clients[0].conn.was_up


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "No server certificate verification" in r.getMessage()]


def test_no_server_check_warns_once_across_reconnections(pki, caplog):
    caplog.set_level(logging.INFO, logger="vpn-appliance")
    w = World()
    w.add_server(server_conf(pki, "tcp-server"))
    w.add_client(client_conf(pki, proto="tcp-client").replace("remote-cert-tls server\n", ""))
    assert w.run(lambda: _up(w), max_time=30)
    w.client_ports[0].streams[-1].peer.close()           # the server side hangs up: reconnect
    assert w.run(lambda: _up(w) and w.clients[0].connections >= 2, max_time=60), "no reconnection"
    assert _warnings(caplog) == [NO_SERVER_CERT_CHECK]
    assert NO_SERVER_CERT_CHECK == ("WARNING: No server certificate verification method has been enabled.  "
                                    "See http://openvpn.net/howto.html#mitm for more info.")


@pytest.mark.parametrize("check", ["remote-cert-tls server", "remote-cert-eku \"TLS Web Server Authentication\"",
                                   "verify-x509-name server name-prefix", "peer-fingerprint FP"])
def test_any_server_check_means_no_warning(pki, caplog, check):
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    if check.endswith("FP"):
        cert = x509.load_pem_x509_certificate(pki["server"][0].encode())
        check = "peer-fingerprint " + hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest().hex(":")
    caplog.set_level(logging.INFO, logger="vpn-appliance")
    w = World()
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki).replace("remote-cert-tls server\n", check + "\n"))
    assert w.run(lambda: _up(w), max_time=30)
    assert _warnings(caplog) == []


def test_remote_cert_ku_alone_is_not_a_server_check(pki, caplog):
    """As OpenVPN 2.6: key usage bits do not tell a server's certificate from a client's."""
    caplog.set_level(logging.INFO, logger="vpn-appliance")
    w = World()
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki).replace("remote-cert-tls server\n", "remote-cert-ku\n"))
    assert _warnings(caplog) == [NO_SERVER_CERT_CHECK]
