"""A client let in to a full pool (compat42: with no address, as OpenVPN 2.6's multi.c), read
again by review44a: what that client gets and what it does not.

- A client *restarting in place* (the same address, while its established session still holds
  its pool address) is no newcomer: it takes that address over. With duplicate-cn (or no common
  name) nothing ends the old session before the push, so the pool was full of the client's own
  address: compat42 let the restart in with none, the old session went at its promotion, and the
  address stayed free for nobody -- a 2.6 client then sat connected without an address.
- A newcomer gets no IPv6 pool address either (2.6's pool hands out both or neither), and what
  it sends from an address that is not its own passes nowhere.
"""
from __future__ import annotations

from appliance.openvpn import wrapping
from appliance.openvpn.addresspool import AddressPool, AddressPool6
from tests.engine.test_server_dispatcher import _client, _icmp, _pump, _server, _up, pki  # noqa: F401

A_HOME, B_HOME, C_HOME = ("198.18.0.44", 1194), ("198.18.0.45", 1194), ("198.18.0.46", 1194)


def _full(pki, **kw):
    """A server whose two-address pool two clients (certificates 6 and 7) fill."""
    d = _server(pki, "none", **kw)
    d.st.pool = AddressPool("198.19.0.0", "255.255.255.0", "subnet", "198.19.0.2", "198.19.0.3")
    a = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    b = _client(pki, pki["clients"][7], wrapping.PlainWrapper)
    _pump(d, [(a, A_HOME), (b, B_HOME)])
    assert _up(a) and _up(b)
    return d


def test_a_restart_in_place_at_a_full_pool_keeps_its_address_with_duplicate_cn(pki):  # noqa: F811
    d = _full(pki, duplicate_cn=True)
    old = d.by_addr[A_HOME]
    addr = old.vaddr
    again = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    _pump(d, [(again, A_HOME)], now=2.0)
    new = d.by_addr.get(A_HOME)
    assert _up(again) and new is not old and not old.alive
    assert again.pushed.ifconfig is not None and again.pushed.ifconfig[0] == addr, again.pushed
    assert new.vaddr == addr and d.by_vaddr.get(addr) is new
    ping = _icmp(addr, "198.19.0.1")
    assert len(d.receive(again.encrypt(ping), A_HOME, 2.1)[1]) == 1      # its own address: passes
    # The address is the pool's again once the restart leaves too (nothing left shared).
    d.disconnect(A_HOME)
    assert addr not in d.st.pool.leased and not d.st.pool.shared


def test_a_newcomer_to_a_full_pool_gets_no_ipv6_pool_address_and_passes_nothing(pki):  # noqa: F811
    d = _full(pki, pool6=AddressPool6("2001:db8:44::/64"))
    c = _client(pki, pki["clients"][8], wrapping.PlainWrapper)
    _pump(d, [(c, C_HOME)], now=2.0)
    rec = d.by_addr[C_HOME]
    assert _up(c) and rec.session.established
    assert c.pushed.ifconfig is None and c.pushed.ifconfig_ipv6 is None, c.pushed
    assert rec.vaddr is None and rec.vaddr6 is None and len(d.st.pool6.leased) == 2
    # Neither another client's address nor one of the pool's free ones passes from it.
    for src in (d.by_addr[A_HOME].vaddr, "198.19.0.9", "0.0.0.0"):
        assert d.receive(c.encrypt(_icmp(src, "198.19.0.1")), C_HOME, 2.1)[1] == [], src
