"""A server's push as large as our client takes, seen again by tls-verify at each renegotiation.

Why: OpenVPN 2.6's client runs tls-verify with its one environment set, so from the second
handshake on it holds everything the tunnel's UP put there, the pushed `dhcp-option`s as
foreign_option_N among it (gateway/updown.py verify_base). 1,024 options of ~2,000 bytes (the
most our client takes: keymethod.MAX_PUSHED_OPTIONS, MAX_TEXT_MESSAGE) and a server certificate
with a few hundred subject attributes pass the kernel's ARG_MAX: the command could not start
(E2BIG), the renegotiation was refused and the tunnel restarted, at every renegotiation, for as
long as that server pushed so. Now the largest variables but the chain's own are left out (named
in the log) and the command runs (gateway/tlsverify.py fit_calls)."""
from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import appliance.openvpn.control as control_mod
import appliance.openvpn.reliable as reliable_mod
import appliance.openvpn.session as session_mod
from appliance.certs import issue
from appliance.openvpn.clientpush import ClientPush
from tests.gateway.conftest import World, _kpem, _pem, client_conf, server_conf
from tests.gateway.test_tls_verify import _calls, _env, _verifier, inline  # noqa: F401
from tests.gateway.test_tunnel import _up, ping_both_ways


def _pki_with_a_long_server_subject() -> dict:
    ca = issue("CA", None, None)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"unit-{i:03d}-" + "u" * 50)
                      for i in range(300)] + [x509.NameAttribute(NameOID.COMMON_NAME, "server")])
    srv = issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH, name=name)
    cl = issue("client0", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    return {"ca": _pem(ca[0]), "server": (_pem(srv[0]), _kpem(srv[1])),
            "clients": {"client0": (_pem(cl[0]), _kpem(cl[1]))}}


def test_renegotiations_after_the_largest_push_still_run_tls_verify(tmp_path, inline, monkeypatch,  # noqa: F811
                                                                    caplog):
    pki = _pki_with_a_long_server_subject()
    # One option per PUSH_REPLY message, each just under the 2,047 bytes a client reads. Our own
    # server sends them all at once, which its send queue and the client's control budget
    # refuse; a hostile server paces them (64 a second), which this test does not wait for.
    big = [f"dhcp-option DOMAIN-SEARCH d{i:04d}." + "a" * 1980 for i in range(1024)]
    monkeypatch.setattr(reliable_mod, "SEND_QUEUE_MAX", 4096)
    monkeypatch.setattr(control_mod, "CONTROL_BURST", 10**6)
    monkeypatch.setattr(session_mod, "CONTROL_BURST", 10**6)
    real = ClientPush._push_for
    monkeypatch.setattr(ClientPush, "_push_for", lambda self, s: [*real(self, s), *big])
    tv, log = _verifier(tmp_path)
    w = World()
    w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki, extra=f"script-security 2\ntls-verify {tv}\nreneg-sec 20\n"))
    assert w.run(lambda: _up(w), max_time=30)
    assert len(_calls(log)) == 2
    assert w.run(lambda: c.counters.renegotiations >= 2, max_time=60), caplog.text[-2000:]
    assert c.connections == 1, "a renegotiation was refused and the tunnel restarted"
    assert len(_calls(log)) >= 6
    env = _env(tmp_path, 0)                 # the last renegotiation's depth-0 call
    assert env["X509_0_CN"] == "server" and env["X509_0_OU_299"].startswith("unit-299-")
    assert env["common_name"] == "server" and env["untrusted_ip"] == "198.18.0.1"
    assert 0 < sum(k.startswith("foreign_option_") for k in env) < 1024
    assert "tls-verify: " in caplog.text and "left out of its environment" in caplog.text
    assert "Argument list too long" not in caplog.text
    ping_both_ways(w)
