"""A CA whose name holds one attribute twice in a relative name (`O=Lab + O=Lab, CN=Dup CA`):
OpenSSL reads it, so OpenVPN 2.6 verifies its clients and gives a client-connect script the
CA's X509_1_O and X509_1_O_1; cryptography refuses the whole name. Ours raised out of the
script environment (an internal error at each of the client's tries, the client never up) and
out of crl-verify's reading. The DER reader (openvpn/dername.py) reads such a name."""
from __future__ import annotations

import stat
import warnings

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.certs import issue
from lab.pki import with_raw_bytes
from tests.gateway.conftest import World, _kpem, _pem, client_conf, server_conf
from tests.gateway.test_tunnel import _up


def _pki() -> dict:
    rdn = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LabA"),
                                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LabB")])
    cn = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "Dup CA")])
    ca0, key = issue("unused", None, None, x509.Name([rdn, cn]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ca = with_raw_bytes(ca0, key, b"LabB", b"LabA")           # its subject and issuer
        srv, cli = (issue(n, (ca0, key), eku) for n, eku in (("server", ExtendedKeyUsageOID.SERVER_AUTH),
                                                              ("client0", ExtendedKeyUsageOID.CLIENT_AUTH)))
        srv, cli = ((with_raw_bytes(c, key, b"LabB", b"LabA"), k) for c, k in (srv, cli))   # their issuer
    return {"ca": _pem(ca), "server": (_pem(srv[0]), _kpem(srv[1])),
            "clients": {"client0": (_pem(cli[0]), _kpem(cli[1]))}}


def test_a_client_of_a_ca_with_a_repeated_attribute_gets_in_with_its_scripts_variables(tmp_path, monkeypatch):
    from appliance.gateway import ops as ops_mod
    from appliance.gateway.scripts import ScriptRunner
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    pki = _pki()
    seen = tmp_path / "seen"
    cc = tmp_path / "cc.sh"
    cc.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$X509_1_O\" \"$X509_1_O_1\" \"$tls_id_1\" > {seen}\nexit 0\n")
    cc.chmod(cc.stat().st_mode | stat.S_IXUSR)
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"script-security 2\nclient-connect {cc}\n"))
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    assert "internal error" not in gw.faults.counts
    # As OpenVPN 2.6 sets them (X509_NAME_print_ex: ` + ` inside a relative name).
    assert seen.read_text().splitlines() == ["LabA", "LabA", "O=LabA + O=LabA, CN=Dup CA"]
