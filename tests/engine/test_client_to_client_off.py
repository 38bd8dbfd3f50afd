"""A `dev tun` server without `client-to-client`: a client's packet for another client's address
goes to the TUN device, as OpenVPN 2.6 writes it there (multi.c: only with client-to-client does
it route between clients itself), so the host's forwarding and firewall decide whether it comes
back out to the other client -- the setup OpenVPN's manual names for per-client firewall rules.
Ours dropped it ("c2c refused"): clients that reached each other (or an admin's address that
reached the clients) through a 2.6 server's kernel never did here. With client-to-client it is
sealed for the other client straight away, as before; the inner source is checked first either
way (tests/interop/test_client_to_client_off_vs_openvpn.py: Debian's server and ours)."""
from __future__ import annotations

import pytest

from appliance.openvpn import wrapping
from appliance.openvpn.datapath import ServerDataPath
from tests.aead_paths import aead_path  # noqa: F401 - the fixture
from tests.engine.test_server_dispatcher import _client, _icmp, _pump, _server, _up, pki  # noqa: F401 - pki is a fixture

pytestmark = pytest.mark.usefixtures("aead_path")


def _two(pki, c2c: bool):  # noqa: F811
    d = _server(pki, protection="none", c2c=c2c)
    a = _client(pki, pki["clients"][0], wrapping.PlainWrapper)
    b = _client(pki, pki["clients"][1], wrapping.PlainWrapper)
    pa, pb = ("198.18.0.80", 40000), ("198.18.0.81", 40000)
    _pump(d, [(a, pa), (b, pb)])
    assert _up(a) and _up(b)
    return d, a, pa, d.by_addr[pb], ServerDataPath(d, lambda cipher, v2: 1400, c2c)


def test_without_client_to_client_a_packet_for_another_client_goes_to_the_tun(pki):  # noqa: F811
    d, a, pa, rec_b, dp = _two(pki, c2c=False)
    p = _icmp(a.pushed.ifconfig[0], rec_b.vaddr)
    rec_a = d.by_addr[pa]
    not_traffic = rec_a.session.not_traffic
    to_tun, sends = [], {}
    dp.from_link(a.encrypt(p), pa, 1.0, lambda q: to_tun.append(bytes(q)), sends)
    assert to_tun == [p], "the packet did not reach the TUN (2.6 writes it there)"
    assert sends == {}, "sealed for the other client without client-to-client"
    assert rec_a.session.not_traffic == not_traffic, \
        "a packet written to the TUN is tunnel traffic (`inactive`), as in 2.6"


def test_without_client_to_client_a_spoofed_source_still_reaches_nothing(pki):  # noqa: F811
    d, a, pa, rec_b, dp = _two(pki, c2c=False)
    to_tun, sends = [], {}
    dp.from_link(a.encrypt(_icmp("198.19.0.200", rec_b.vaddr)), pa, 1.0, lambda q: to_tun.append(bytes(q)), sends)
    assert to_tun == [] and sends == {}
    assert d.stats["inner packet with a source the client does not own"] == 1


def test_with_client_to_client_a_packet_for_another_client_is_sealed_for_it(pki):  # noqa: F811
    d, a, pa, rec_b, dp = _two(pki, c2c=True)
    p = _icmp(a.pushed.ifconfig[0], rec_b.vaddr)
    to_tun, sends = [], {}
    dp.from_link(a.encrypt(p), pa, 1.0, lambda q: to_tun.append(bytes(q)), sends)
    assert to_tun == [] and list(sends) == [rec_b.addr] and len(sends[rec_b.addr]) == 1
