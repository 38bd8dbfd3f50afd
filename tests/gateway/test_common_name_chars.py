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


def test_a_line_separator_in_a_common_name_adds_no_option_through_a_client_connect_script(tmp_path, monkeypatch):
    """A client-connect script that notes the client's name in its options file, as a comment:
    OpenVPN reads lines up to LF only, so a name holding U+2028 (or U+2029, U+0085: remap_name
    keeps them, as OpenVPN's does) stays one comment line. Read with str.splitlines, the rest of
    the name was a line of its own, an iroute the CA never gave: the server routed that LAN to
    this client. Each of these characters is tried."""
    import stat

    from appliance.gateway import ops as ops_mod
    from appliance.gateway.scripts import ScriptRunner
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    ca = issue("Names CA", None, None)
    srv = issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    seps = ["\u2028", "\u2029", "\u0085"]
    names = {f"c{i}": issue(f"c{i}{sep}iroute 198.18.5{i}.0 255.255.255.0", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
             for i, sep in enumerate(seps)}
    p = dict(ca=_pem(ca[0]), server=(_pem(srv[0]), _kpem(srv[1])),
             clients={n: (_pem(c), _kpem(k)) for n, (c, k) in names.items()})
    cc = tmp_path / "cc.sh"
    cc.write_text('#!/bin/sh\nprintf "# connected: %s\\n" "$common_name" > "$1"\n')
    cc.chmod(cc.stat().st_mode | stat.S_IXUSR)
    w = World()
    gw = w.add_server(server_conf(p, extra=f"script-security 2\nclient-connect {cc}\n"))
    for n in names:
        w.add_client(client_conf(p, n))
    assert w.run(lambda: all(_up(w, i) for i in range(len(names))), max_time=60)
    assert len(gw.d.clients) == len(names)
    for rec in gw.d.clients:
        assert rec.iroutes == [], repr(rec.common_name)
    assert list(gw.d.iroutes) == []
