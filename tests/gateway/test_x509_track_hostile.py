"""A client certificate with hostile field values (a huge x509-track subjectAltName, thousands
of subject attributes): what reaches the management interface stays within OpenVPN's line
length and keeps a reading management client connected, and its variables are read once per
session, not at each environment the loop makes. (Values in detail: tests/unit/test_x509_track.py.)"""
from __future__ import annotations

import ipaddress
import socket

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.certs import issue
from appliance.gateway.management import OUT_LIMIT, MgmtConn
from appliance.gateway.ops import ENV_LINE_MAX
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_ops import _kpem, _pem, opki  # noqa: F401 - opki: the fixture
from tests.gateway.test_tunnel import _up


def _many_alt_names(pki: dict, n: int) -> dict:
    """`pki` with a client `evil` whose subjectAltName holds `n` IPv6 addresses (~18 n bytes)."""
    ca_cert, ca_key = pki["ca_pair"]
    c, k = issue("evil", pki["ca_pair"], ExtendedKeyUsageOID.CLIENT_AUTH)
    b = (x509.CertificateBuilder().subject_name(c.subject).issuer_name(ca_cert.subject).public_key(k.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(c.not_valid_before_utc)
         .not_valid_after(c.not_valid_after_utc)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
         .add_extension(x509.SubjectAlternativeName(
             [x509.IPAddress(ipaddress.IPv6Address(2**128 - 1 - i)) for i in range(n)]), False))
    return {**pki, "clients": {**pki["clients"], "evil": (_pem(b.sign(ca_key, hashes.SHA256())), _kpem(k))}}


def _many_attributes(pki: dict, n: int) -> dict:
    """`pki` with a client `evil` whose subject holds `n` empty OUs (11 bytes each) and its CN."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil")]
                     + [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "", _validate=False)] * n)
    c, k = issue("evil", pki["ca_pair"], ExtendedKeyUsageOID.CLIENT_AUTH, name=name)
    return {**pki, "clients": {**pki["clients"], "evil": (_pem(c), _kpem(k))}}


def _read_all(s: socket.socket) -> bytes:
    out = b""
    try:
        while chunk := s.recv(1 << 16):
            out += chunk
    except BlockingIOError:
        pass
    return out


def _connect_watched(pki: dict, extra: str, tmp_path):
    """A server with a management client reading all it is sent, and the client `evil`
    connected: (the management connection, the bytes it read)."""
    w = World()
    gw, _ = w.add_reloadable_server(server_conf(pki, extra=f"management {tmp_path}/m.sock unix\n{extra}"))
    mine, theirs = socket.socketpair()
    mine.setblocking(False)
    theirs.setblocking(False)
    tool = MgmtConn(mine, gw.ops.mgmt, need_password=False)
    gw.ops.mgmt.conns.append(tool)
    got = b""
    try:
        w.add_client(client_conf(pki, "evil"))

        def up() -> bool:
            nonlocal got
            got += _read_all(theirs)
            tool.flush()                   # (the in-memory pump does not poll a real socket)
            return _up(w, 0) and b">CLIENT:ENV,END" in got
        assert w.run(up, max_time=30)
        assert not tool.closed and tool in gw.ops.mgmt.conns, "the management client was cut off"
        return tool, got
    finally:
        theirs.close()


def test_a_huge_tracked_alt_name_is_cut_as_openvpn_and_keeps_the_management_client(opki, tmp_path):  # noqa: F811
    """5,000 IPv6 alt names (a 90 KB certificate) print as a 260 KB X509_0_subjectAltName: its
    >CLIENT:ENV line went past the management client's whole allowance and cut it off."""
    _tool, got = _connect_watched(_many_alt_names(opki, 5000), "x509-track subjectAltName\n", tmp_path)
    lines = got.split(b"\r\n")
    alt = next(x for x in lines if x.startswith(b">CLIENT:ENV,X509_0_subjectAltName="))
    assert len(alt) == ENV_LINE_MAX < OUT_LIMIT
    assert alt.startswith(b">CLIENT:ENV,X509_0_subjectAltName=IP Address:FFFF:FFFF:")
    assert b">CLIENT:ENV,common_name=evil" in lines


def test_a_subject_of_thousands_of_attributes_keeps_the_management_client(opki, tmp_path):  # noqa: F811
    """8,800 empty OUs (a 97 KB certificate): as many X509_0_OU_N lines, 265 KB in one
    >CLIENT:ESTABLISHED, more than OUT_LIMIT: it cut off a management client that reads."""
    _tool, got = _connect_watched(_many_attributes(opki, 8800), "", tmp_path)
    block = got[got.index(b">CLIENT:ESTABLISHED,"):]
    block = block[:block.index(b">CLIENT:ENV,END")]
    assert len(block) > OUT_LIMIT
    assert b">CLIENT:ENV,X509_0_OU_8799=\r\n" in block


def test_a_sessions_certificate_variables_are_read_once_not_at_each_environment(opki, tmp_path, monkeypatch):  # noqa: F811
    """The environment is made on the loop for client-connect, learn-address, each management
    notification and client-disconnect; a certificate of 8,800 subject attributes cost ~60-80 ms
    each time. Its variables are read once per session and certificate now."""
    from appliance.gateway import ops as ops_mod
    from appliance.gateway.scripts import ScriptRunner
    from tests.gateway.test_ops import _script
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    read: list[int] = []
    real = ops_mod.cert_env
    monkeypatch.setattr(ops_mod, "cert_env", lambda c, depth, track=(): read.append(depth) or real(c, depth, track))
    ok = _script(tmp_path, "ok.sh", "exit 0\n")
    pki = _many_attributes(opki, 2000)
    w = World()
    gw, _ = w.add_reloadable_server(server_conf(pki, extra=f"script-security 2\nclient-connect {ok}\nlearn-address {ok}\n"
                                   f"client-disconnect {ok}\nmanagement {tmp_path}/m.sock unix\n"))
    w.add_client(client_conf(pki, "evil"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    rec = next(iter(gw.d.clients))
    env = gw.ops.env(rec, gw.ops._info(rec), "client-disconnect")
    assert env["X509_0_OU_1999"] == "" and env["X509_0_CN"] == "evil"
    assert read.count(0) == 1, read
