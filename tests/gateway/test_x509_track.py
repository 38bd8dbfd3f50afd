"""x509-track through the gateway: the client-connect command of a server with x509-track lines
gets the tracked X509_* variables of the client's chain and only those (OpenVPN's
x509_setenv_track replaces the usual subject set). Variables in detail: tests/unit/test_x509_track.py;
beside Debian's OpenVPN: tests/interop/test_x509_track_vs_openvpn.py."""
from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from appliance.gateway import ops as ops_mod
from appliance.gateway.scripts import ScriptRunner
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_ops import _script, opki  # noqa: F401 - opki: the fixture
from tests.gateway.test_tunnel import _up


def test_client_connect_gets_the_tracked_variables_only(opki, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    out = tmp_path / "env"
    cc = _script(tmp_path, "cc.sh", f'env | grep "^X509_" | sort > {out}.tmp && mv {out}.tmp {out}\nexit 0\n')
    w = World()
    w.add_reloadable_server(server_conf(opki, extra=f"script-security 2\nclient-connect {cc}\n"
                                       "x509-track +CN\nx509-track SHA256\nx509-track emailAddress\n"))
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    der = x509.load_pem_x509_certificate(opki["clients"]["client0"][0].encode()).public_bytes(Encoding.DER)
    assert out.read_text().splitlines() == [
        "X509_0_CN=client0", f"X509_0_SHA256={hashlib.sha256(der).digest().hex(':').upper()}",
        "X509_1_CN=Ops test CA"]
