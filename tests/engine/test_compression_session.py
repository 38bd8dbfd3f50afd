"""Sessions with real compression (comp-lzo yes, compress lz4-v2 ...), as OpenVPN 2.6 runs them
without allow-compression yes: a payload the peer compressed is decompressed into the tunnel; a
bad or oversized one (a decompression bomb) is dropped and counted while the session goes on; a
client whose profile allows stubs only refuses a pushed compression as 2.6 does. The peer's
compressing side is built here as 2.6's compressor builds its packets (tests/unit/test_compression.py);
Debian's real one: tests/interop/test_compression_vs_openvpn.py."""
from __future__ import annotations

import pytest

from appliance.openvpn import events as ev
from appliance.openvpn import wrapping
from appliance.openvpn.server import AddressPool, ServerDispatcher, ServerSettings
from appliance.openvpn.session import Role, Session, SessionConfig
from appliance.openvpn.tls import TlsSettings
from tests.engine.test_server_dispatcher import _icmp, _kpem, _pem, _pump, _up, pki  # noqa: F401 - pki: fixture
from tests.unit.test_compression import framed_by_openvpn

ADDR = ("198.18.0.2", 1)


def _pair(pki, server_comp: str | None, client_comp: str | None, push: list[str] | None = None,
          stub_only: bool = False):
    stls = TlsSettings(_pem(pki["ca"][0]), _pem(pki["server"][0]), _kpem(pki["server"][1]), True,
                       remote_cert_tls="client")
    st = ServerSettings(
        session_config=lambda pid: SessionConfig(Role.SERVER, stls, None, peer_id=pid, comp=server_comp),
        protection="none", pool=AddressPool("198.19.0.0", "255.255.255.0", "subnet"), push=push or [])
    d = ServerDispatcher(st, 0.0)
    c, k = pki["clients"][0]
    s = Session(SessionConfig(Role.CLIENT, TlsSettings(_pem(pki["ca"][0]), _pem(c), _kpem(k), False,
                                                       remote_cert_tls="server"), wrapping.PlainWrapper,
                              comp=client_comp, comp_stub_only=stub_only), 0.0)
    s.start(0.0)
    _pump(d, [(s, ADDR)])
    return d, s


@pytest.mark.parametrize("mode", ["lzo", "lz4", "lz4-v2"])
def test_compressed_payloads_reach_the_tunnel_and_a_bomb_only_costs_its_packet(pki, mode):
    d, cli = _pair(pki, mode, mode)
    assert _up(cli)
    srv = d.by_addr[ADDR].session
    ip = cli.pushed.ifconfig[0]
    pkt = _icmp("198.19.0.1", ip) + bytes(600)                 # compressible
    # the server's key seals what a compressing 2.6 server would send
    assert [bytes(p) for p in cli.receive(srv.send_key.seal(framed_by_openvpn(mode, pkt)), 1.0)] == [pkt]
    # both directions of our own (uncompressed) sending still pass
    rec, pts = d.receive(cli.encrypt(_icmp(ip, "198.19.0.1")), ADDR, 1.0)
    assert [bytes(p) for p in pts] == [_icmp(ip, "198.19.0.1")]
    bomb = framed_by_openvpn(mode, bytes(1_000_000))
    garbage = {"lzo": b"\x66\xff\xff\xff", "lz4": b"\x69\xf0\x00\x00", "lz4-v2": b"\x50\x01\xf0\x00"}[mode]
    for bad in (bomb, garbage):
        assert cli.receive(srv.send_key.seal(bad), 1.0) == []
    assert cli.stats.get("decompression failed") == 2
    assert not any(isinstance(e, ev.SessionClosed) for e in cli.events)
    assert [bytes(p) for p in cli.receive(srv.send_key.seal(framed_by_openvpn(mode, pkt)), 1.1)] == [pkt]
    # the server side decompresses what a compressing 2.6 client sends, too
    back = d.receive(cli.send_key.seal(framed_by_openvpn(mode, _icmp(ip, "198.19.0.1") + bytes(600))), ADDR, 1.2)[1]
    assert [bytes(p) for p in back] == [_icmp(ip, "198.19.0.1") + bytes(600)]


def test_pushed_compression_is_taken_by_a_profile_with_compression(pki):
    d, cli = _pair(pki, "lz4-v2", "lzo", push=["compress lz4-v2"])
    assert _up(cli) and cli.comp == "lz4-v2"


def test_pushed_compression_is_refused_by_a_stub_only_profile(pki):
    d, cli = _pair(pki, "lzo", None, push=["comp-lzo yes"], stub_only=True)
    assert not _up(cli)
    closed = [e for e in cli.events if isinstance(e, ev.SessionClosed)]
    assert closed and "does not allow" in closed[0].reason and closed[0].restart


@pytest.mark.parametrize("mode", ["lzo", "lz4", "lz4-v2"])
def test_the_first_compressed_payload_is_reported_once(pki, mode):
    """What tells a user decompression is at work (the appliance logs it; the VM test reads it): one
    Decompressing event per session, at the first payload the peer really compressed -- not at an
    uncompressed one in the same framing, not at a bad one, not again at the next."""
    from appliance.openvpn.compstub import compress_stub
    d, cli = _pair(pki, mode, mode)
    assert _up(cli)
    srv = d.by_addr[ADDR].session
    ip = cli.pushed.ifconfig[0]
    pkt = _icmp("198.19.0.1", ip) + bytes(600)
    seen = lambda: [e for e in cli.events if isinstance(e, ev.Decompressing)]   # noqa: E731
    cli.events.clear()
    bad = {"lzo": b"\x66\xff\xff\xff", "lz4": b"\x69\xf0\x00\x00", "lz4-v2": b"\x50\x01\xf0\x00"}[mode]
    assert cli.receive(srv.send_key.seal(bad), 1.0) == []
    assert [bytes(p) for p in cli.receive(srv.send_key.seal(compress_stub(mode, pkt)), 1.0)] == [pkt]
    assert seen() == []
    wire = framed_by_openvpn(mode, pkt)
    for _ in range(2):
        assert [bytes(p) for p in cli.receive(srv.send_key.seal(wire), 1.0)] == [pkt]
    assert seen() == [ev.Decompressing(mode, len(wire), len(pkt))]
    assert len(wire) < len(pkt) // 2
