"""Over TCP a connection carries one session: a data packet is that connection's, whatever
peer-id its header names (OpenVPN 2.6 looks no instance up by peer-id on TCP). Ours looked the
peer-id up among all clients, so a packet sent on one client's connection was opened with another
client's keys and, when it authenticated (a copy of that client's packet), taken as that client's
traffic -- arriving on a connection that is not that client's."""
from __future__ import annotations

from appliance.openvpn import wrapping
from appliance.openvpn.server import AddressPool, ServerDispatcher, ServerSettings, StreamKey
from appliance.openvpn.session import Role, SessionConfig
from appliance.openvpn.tls import TlsSettings
from tests.engine.test_server_dispatcher import _icmp, _kpem, _pem, _pump, pki  # noqa: F401
from appliance.openvpn.session import Session


def _tcp_server(pki):  # noqa: F811
    stls = TlsSettings(_pem(pki["ca"][0]), _pem(pki["server"][0]), _kpem(pki["server"][1]), True,
                       remote_cert_tls="client")
    st = ServerSettings(
        session_config=lambda pid: SessionConfig(Role.SERVER, stls, None, proto="tcp", peer_id=pid, ping=10,
                                                 ping_restart=60),
        protection="none", pool=AddressPool("198.19.0.0", "255.255.255.0", "subnet"), tcp=True)
    return ServerDispatcher(st, 0.0)


def _tcp_client(pki, cert):  # noqa: F811
    c, k = cert
    cfg = SessionConfig(Role.CLIENT, TlsSettings(_pem(pki["ca"][0]), _pem(c), _kpem(k), False,
                                                 remote_cert_tls="server"), wrapping.PlainWrapper, proto="tcp")
    s = Session(cfg, 0.0)
    s.start(0.0)
    return s


def test_a_packet_on_one_tcp_connection_is_never_another_clients(pki):  # noqa: F811
    d = _tcp_server(pki)
    a_conn, b_conn = StreamKey(1, "198.18.0.60"), StreamKey(2, "198.18.0.61")
    a, b = _tcp_client(pki, pki["clients"][0]), _tcp_client(pki, pki["clients"][1])
    _pump(d, [(a, a_conn), (b, b_conn)])
    assert a.established and b.established
    b_rec = d.record(b_conn)
    ping = _icmp(b.pushed.ifconfig[0], "198.19.0.1")
    assert len(d.receive(b.encrypt(ping), b_conn, 1.0)[1]) == 1          # on its own connection
    rec, pts = d.receive(b.encrypt(ping), a_conn, 1.1)                  # b's packet, on a's connection
    assert pts == [] and rec is not b_rec
    assert b_rec.session.data_authenticated == 1
