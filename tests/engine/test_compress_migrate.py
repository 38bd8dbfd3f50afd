"""`compress migrate` on the server (OPNsense's "migrate" compression), as OpenVPN 2.6 does it
(multi.c multi_client_connect_compress_migrate): a client whose options string says `comp-lzo`
(it frames for compression: a legacy profile's `comp-lzo no`, any `compress`) is pushed
`compress stub-v2` when it announces IV_COMP_STUBv2, else `comp-lzo no`, and the server frames
that client so; a client without compression is pushed nothing about it and gets no framing.
Debian's client against it: tests/interop/test_installer_configs_vs_openvpn.py."""
from __future__ import annotations

import types

from appliance.openvpn.clientpush import ClientPush
from appliance.openvpn.config import parse_ccd
from appliance.openvpn.server import AddressPool, ServerDispatcher, ServerSettings
from appliance.openvpn.session import Role, Session, SessionConfig
from appliance.openvpn.tls import TlsSettings
from appliance.openvpn import wrapping
from tests.engine.test_server_dispatcher import _icmp, _kpem, _pem, _pump, _up, pki  # noqa: F401 - pki: fixture


def _server(pki, migrate: bool, ccd=None) -> ServerDispatcher:
    stls = TlsSettings(_pem(pki["ca"][0]), _pem(pki["server"][0]), _kpem(pki["server"][1]), True,
                       remote_cert_tls="client")
    st = ServerSettings(
        session_config=lambda pid: SessionConfig(Role.SERVER, stls, None, peer_id=pid, comp_migrate=migrate),
        protection="none", pool=AddressPool("198.19.0.0", "255.255.255.0", "subnet"), ccd=ccd)
    return ServerDispatcher(st, 0.0)


def _client(pki, i: int, comp: str | None) -> Session:
    c, k = pki["clients"][i]
    s = Session(SessionConfig(Role.CLIENT, TlsSettings(_pem(pki["ca"][0]), _pem(c), _kpem(k), False,
                                                       remote_cert_tls="server"), wrapping.PlainWrapper,
                              comp=comp), 0.0)
    s.start(0.0)
    return s


def _both_ways(d, s, addr) -> bool:
    ip = s.pushed.ifconfig[0]
    rec, pts = d.receive(s.encrypt(_icmp(ip, "198.19.0.1")), addr, 1.0)
    if len(pts) != 1 or bytes(pts[0]) != _icmp(ip, "198.19.0.1"):
        return False
    back = s.receive(rec.session.encrypt(_icmp("198.19.0.1", ip)), 1.0)
    return len(back) == 1 and bytes(back[0]) == _icmp("198.19.0.1", ip)


def test_a_client_framing_for_compression_is_pushed_stub_v2_and_traffic_passes(pki):
    d = _server(pki, migrate=True)
    legacy, plain = _client(pki, 0, "lzo-stub"), _client(pki, 1, None)
    peers = [(legacy, ("198.18.0.2", 1)), (plain, ("198.18.0.3", 1))]
    _pump(d, peers)
    assert _up(legacy) and _up(plain)
    assert legacy.pushed.compress == "stub-v2" and legacy.comp == "stub-v2"
    assert d.by_addr[("198.18.0.2", 1)].session.comp == "stub-v2"
    assert plain.pushed.compress is None and plain.pushed.comp_lzo is None and plain.comp is None
    assert d.by_addr[("198.18.0.3", 1)].session.comp is None
    assert _both_ways(d, legacy, ("198.18.0.2", 1)) and _both_ways(d, plain, ("198.18.0.3", 1))


def test_a_ccd_push_reset_does_not_take_the_framing_push_away(pki):
    """The session frames as migrated whatever the ccd says, so its push always goes (in 2.6 a
    push-reset there would leave the two ends framing differently)."""
    d = _server(pki, migrate=True, ccd=lambda cn: parse_ccd("push-reset\npush-remove compress\n"))
    legacy = _client(pki, 3, "lzo-stub")
    _pump(d, [(legacy, ("198.18.0.5", 1))])
    assert _up(legacy) and legacy.pushed.compress == "stub-v2"
    assert _both_ways(d, legacy, ("198.18.0.5", 1))


def test_without_migrate_nothing_is_pushed_about_compression(pki):
    d = _server(pki, migrate=False)
    legacy = _client(pki, 2, "lzo-stub")
    _pump(d, [(legacy, ("198.18.0.4", 1))])
    assert _up(legacy) and legacy.pushed.compress is None and legacy.pushed.comp_lzo is None
    assert not d.by_addr[("198.18.0.4", 1)].session.peer_uses_comp


def test_a_client_without_stub_v2_is_pushed_comp_lzo_no():
    s = types.SimpleNamespace(peer_info={"IV_COMP_STUB": "1"}, comp=None)
    assert ClientPush._migrate_compression(s) == "comp-lzo no" and s.comp == "lzo-stub"
    s = types.SimpleNamespace(peer_info={"IV_COMP_STUBv2": "1"}, comp=None)
    assert ClientPush._migrate_compression(s) == "compress stub-v2" and s.comp == "stub-v2"
