"""A certificate's common name reaches the log, the status file, ccd lookups, scripts and the
management interface: control characters in it become `_`, as OpenVPN 2.6 does
(string_mod_remap_name), so a CA-issued name with a line break cannot forge status lines. Other
characters (UTF-8, commas) stay, as in OpenVPN."""
from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up

EVIL = "evil\nCLIENT_LIST,forged,203.0.113.9:1,10.0.0.9,,1,1\x1b[2J"


def _pem(c) -> str:
    return c.public_bytes(serialization.Encoding.PEM).decode()


def _kpem(k) -> str:
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()).decode()


def test_control_characters_in_a_common_name_become_underscores():
    ca = issue("Names CA", None, None)
    srv = issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    evil = issue(EVIL, ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    utf = issue("Jürgen, Müller", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    p = dict(ca=_pem(ca[0]), server=(_pem(srv[0]), _kpem(srv[1])), clients={"evil": (_pem(evil[0]), _kpem(evil[1])), "utf": (_pem(utf[0]), _kpem(utf[1]))})
    w = World()
    gw = w.add_server(server_conf(p))
    w.add_client(client_conf(p, "evil"))
    w.add_client(client_conf(p, "utf"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    assert sorted(r.common_name for r in gw.d.clients) == sorted([EVIL.replace("\n", "_").replace("\x1b", "_"),
                                                                  "Jürgen, Müller"])
    for v in (1, 2, 3):
        lines = gw.ops.status_lines(v)
        assert not any(line.startswith("CLIENT_LIST,forged") for line in lines), v
        assert all(line.replace("\t", " ").isprintable() for line in lines), v     # v3: tab-separated
    rec = next(r for r in gw.d.clients if r.common_name.startswith("evil"))
    env = gw.ops.env(rec, gw.ops.info[id(rec)], "client-connect")
    assert all(v.isprintable() for v in env.values())
